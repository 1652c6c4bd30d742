//! The write token: RecordEvents and StreamEvents must carry
//! `authorization: Bearer <token>` when a token is configured; anything else
//! is answered UNAUTHENTICATED from the headers, before admission takes a
//! budget slot and before any body byte is read. Reads are never asked.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{Either, Ready, ready};
use tonic::Status;
use tonic::body::Body;

use crate::service::transport::Kind;
use crate::service::transport::Refusal;
use crate::service::transport::metrics::TransportMetrics;

/// The tower layer; wrap it outside [`super::admission::AdmissionLayer`].
#[derive(Clone, Debug)]
pub struct WriteTokenLayer {
    token: Option<Arc<str>>,
    metrics: Arc<TransportMetrics>,
}

impl WriteTokenLayer {
    /// Writes must carry `token`; `None` = writes are open (loopback, or
    /// mutual TLS, or consented with `allow_open_writes`). Refusals are
    /// counted in `metrics` as UNAUTHENTICATED calls.
    pub fn new(token: Option<String>, metrics: Arc<TransportMetrics>) -> WriteTokenLayer {
        WriteTokenLayer {
            token: token.map(Arc::from),
            metrics,
        }
    }
}

impl<S> tower_layer::Layer<S> for WriteTokenLayer {
    type Service = WriteToken<S>;

    fn layer(&self, inner: S) -> WriteToken<S> {
        WriteToken {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service wrapper made by [`WriteTokenLayer`].
#[derive(Clone, Debug)]
pub struct WriteToken<S> {
    inner: S,
    layer: WriteTokenLayer,
}

impl<S> tower_service::Service<http::Request<Body>> for WriteToken<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(expected) = &self.layer.token else {
            return Either::Right(self.inner.call(request));
        };
        let kind = Kind::of(request.uri().path());
        if !kind.writes() || presents(request.headers(), expected) {
            return Either::Right(self.inner.call(request));
        }
        let status = Status::from(Refusal::Unauthenticated);
        if let Some(method) = kind.method() {
            self.layer.metrics.observe_call(method, status.code(), Duration::ZERO);
        }
        // The body is dropped unread.
        Either::Left(ready(Ok(status.into_http())))
    }
}

/// Whether `headers` carry `Bearer <expected>`.
fn presents(headers: &http::HeaderMap, expected: &str) -> bool {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(presented.as_bytes(), expected.as_bytes())
}

/// Compares without an early exit, so timing does not reveal how much of a
/// token matched (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let mut headers = http::HeaderMap::new();
        assert!(!presents(&headers, "s3cret"));
        headers.insert(http::header::AUTHORIZATION, "Bearer s3cret".parse().expect("header"));
        assert!(presents(&headers, "s3cret"));
        headers.insert(http::header::AUTHORIZATION, "s3cret".parse().expect("header"));
        assert!(!presents(&headers, "s3cret"));
        headers.insert(http::header::AUTHORIZATION, "Bearer s3cre".parse().expect("header"));
        assert!(!presents(&headers, "s3cret"));
    }
}
