//! The HTTP listener (API and web app), with the limits that keep slow and
//! idle clients from holding it:
//!
//! - a connection cap in total and per source address
//!   ([`ConnectionCaps`], the rule FTP and SFTP share); a connection over it
//!   gets `503` with `Retry-After` and is closed;
//! - a header timeout (hyper's): a request's head must be complete within
//!   `header_timeout_secs` of the connection opening or of the previous
//!   response, so a slowloris client is cut then, and so is a keep-alive
//!   connection idle that long;
//! - a body rate floor ([`GuardedBody`]): while the application waits for a
//!   request body, the body must keep coming (no pause over
//!   `body_timeout_secs`) and, past that first allowance, at
//!   `min_body_bytes_per_sec` on average;
//! - a send timeout ([`GuardedIo`]): a client that reads nothing of its
//!   response for `send_timeout_secs` is cut.
//!
//! Every request carries the peer's address (`ConnectInfo<SocketAddr>`),
//! which the web login's throttle keys on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use callmeta_app::usecases::connections::{ConnectionCaps, Refused};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// Limits of the HTTP listener (`[http_server]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Seconds a client has to send a request's head, from the connection's
    /// start or the previous response (an idle keep-alive connection is
    /// closed after as long).
    pub header_timeout_secs: u64,
    /// Longest pause, in seconds, in a request body the server is waiting
    /// for; also the allowance before the rate floor applies.
    pub body_timeout_secs: u64,
    /// Slowest average rate of a request body, past the allowance.
    pub min_body_bytes_per_sec: u64,
    /// Seconds a client may leave its response unread before it is cut.
    pub send_timeout_secs: u64,
    /// Connections open at once, in total (0: no cap).
    pub max_connections: usize,
    /// Connections open at once from one address (0: no cap; set it to 0,
    /// or high, behind a load balancer that connects from one address).
    pub max_connections_per_address: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout_secs: 10,
            body_timeout_secs: 20,
            min_body_bytes_per_sec: 1024,
            send_timeout_secs: 60,
            max_connections: 4096,
            max_connections_per_address: 256,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and lets the requests under way finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let caps = ConnectionCaps::new(settings.max_connections, settings.max_connections_per_address);
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    // Each connection holds a sender; when all are gone, every connection ended.
    let (alive, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: let connections end first.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match caps.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                tracing::debug!(%peer, %refused, "HTTP connection refused");
                tokio::spawn(refuse(stream, refused));
                continue;
            }
        };
        let router = router.clone();
        let settings = settings.clone();
        let mut closing = closing_rx.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _alive = alive;
            let _ = stream.set_nodelay(true);
            let io = TokioIo::new(GuardedIo::new(
                stream,
                Duration::from_secs(settings.send_timeout_secs),
            ));
            let body_limits = BodyLimits::from(&settings);
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let request = request.map(|body| Body::new(GuardedBody::new(body, body_limits)));
                router.clone().oneshot(request)
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(settings.header_timeout_secs.max(1)))
                .keep_alive(true);
            let connection = builder.serve_connection(io, service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended");
                    }
                }
                () = async move { let _ = closing.wait_for(|c| *c).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    drop(alive);
    let _ = all_ended.recv().await;
    Ok(())
}

/// Answers a connection over a cap with `503` and closes it.
async fn refuse(mut stream: TcpStream, refused: Refused) {
    let body = format!(
        r#"{{"errors":[{{"id":"unavailable","title":"Too many connections","detail":"{refused}; try again shortly"}}]}}"#
    );
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    pause: Duration,
    min_bytes_per_sec: u64,
}

impl From<&HttpSettings> for BodyLimits {
    fn from(s: &HttpSettings) -> Self {
        Self {
            pause: Duration::from_secs(s.body_timeout_secs.max(1)),
            min_bytes_per_sec: s.min_body_bytes_per_sec,
        }
    }
}

/// A request body that fails when it comes too slowly. Only the time the
/// application spends waiting for it counts: a handler that is busy with
/// what it has read (storing it, say) does not make its client slow.
struct GuardedBody {
    inner: Incoming,
    limits: BodyLimits,
    received: u64,
    /// Time spent waiting for data, over completed waits.
    waited: Duration,
    /// The wait under way: when it started, and the timer that ends it.
    waiting: Option<(Instant, Pin<Box<Sleep>>)>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body came too slowly (under {0} bytes per second, or a pause over {1:?})")]
struct TooSlow(u64, Duration);

impl GuardedBody {
    fn new(inner: Incoming, limits: BodyLimits) -> Self {
        Self {
            inner,
            limits,
            received: 0,
            waited: Duration::ZERO,
            waiting: None,
        }
    }

    /// How much longer the current wait may last.
    fn allowance(&self) -> Duration {
        let rate = self.limits.min_bytes_per_sec;
        let earned = if rate == 0 {
            Duration::MAX
        } else {
            self.limits
                .pause
                .saturating_add(Duration::from_secs_f64(self.received as f64 / rate as f64))
        };
        earned.saturating_sub(self.waited).min(self.limits.pause)
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some((since, _)) = self.waiting.take() {
                    self.waited += since.elapsed();
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    self.received += data.map_or(0, |d| d.len() as u64);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if self.waiting.is_none() {
                    let deadline = Instant::now() + self.allowance();
                    self.waiting = Some((Instant::now(), Box::pin(tokio::time::sleep_until(deadline))));
                }
                let Some((_, timer)) = self.waiting.as_mut() else {
                    return Poll::Pending;
                };
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(TooSlow(
                    self.limits.min_bytes_per_sec,
                    self.limits.pause,
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once the client has read nothing for
/// `send_timeout` (the socket's buffers full all that time).
struct GuardedIo {
    stream: TcpStream,
    send_timeout: Duration,
    blocked: Option<Pin<Box<Sleep>>>,
}

impl GuardedIo {
    fn new(stream: TcpStream, send_timeout: Duration) -> Self {
        Self {
            stream,
            send_timeout: send_timeout.max(Duration::from_secs(1)),
            blocked: None,
        }
    }

    /// Wraps a write's outcome: progress clears the timer, a blocked write
    /// starts it, and a write blocked past it fails.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.blocked = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.send_timeout;
                let timer = self
                    .blocked
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client reads nothing of its response",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
