//! The lean HTTP/1.1 client's answer reader on arbitrary bytes, arriving in
//! pieces whose sizes the first byte chooses: never a panic or a hang, and
//! never more kept than was sent.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use fleetstorm::transport::http::h1::read_answer;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

/// Hands out `data` `step` bytes at a time, then ends.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = self.step.min(self.data.len()).min(out.remaining());
        out.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, data)) = input.split_first() else { return };
    let mut io = Pieces { data, step: usize::from(first % 64) + 1 };
    let mut buf = Vec::new();
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    {
        let mut reading = std::pin::pin!(read_answer(&mut io, &mut buf));
        // The reader is always ready: the answer must be settled in one poll.
        if reading.as_mut().poll(&mut cx).is_pending() {
            panic!("reading an in-memory answer did not finish");
        }
    }
    assert!(buf.len() <= data.len());
});
