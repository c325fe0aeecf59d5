//! A session's byte stream: plain TCP (`mqtt://`) or TLS over it
//! (`mqtts://`, rustls with the target's `[target.tls]`, mutual TLS
//! included), one type so that a session's reading and writing are the
//! same code for both. An enum rather than a boxed trait object: no
//! allocation and no dynamic call per read for the plain case, which
//! carries most fleets.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A session's connection to its broker.
pub enum MqttStream {
    Plain(TcpStream),
    /// Boxed: a TLS session's state is tens of times a socket's, and a
    /// plain fleet's sessions should not carry its size.
    Tls(Box<TlsStream<TcpStream>>),
    /// An in-memory pipe to a broker played in-process: the fuzz target
    /// ([`super::fuzzing`]) and its tests. Not in a normal build.
    #[cfg(any(test, feature = "fuzzing"))]
    Memory(tokio::io::DuplexStream),
}

impl AsyncRead for MqttStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MqttStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MqttStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(any(test, feature = "fuzzing"))]
            MqttStream::Memory(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MqttStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MqttStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MqttStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(any(test, feature = "fuzzing"))]
            MqttStream::Memory(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MqttStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MqttStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(any(test, feature = "fuzzing"))]
            MqttStream::Memory(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MqttStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MqttStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(any(test, feature = "fuzzing"))]
            MqttStream::Memory(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
