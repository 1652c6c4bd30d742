//! Client deadlines: a tower layer in front of every service reads
//! `grpc-timeout` as the request arrives and, shortly before the deadline,
//! drops the call (abandoning its work) and answers DEADLINE_EXCEEDED.
//!
//! tonic's own timeout layer answers CANCELLED at the deadline itself; this
//! one fires 5% (at least 1 ms) earlier, so callers get the code the gRPC spec
//! gives for an expired deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;

use tonic::Status;

use crate::service::transport::metrics::TransportMetrics;

/// The layer; calls it cuts short are counted in `metrics`.
#[derive(Clone, Debug)]
pub struct DeadlineLayer {
    metrics: Arc<TransportMetrics>,
}

impl DeadlineLayer {
    /// A layer counting expired calls in `metrics`.
    pub fn new(metrics: Arc<TransportMetrics>) -> DeadlineLayer {
        DeadlineLayer { metrics }
    }
}

impl<S> tower_layer::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The service wrapper made by [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    metrics: Arc<TransportMetrics>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower_service::Service<http::Request<B>> for Deadline<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_timeout);
        if let Some(deadline) = deadline {
            request.extensions_mut().insert(ClientDeadline(deadline));
        }
        let call = self.inner.call(request);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let Some(deadline) = deadline else {
                return call.await;
            };
            let margin = (deadline / 20).max(Duration::from_millis(1));
            match tokio::time::timeout(deadline.saturating_sub(margin), call).await {
                Ok(result) => result,
                Err(_) => {
                    metrics.deadline_exceeded();
                    Ok(Status::deadline_exceeded(format!(
                        "deadline of {} ms reached; the call was abandoned",
                        deadline.as_millis()
                    ))
                    .into_http())
                }
            }
        })
    }
}

/// The caller's deadline, parsed once from `grpc-timeout` by [`Deadline`]
/// and left in the request's extensions for the handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientDeadline(pub Duration);

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "123456789S", "5s", "-5S", "5x", "+5S"] {
            assert_eq!(parse_timeout(bad), None, "{bad}");
        }
    }
}
