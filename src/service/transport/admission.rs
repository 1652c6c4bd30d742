//! Admission, decided on a call's path before its body is read: a read budget (Rank, GetCreatorScores) and a separate write budget
//! (RecordEvents; each StreamEvents message), and the largest message each RPC
//! may send. A refused call costs no body memory; reads never wait behind
//! writes; an event stream holds a write slot only while one of its messages
//! is arriving or being processed.
//!
//! Body guard: every request body is read through `GuardedBody`, which
//! checks each gRPC length prefix against the RPC's limit as soon as its five
//! bytes arrive (so a 16 MiB declaration is refused before it is buffered),
//! and fails a message that does not arrive within `message_timeout` or an
//! event stream silent for `stream_idle_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::Status;
use tonic::body::Body;

use crate::config::MessageLimits;
use crate::service::transport::Kind;
use crate::service::transport::Refusal;
use crate::service::transport::metrics::{Method, TransportMetrics};

/// The in-flight budgets. Shared by the layer and the health watcher.
#[derive(Debug)]
pub struct Budgets {
    reads: Option<Arc<Semaphore>>,
    writes: Option<Arc<Semaphore>>,
    max_reads: usize,
    max_writes: usize,
}

impl Budgets {
    /// Budgets of `max_reads` and `max_writes` slots; 0 = unlimited.
    pub fn new(max_reads: usize, max_writes: usize) -> Arc<Budgets> {
        let budget = |max: usize| (max > 0).then(|| Arc::new(Semaphore::new(max)));
        Arc::new(Budgets {
            reads: budget(max_reads),
            writes: budget(max_writes),
            max_reads,
            max_writes,
        })
    }

    /// Whether a Rank arriving now would be refused.
    pub fn reads_exhausted(&self) -> bool {
        self.reads.as_ref().is_some_and(|s| s.available_permits() == 0)
    }

    fn admit_read(&self) -> Result<Option<OwnedSemaphorePermit>, Status> {
        admit(self.reads.as_ref(), self.max_reads)
    }

    fn admit_write(&self) -> Result<Option<OwnedSemaphorePermit>, Status> {
        admit(self.writes.as_ref(), self.max_writes)
    }
}

fn admit(budget: Option<&Arc<Semaphore>>, limit: usize) -> Result<Option<OwnedSemaphorePermit>, Status> {
    match budget {
        None => Ok(None),
        Some(semaphore) => Arc::clone(semaphore)
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| Refusal::Overloaded { limit }.into()),
    }
}

/// Settings of the admission layer.
#[derive(Clone, Debug)]
pub struct AdmissionSettings {
    /// The budgets.
    pub budgets: Arc<Budgets>,
    /// Largest message per RPC.
    pub message_limits: MessageLimits,
    /// Time for one message to arrive once started (a unary call's whole body).
    pub message_timeout: Duration,
    /// Longest silence between two messages of a client stream.
    pub stream_idle_timeout: Duration,
}

/// The tower layer; wrap it around every service (outside the deadline layer).
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    budgets: Arc<Budgets>,
    limits: MessageLimits,
    message_timeout: Duration,
    stream_idle_timeout: Duration,
    metrics: Arc<TransportMetrics>,
}

impl AdmissionLayer {
    /// A layer counting refused calls in `metrics`.
    pub fn new(settings: AdmissionSettings, metrics: Arc<TransportMetrics>) -> AdmissionLayer {
        AdmissionLayer {
            shared: Arc::new(Shared {
                budgets: settings.budgets,
                limits: settings.message_limits,
                message_timeout: settings.message_timeout,
                stream_idle_timeout: settings.stream_idle_timeout,
                metrics,
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service wrapper made by [`AdmissionLayer`].
#[derive(Clone, Debug)]
pub struct Admission<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Shared {
    fn message_limit(&self, kind: Kind) -> (usize, &'static str) {
        match kind {
            Kind::Read(Method::Rank) => (self.limits.rank, "Rank (from limits.max_candidates)"),
            Kind::Read(_) => (
                self.limits.creator_scores,
                "GetCreatorScores (from limits.max_creator_ids)",
            ),
            Kind::Write | Kind::WriteStream => (
                self.limits.record_events,
                "RecordEvents/StreamEvents (from limits.max_events_per_batch)",
            ),
            Kind::Other => (self.limits.other, "health and reflection"),
        }
    }

    /// Takes a budget slot, from the path alone.
    fn admit(&self, kind: Kind) -> Result<Option<OwnedSemaphorePermit>, Status> {
        match kind {
            Kind::Read(_) => self.budgets.admit_read(),
            Kind::Write => self.budgets.admit_write(),
            Kind::WriteStream | Kind::Other => Ok(None),
        }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Admission<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let started = Instant::now();
        let kind = Kind::of(request.uri().path());
        let permit = match self.shared.admit(kind) {
            Ok(permit) => permit,
            Err(status) => {
                if let Some(method) = kind.method() {
                    self.shared
                        .metrics
                        .observe_call(method, status.code(), started.elapsed());
                }
                // The body is dropped unread: the refusal costs no body memory.
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        let (limit, what) = self.shared.message_limit(kind);
        let stream = kind == Kind::WriteStream;
        // Reflection is a client stream too: tools ask, think, ask again.
        let client_stream = stream || request.uri().path().ends_with("/ServerReflectionInfo");
        let guard = GuardedBody {
            limit,
            what,
            header: [0; 5],
            header_filled: 0,
            remaining: 0,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            rearm: true,
            idle: if client_stream {
                self.shared.stream_idle_timeout
            } else {
                self.shared.message_timeout
            },
            message_timeout: self.shared.message_timeout,
            per_message: stream.then(|| Arc::clone(&self.shared)),
            permit: None,
            failed: false,
        };
        let request = request.map(|body| Body::new(guard.wrap(body)));
        let call = self.inner.call(request);
        Box::pin(async move {
            // A unary call keeps its slot until its answer is ready.
            let _permit = permit;
            call.await
        })
    }
}

/// A request body read under the RPC's message limit and arrival timeouts;
/// for StreamEvents it also takes a write slot per message.
struct GuardedBody {
    limit: usize,
    what: &'static str,
    header: [u8; 5],
    header_filled: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
    timer: Pin<Box<Sleep>>,
    /// Restart the timer for the silence between messages at the next poll.
    rearm: bool,
    /// Longest silence before a message starts.
    idle: Duration,
    message_timeout: Duration,
    /// Set for event streams: where per-message write slots come from.
    per_message: Option<Arc<Shared>>,
    permit: Option<OwnedSemaphorePermit>,
    failed: bool,
}

impl GuardedBody {
    fn wrap(self, inner: Body) -> Guarded {
        Guarded { guard: self, inner }
    }

    fn in_message(&self) -> bool {
        self.header_filled > 0 || self.remaining > 0
    }

    fn message_started(&mut self) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + self.message_timeout;
        self.timer.as_mut().reset(deadline);
        if let Some(shared) = &self.per_message
            && self.permit.is_none()
        {
            self.permit = shared.budgets.admit_write()?;
        }
        Ok(())
    }

    fn message_finished(&mut self) {
        self.rearm = true;
    }

    /// Follows the gRPC framing (1 flag byte, 4 length bytes, the message)
    /// through one chunk.
    fn scan(&mut self, mut chunk: &[u8]) -> Result<(), Status> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(chunk.len());
                self.remaining -= take;
                chunk = &chunk[take..];
                if self.remaining == 0 {
                    self.message_finished();
                }
                continue;
            }
            if self.header_filled == 0 {
                self.message_started()?;
            }
            self.header[self.header_filled] = chunk[0];
            self.header_filled += 1;
            chunk = &chunk[1..];
            if self.header_filled == self.header.len() {
                self.header_filled = 0;
                let [_, a, b, c, d] = self.header;
                let length = u32::from_be_bytes([a, b, c, d]) as usize;
                if length > self.limit {
                    return Err(Status::resource_exhausted(format!(
                        "message too large: {length} bytes declared, the limit for {} is {} bytes",
                        self.what, self.limit
                    )));
                }
                self.remaining = length;
                if length == 0 {
                    self.message_finished();
                }
            }
        }
        Ok(())
    }

    fn timed_out(&self) -> Status {
        if self.in_message() {
            Status::deadline_exceeded(format!(
                "request message not received within {} ms (transport.message_timeout_ms)",
                self.message_timeout.as_millis()
            ))
        } else if self.per_message.is_some() {
            Status::deadline_exceeded(format!(
                "no message for {} ms (transport.stream_idle_timeout_ms); stream closed, open a new one when \
                 there are events",
                self.idle.as_millis()
            ))
        } else {
            Status::deadline_exceeded(format!(
                "no request message within {} ms (transport.message_timeout_ms, or stream_idle_timeout_ms for \
                 reflection)",
                self.idle.as_millis()
            ))
        }
    }
}

struct Guarded {
    guard: GuardedBody,
    inner: Body,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let guard = &mut this.guard;
        if guard.failed {
            return Poll::Ready(None);
        }
        if !guard.in_message() {
            // Asked for more between messages: the previous one has been
            // handled, so an event stream gives its write slot back.
            guard.permit = None;
            if guard.rearm {
                guard.rearm = false;
                let deadline = tokio::time::Instant::now() + guard.idle;
                guard.timer.as_mut().reset(deadline);
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = guard.scan(data)
                {
                    guard.failed = true;
                    guard.permit = None;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => match guard.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    guard.failed = true;
                    guard.permit = None;
                    if let Some(shared) = &guard.per_message {
                        shared.metrics.message_timed_out();
                    }
                    Poll::Ready(Some(Err(guard.timed_out())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
