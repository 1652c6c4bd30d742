//! The `/metrics` endpoint: serves the process's registry
//! ([`crate::metrics::MetricsRegistry`]) in the OpenMetrics text format, by
//! the Prometheus project's own client (`prometheus-client`), on a separate
//! HTTP port (`--metrics-listen`), served by hyper. The families themselves
//! belong to their owners: [`crate::engine::metrics`],
//! [`crate::service::transport::metrics`], [`crate::service::kafka::metrics`]
//! and [`crate::service::reload`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use tokio::net::TcpListener;

use crate::metrics::MetricsRegistry;

/// Longest a scraper may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one metrics connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (descriptors exhausted), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `GET /metrics` (anything else: 404) over HTTP/1.1 until the task
/// is dropped.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<MetricsRegistry>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&metrics, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
}

fn respond<B>(metrics: &MetricsRegistry, request: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = if request.method() == http::Method::GET && request.uri().path() == "/metrics" {
        (
            http::StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        )
    } else {
        (
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; try /metrics\n".to_owned(),
        )
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ingest::RejectReason;
    use crate::engine::metrics::EngineMetrics;
    use crate::service::kafka::metrics::KafkaMetrics;
    use crate::service::reload::ReloadMetrics;
    use crate::service::transport::metrics::{Method, TransportMetrics};

    #[test]
    fn renders_every_owners_families() {
        let registry = MetricsRegistry::new();
        let engine = EngineMetrics::register(&registry);
        let transport = TransportMetrics::register(&registry);
        let reload = ReloadMetrics::register(&registry);
        let _kafka = KafkaMetrics::register(&registry);
        transport.observe_call(Method::Rank, tonic::Code::Ok, Duration::from_micros(300));
        transport.observe_call(Method::Rank, tonic::Code::ResourceExhausted, Duration::from_micros(5));
        engine.creator_lookups(3, 1);
        engine.rejected(RejectReason::SelfInteraction);
        reload.reloaded(false);
        let text = registry.render();
        assert!(text.contains("creator_boost_requests_total{method=\"Rank\",code=\"OK\"} 1\n"));
        assert!(text.contains("creator_boost_requests_total{method=\"Rank\",code=\"RESOURCE_EXHAUSTED\"} 1\n"));
        assert!(text.contains("creator_boost_requests_total{method=\"RecordEvents\",code=\"UNAVAILABLE\"} 0\n"));
        assert!(text.contains("creator_boost_request_duration_seconds_bucket{le=\"0.0005\",method=\"Rank\"} 2\n"));
        assert!(text.contains("creator_boost_request_duration_seconds_count{method=\"Rank\"} 2\n"));
        assert!(text.contains("creator_boost_cache_hit_ratio 0.75\n"));
        assert!(text.contains("creator_boost_ingest_rejected_total{reason=\"self_interaction\"} 1\n"));
        assert!(text.contains("creator_boost_reloads_total{outcome=\"refused\"} 1\n"));
        assert!(text.contains("creator_boost_kafka_dead_lettered_total{reason=\"self_interaction\"} 0\n"));
        assert!(text.contains("creator_boost_store_up 1\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
