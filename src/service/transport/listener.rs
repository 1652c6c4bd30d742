//! The accept loop: at most `max_connections` open connections, each closed
//! when it sends nothing — no handshake within `handshake_timeout`, no byte
//! within `idle_timeout` afterwards. Accept errors (EMFILE when descriptors
//! run out, ENOBUFS…) back off from 10 ms doubling to 1 s instead of spinning,
//! are logged at most every 10 s and counted in
//! `creator_boost_accept_errors_total`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::service::transport::metrics::TransportMetrics;

/// First pause after a failed accept.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause after repeated failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Accept errors are logged at most this often (the rest are counted).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Connection limits of the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// Time for a new connection's first byte.
    pub handshake_timeout: Duration,
    /// Longest time without a byte read, after the first.
    pub idle_timeout: Duration,
}

/// The accepted connections of `listener`, as tonic's incoming stream. It
/// never yields an error: failed accepts are handled here.
pub fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    metrics: Arc<TransportMetrics>,
) -> impl Stream<Item = Result<Connection, io::Error>> + Send + 'static {
    let state = AcceptLoop {
        listener,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        limits,
        metrics,
        backoff: FIRST_BACKOFF,
        last_logged: None,
        unlogged: 0,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let connection = state.next().await;
        Some((Ok(connection), state))
    })
}

struct AcceptLoop {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    limits: ConnectionLimits,
    metrics: Arc<TransportMetrics>,
    backoff: Duration,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptLoop {
    async fn next(&mut self) -> Connection {
        // At the limit, wait for a connection to close before accepting: new
        // clients queue in the kernel backlog instead of costing memory here.
        let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
            // The semaphore is never closed; this branch cannot be taken.
            return std::future::pending().await;
        };
        loop {
            match self.listener.accept().await {
                Ok((stream, _peer)) => {
                    self.backoff = FIRST_BACKOFF;
                    let _ = stream.set_nodelay(true);
                    return Connection::new(stream, slot, self.limits, Arc::clone(&self.metrics));
                }
                // The peer gave up between SYN and accept: nothing to wait for.
                Err(error) if per_connection(&error) => {}
                Err(error) => {
                    self.metrics.accept_error();
                    self.log(&error);
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn log(&mut self, error: &io::Error) {
        let due = self.last_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if due {
            tracing::error!(
                %error,
                suppressed = self.unlogged,
                backoff_ms = self.backoff.as_millis() as u64,
                "cannot accept connections (out of file descriptors or socket buffers?); backing off"
            );
            self.last_logged = Some(Instant::now());
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
    }
}

/// Errors about one half-open connection, not about the listener.
fn per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

/// An accepted TCP connection that holds a connection slot until dropped and
/// fails its reads when the peer has been silent too long.
pub struct Connection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    silence: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    metrics: Arc<TransportMetrics>,
    _open: crate::service::transport::metrics::OpenConnection,
}

impl Connection {
    fn new(
        stream: TcpStream,
        slot: OwnedSemaphorePermit,
        limits: ConnectionLimits,
        metrics: Arc<TransportMetrics>,
    ) -> Self {
        Connection {
            stream,
            _slot: slot,
            silence: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
            idle_timeout: limits.idle_timeout,
            _open: metrics.connection_opened(),
            metrics,
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let deadline = tokio::time::Instant::now() + this.idle_timeout;
                    this.silence.as_mut().reset(deadline);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match this.silence.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.metrics.connection_timed_out();
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection silent too long; closed",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}
