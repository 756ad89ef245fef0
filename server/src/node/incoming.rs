//! The connections a listener accepts, as the stream tonic serves: plain
//! TCP, or TLS terminated here (for an `https://` listen URL).
//!
//! Each TLS handshake runs in a task of its own, bounded by
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds up no other
//! connection. A failed handshake drops that connection only (logged at
//! debug); a failed accept (e.g. out of file descriptors) is logged and
//! retried after a pause. At most [`HANDSHAKES_MAX`] handshakes run at
//! once; beyond that, connections wait in the kernel's accept queue.
//! Dropping the stream closes the listener and abandons the handshakes
//! in flight.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bound on one TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the TLS handshakes running at once per listener.
pub const HANDSHAKES_MAX: usize = 256;
/// Pause after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// One accepted connection.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

/// The connections of one listener; see the module docs.
pub struct Connections {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    /// Handshakes in flight; each yields its connection, or `None` when
    /// it failed.
    handshakes: JoinSet<Option<Conn>>,
    /// Set after a failed accept: no accept before it fires.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

/// The stream of connections `listener` accepts, through `tls` when
/// given.
pub fn connections(listener: TcpListener, tls: Option<TlsAcceptor>) -> Connections {
    Connections {
        listener,
        tls,
        handshakes: JoinSet::new(),
        pause: None,
    }
}

async fn handshake(acceptor: TlsAcceptor, stream: TcpStream) -> Option<Conn> {
    let remote = stream.peer_addr().ok();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(Conn::Tls(Box::new(s))),
        Ok(Err(e)) => {
            tracing::debug!(?remote, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(?remote, "TLS handshake timed out");
            None
        }
    }
}

impl tokio_stream::Stream for Connections {
    type Item = io::Result<Conn>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // Finished handshakes first (this also registers for the next).
            while let Poll::Ready(Some(done)) = this.handshakes.poll_join_next(cx) {
                if let Ok(Some(conn)) = done {
                    return Poll::Ready(Some(Ok(conn)));
                }
            }
            if let Some(pause) = &mut this.pause {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause = None;
            }
            if this.handshakes.len() >= HANDSHAKES_MAX {
                // Woken when one of them finishes.
                return Poll::Pending;
            }
            let stream = match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, _))) => stream,
                Poll::Ready(Err(e)) => {
                    tracing::warn!("accept failed: {e}");
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_RETRY)));
                    continue;
                }
            };
            // Requests and answers are small and latency-bound: send each
            // at once (Nagle's algorithm against delayed ACKs costs ~40 ms).
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY not set: {e}");
            }
            match &this.tls {
                None => return Poll::Ready(Some(Ok(Conn::Plain(stream)))),
                Some(acceptor) => {
                    this.handshakes.spawn(handshake(acceptor.clone(), stream));
                }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp().connect_info()
    }
}
