//! When an answer reached this machine: the kernel's receive timestamp of
//! the bytes read (`SO_TIMESTAMPNS`), rather than the moment the generator's
//! thread got round to reading them.
//!
//! An answer that arrives while the thread is busy, or not running (the
//! machine is shared, the VM was descheduled), would otherwise carry that
//! wait in its latency: the generator's lateness counted as the target's.
//! The kernel stamps each packet as it is received; `recvmsg` hands the
//! stamp of the first packet it reads over with the bytes. The last read of
//! an answer is the one that completes it, so its stamp is when the answer
//! was all here (to within the gap between packets read together).
//!
//! Stamps are wall-clock (`CLOCK_REALTIME`) times: [`Stamped::arrived`]
//! turns the last one into an [`Instant`] by its distance from now, and never
//! later than now. A read without a stamp (the kernel turns stamping on for
//! the machine a moment after the first socket asks) leaves the answer
//! timed when it was read, as before.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Asks the kernel to stamp what `stream` receives. Whether it agreed:
/// without it, reads carry no stamp and answers are timed when read.
pub fn enable(stream: &TcpStream) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Reads from a stream, keeping the receive stamp of the latest read.
pub struct Stamped<'a> {
    stream: &'a TcpStream,
    /// Nanoseconds since the epoch, of the latest read that had a stamp.
    last_ns: Option<u64>,
}

impl<'a> Stamped<'a> {
    pub fn new(stream: &'a TcpStream) -> Self {
        Stamped { stream, last_ns: None }
    }

    /// When the bytes of the latest read arrived, as an instant on the
    /// monotonic clock (at the latest `now`); `None` if it had no stamp.
    pub fn arrived(&self, now: Instant) -> Option<Instant> {
        let stamp = UNIX_EPOCH + Duration::from_nanos(self.last_ns?);
        let ago = SystemTime::now().duration_since(stamp).unwrap_or(Duration::ZERO);
        Some(now.checked_sub(ago).unwrap_or(now))
    }
}

impl AsyncRead for Stamped<'_> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.stream.poll_read_ready(cx))?;
            let unfilled = out.initialize_unfilled();
            match this.stream.try_io(Interest::READABLE, || recv_stamped(this.stream.as_raw_fd(), unfilled)) {
                Ok((n, stamp)) => {
                    if stamp.is_some() {
                        this.last_ns = stamp;
                    }
                    out.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale: try_io cleared it; wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// One `recvmsg` into `buf`: the count read and the stamp, if one came.
fn recv_stamped(fd: libc::c_int, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    // Room for one timespec control message, aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: zeroed msghdr is valid; its pointers are set to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at iov (over buf) and control, both alive for the call.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled,
    // within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let h = &*cmsg;
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = u64::try_from(ts.tv_sec)
                    .ok()
                    .and_then(|s| s.checked_mul(1_000_000_000))
                    .and_then(|s| s.checked_add(u64::try_from(ts.tv_nsec).ok()?));
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes that arrive while nobody reads are stamped when they arrived,
    /// not when they are read.
    #[tokio::test]
    async fn a_read_carries_when_its_bytes_arrived_not_when_it_was_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let client = client.unwrap();
        let (mut server, _) = accepted.unwrap();
        assert!(enable(&client), "SO_TIMESTAMPNS refused");
        // The kernel turns stamping on for the whole machine a moment after
        // the first socket asks (deferred work): until then reads have none.
        let mut stamped = false;
        for _ in 0..200 {
            server.write_all(b"w").await.unwrap();
            let mut reader = Stamped::new(&client);
            let mut one = Vec::new();
            assert_eq!(reader.read_buf(&mut one).await.unwrap(), 1);
            if reader.arrived(Instant::now()).is_some() {
                stamped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(stamped, "no read was stamped in 2 s");
        let written = Instant::now();
        server.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        // Read well after they arrived.
        std::thread::sleep(Duration::from_millis(120));
        let mut reader = Stamped::new(&client);
        let mut buf = Vec::new();
        let n = reader.read_buf(&mut buf).await.unwrap();
        let read_at = Instant::now();
        assert_eq!(&buf[..n], b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let arrived = reader.arrived(read_at).expect("a stamp");
        assert!(arrived <= read_at);
        // Arrived within a few ms of the write (loopback), ~120 ms before the read.
        assert!(read_at - arrived >= Duration::from_millis(100), "arrived {:?} before the read", read_at - arrived);
        assert!(arrived + Duration::from_millis(50) >= written, "stamped {:?} after the write", arrived - written);
    }

    #[tokio::test]
    async fn without_stamps_a_read_has_none_and_the_end_of_the_stream_reads_as_zero() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let client = client.unwrap();
        let (mut server, _) = accepted.unwrap();
        server.write_all(b"x").await.unwrap();
        drop(server);
        let mut reader = Stamped::new(&client);
        let mut buf = Vec::new();
        assert_eq!(reader.read_buf(&mut buf).await.unwrap(), 1);
        assert!(reader.arrived(Instant::now()).is_none());
        buf.clear();
        assert_eq!(reader.read_buf(&mut buf).await.unwrap(), 0);
    }
}
