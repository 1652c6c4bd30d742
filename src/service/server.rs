//! Wiring: engine, gRPC service, health, reflection, graceful shutdown.
//! `main` only parses flags and calls [`serve`]; tests call [`run`] with a
//! listener bound to an ephemeral port.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::config::{Config, KafkaConfig, MessageLimits, Overrides, TransportConfig};
use crate::engine::{Clock, Engine, open_engine};
use crate::metrics::MetricsRegistry;
use crate::service::grpc::GrpcService;
use crate::service::kafka::metrics::KafkaMetrics;
use crate::service::kafka::{KafkaIngest, KafkaIngestError};
use crate::service::reload::ReloadMetrics;
use crate::service::task::AbortOnDrop;
use crate::service::transport::metrics::TransportMetrics;

use crate::proto;
use crate::proto::creator_boost_server::CreatorBoostServer;
use crate::service::deadline::DeadlineLayer;
use crate::service::reload::Reloader;
use crate::service::transport::admission::{AdmissionLayer, AdmissionSettings, Budgets};
use crate::service::transport::auth::WriteTokenLayer;
use crate::service::transport::listener::{self, ConnectionLimits};
use crate::service::transport::tls::{self, Certificates, TlsError};
use crate::store::StoreError;

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The write token file could not be read or is empty.
    #[error("write token file {0}")]
    Token(String),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS files could not be read or used.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// Reflection could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The Kafka consumer could not be created.
    #[error(transparent)]
    Kafka(#[from] KafkaIngestError),
}

/// Settings of the gRPC server itself.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Most concurrent Rank/GetCreatorScores calls (0 = unlimited).
    pub max_in_flight: usize,
    /// Most concurrent RecordEvents calls and StreamEvents messages (0 = unlimited).
    pub max_writes_in_flight: usize,
    /// Bearer token required for writes.
    pub write_token: Option<String>,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace: Duration,
    /// Ceiling on any message, in or out.
    pub max_message_bytes: usize,
    /// Largest request message per RPC.
    pub message_limits: MessageLimits,
    /// Connection, HTTP/2 and message-arrival limits.
    pub transport: TransportConfig,
    /// The certificate in force; `None` = plaintext.
    pub tls: Option<Arc<Certificates>>,
    /// The Kafka topic to consume; `None` = gRPC ingest only.
    pub kafka: Option<KafkaConfig>,
}

impl ServerOptions {
    /// The options of `config`, reading the token file if one is set.
    ///
    /// # Errors
    /// [`ServeError::Token`] when the token file is unreadable or empty.
    pub fn from_config(config: &Config) -> Result<ServerOptions, ServeError> {
        let write_token = match &config.write_token_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| ServeError::Token(format!("{}: {e}", path.display())))?;
                let token = text.trim().to_owned();
                if token.is_empty() {
                    return Err(ServeError::Token(format!("{} is empty", path.display())));
                }
                Some(token)
            }
            None => None,
        };
        let tls = match config.tls.clone() {
            Some(files) => Some(Certificates::load(files).map_err(ServeError::Tls)?),
            None => None,
        };
        Ok(ServerOptions {
            tls,
            max_in_flight: config.max_in_flight,
            max_writes_in_flight: config.max_writes_in_flight,
            write_token,
            shutdown_grace: config.shutdown_grace,
            max_message_bytes: config.limits.max_message_bytes,
            message_limits: config.limits.message_limits(),
            transport: config.transport.clone(),
            kafka: config.kafka.clone(),
        })
    }
}

/// The runtime `serve` runs on. `worker_threads` 0 = automatic: one core
/// available (a 1-CPU container, `taskset -c N`) gets a current-thread
/// runtime, which measured ~15% more Rank throughput than a one-worker
/// multi-threaded one (docs/performance.md); more cores get one worker each.
///
/// # Errors
/// The I/O error when the runtime cannot start.
pub fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = if worker_threads == 0 { cores } else { worker_threads };
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Runs `serve` as configured until SIGTERM or SIGINT.
///
/// # Errors
/// [`ServeError`] when the store, address or token file cannot be used.
pub async fn serve(
    config: Config,
    config_path: Option<std::path::PathBuf>,
    overrides: Overrides,
) -> Result<(), ServeError> {
    let options = ServerOptions::from_config(&config)?;
    let registry = MetricsRegistry::new();
    let engine = open_engine(&config, Clock::system(), &registry).await?;
    let _reloader = AbortOnDrop::spawn(
        Reloader {
            engine: Arc::clone(&engine),
            path: config_path,
            overrides,
            running: config.clone(),
            certificates: options.tls.clone(),
            metrics: ReloadMetrics::register(&registry),
        }
        .on_sighup(),
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| ServeError::Bind {
        address: config.listen,
        source,
    })?;
    let metrics = match config.metrics_listen {
        Some(metrics_address) => {
            let metrics_listener = TcpListener::bind(metrics_address)
                .await
                .map_err(|source| ServeError::Bind {
                    address: metrics_address,
                    source,
                })?;
            tracing::info!(address = %metrics_address, "metrics at /metrics");
            Some(metrics_listener)
        }
        None => None,
    };
    match &config.store {
        Some(url) => tracing::info!(%address, store = %url, "creator-boost serving"),
        None => tracing::info!(%address, data_dir = %config.data_dir.display(), "creator-boost serving"),
    }
    run(listener, metrics, engine, &registry, options, shutdown_signal()).await
}

/// Serves on `listener` until `shutdown` resolves, then reports NOT_SERVING,
/// stops accepting, and drains in-flight calls for at most the grace period.
///
/// # Errors
/// [`ServeError`] when reflection cannot be built or the transport fails.
pub async fn run(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    engine: Arc<Engine>,
    registry: &Arc<MetricsRegistry>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let transport_metrics = TransportMetrics::register(registry);
    // Stopped when `run` returns (the guard aborts the task).
    let _metrics_task = metrics
        .map(|listener| AbortOnDrop::spawn(crate::service::metrics::serve_metrics(listener, Arc::clone(registry))));
    let budgets = Budgets::new(options.max_in_flight, options.max_writes_in_flight);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let _store_probe = AbortOnDrop::spawn(probe_store(Arc::clone(&engine), health_reporter.clone()));
    let (stop_ingest, ingest_stopped) = tokio::sync::watch::channel(false);
    let stop_ingest = Arc::new(stop_ingest);
    // Kafka's families are served (at 0) without Kafka too: the dashboards
    // and alerts query them on every deployment.
    let ingest = start_ingest(
        options.kafka.as_ref(),
        &engine,
        KafkaMetrics::register(registry),
        &health_reporter,
        ingest_stopped,
    )?;
    let stop_on_shutdown = Arc::clone(&stop_ingest);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_on_shutdown.send(true);
    };
    let service = creator_boost_service(
        GrpcService::new(engine, Arc::clone(&transport_metrics)),
        &options.message_limits,
        options.max_message_bytes,
    );
    health_reporter.set_serving::<CreatorBoostServer<GrpcService>>().await;
    let _read_budget_watch = AbortOnDrop::spawn(watch_read_budget(
        Arc::clone(&budgets),
        health_reporter.clone(),
        <CreatorBoostServer<GrpcService> as tonic::server::NamedService>::NAME,
    ));
    let (reflection_v1, reflection_v1alpha) = reflection()?;
    let (signal, drain_started) = not_serving_then_drain(shutdown, health_reporter);
    let admission = AdmissionLayer::new(
        AdmissionSettings {
            budgets,
            message_limits: options.message_limits,
            message_timeout: Duration::from_millis(options.transport.message_timeout_ms),
            stream_idle_timeout: Duration::from_millis(options.transport.stream_idle_timeout_ms),
        },
        Arc::clone(&transport_metrics),
    );
    let server = http2_settings(&options.transport)
        .layer(WriteTokenLayer::new(
            options.write_token.clone(),
            Arc::clone(&transport_metrics),
        ))
        .layer(admission)
        .layer(DeadlineLayer::new(Arc::clone(&transport_metrics)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener, &options, transport_metrics), signal);
    let served = drain(server, drain_started, options.shutdown_grace).await;
    let _ = stop_ingest.send(true);
    finish_ingest(ingest, options.shutdown_grace).await;
    served
}

/// A running Kafka consumer and its health watcher.
struct Ingest {
    consumer: tokio::task::JoinHandle<()>,
    _health: AbortOnDrop,
}

/// Starts consuming `kafka` (when configured) until `stopped` turns true.
fn start_ingest(
    kafka: Option<&KafkaConfig>,
    engine: &Arc<Engine>,
    metrics: Arc<KafkaMetrics>,
    reporter: &tonic_health::server::HealthReporter,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Ingest>, ServeError> {
    let Some(kafka) = kafka else {
        return Ok(None);
    };
    let consumer = KafkaIngest::start(kafka, Arc::clone(engine), metrics)?;
    let health = AbortOnDrop::spawn(crate::service::kafka::state::report_health(
        consumer.state(),
        reporter.clone(),
    ));
    tracing::info!(brokers = %kafka.brokers, topic = %kafka.topic, group = %kafka.group, "consuming kafka");
    Ok(Some(Ingest {
        consumer: tokio::spawn(consumer.run(stopped)),
        _health: health,
    }))
}

/// Waits, at most `grace`, for the consumer to commit what is durable and
/// leave its group.
async fn finish_ingest(ingest: Option<Ingest>, grace: Duration) {
    let Some(ingest) = ingest else {
        return;
    };
    match tokio::time::timeout(grace, ingest.consumer).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "kafka consumer task failed"),
        Err(_) => tracing::warn!("kafka consumer did not close within the grace period"),
    }
}

/// The CreatorBoost service with its codec limits. The admission layer
/// enforces each RPC's own limit first; the decoder's is the backstop at the
/// largest of them.
fn creator_boost_service(
    service: GrpcService,
    limits: &MessageLimits,
    max_message_bytes: usize,
) -> CreatorBoostServer<GrpcService> {
    let largest_request = limits.rank.max(limits.creator_scores).max(limits.record_events);
    CreatorBoostServer::new(service)
        .max_decoding_message_size(largest_request)
        .max_encoding_message_size(max_message_bytes)
}

/// Reflection, both protocol versions, over this service and health.
fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    ServeError,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = builder()
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let v1alpha = builder()
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    Ok((v1, v1alpha))
}

/// The server's HTTP/2 limits.
fn http2_settings(transport: &TransportConfig) -> Server {
    let keepalive =
        (transport.keepalive_interval_ms > 0).then(|| Duration::from_millis(transport.keepalive_interval_ms));
    Server::builder()
        .max_concurrent_streams(transport.max_concurrent_streams)
        .http2_max_header_list_size(transport.max_header_list_bytes)
        .initial_stream_window_size(transport.stream_window_bytes)
        .initial_connection_window_size(transport.connection_window_bytes)
        .http2_max_pending_accept_reset_streams(Some(transport.max_pending_accept_reset_streams))
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(Some(Duration::from_millis(transport.keepalive_timeout_ms)))
}

/// The accepted connections, through TLS when a certificate is configured.
fn incoming(
    listener: TcpListener,
    options: &ServerOptions,
    metrics: Arc<TransportMetrics>,
) -> impl tokio_stream::Stream<Item = Result<tls::MaybeTls, std::io::Error>> + Send + 'static {
    let transport = &options.transport;
    let handshake_timeout = Duration::from_millis(transport.handshake_timeout_ms);
    let tcp = listener::incoming(
        listener,
        ConnectionLimits {
            max_connections: transport.max_connections,
            handshake_timeout,
            idle_timeout: Duration::from_millis(transport.idle_timeout_ms),
        },
        metrics,
    );
    match options.tls.clone() {
        Some(certificates) => Either::Left(tls::handshaken(tcp, certificates, handshake_timeout)),
        None => Either::Right(tls::plain(tcp)),
    }
}

/// The shutdown signal tonic waits on: once `shutdown` resolves it first
/// flips health to NOT_SERVING, so load balancers stop sending, then lets
/// tonic stop accepting and drain. The receiver hears when draining began.
fn not_serving_then_drain(
    shutdown: impl Future<Output = ()> + Send + 'static,
    reporter: tonic_health::server::HealthReporter,
) -> (
    impl Future<Output = ()> + Send + 'static,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (drain_started_tx, drain_started) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
        reporter.set_not_serving::<CreatorBoostServer<GrpcService>>().await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let _ = drain_started_tx.send(());
    };
    (signal, drain_started)
}

/// Runs `server` to its end, or abandons the calls still running `grace`
/// after draining began.
async fn drain(
    server: impl Future<Output = Result<(), tonic::transport::Error>>,
    drain_started: tokio::sync::oneshot::Receiver<()>,
    grace: Duration,
) -> Result<(), ServeError> {
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = async {
            if drain_started.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; abandoning remaining calls");
        }
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Health service name that reports whether the store answers. The overall
/// status ("") and the CreatorBoost service stay SERVING while the store is
/// down, because Rank still answers (degraded); writes fail until it is back.
pub const STORE_HEALTH_SERVICE: &str = "creatorboost.v1.Store";

/// Health service name that reports whether a batch would be written now:
/// NOT_SERVING while the store is unreachable, the data volume is below its
/// free-space floor, or the embedded store is reopening after an I/O error —
/// while reads may well go on (`creator_boost_writes_blocked` says which).
pub const WRITES_HEALTH_SERVICE: &str = "creatorboost.v1.Writes";

/// How often the store is probed.
const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Sets [`WRITES_HEALTH_SERVICE`] from a probe when it changed, and logs why.
async fn report_writes(
    reporter: &tonic_health::server::HealthReporter,
    probe: crate::engine::StoreProbe,
    last: &mut Option<bool>,
) {
    let writable = probe.writable();
    if *last == Some(writable) {
        return;
    }
    if last.is_some() {
        if writable {
            tracing::info!("writes accepted again");
        } else {
            tracing::warn!(
                unreachable = !probe.reachable,
                disk_floor = probe.writes.disk_floor,
                io_error = probe.writes.io_error,
                "writes refused: health of creatorboost.v1.Writes NOT_SERVING"
            );
        }
    }
    let status = if writable {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status(WRITES_HEALTH_SERVICE, status).await;
    *last = Some(writable);
}

async fn probe_store(engine: Arc<Engine>, reporter: tonic_health::server::HealthReporter) {
    let mut last = None;
    let mut last_writes = None;
    let mut ticks = tokio::time::interval(STORE_PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let probe = engine.probe_store().await;
        report_writes(&reporter, probe, &mut last_writes).await;
        let up = probe.reachable;
        if last != Some(up) {
            if last.is_some() {
                if up {
                    tracing::info!("store reachable again");
                } else {
                    tracing::error!("store unreachable: Rank answers degraded, writes fail with UNAVAILABLE");
                }
            }
            let status = if up {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status(STORE_HEALTH_SERVICE, status).await;
            last = Some(up);
        }
    }
}

/// How often the read budget is checked for health.
const READ_BUDGET_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Reports the CreatorBoost service NOT_SERVING while a Rank would be refused
/// for want of a read slot, so load balancers send reads elsewhere.
async fn watch_read_budget(
    budgets: Arc<Budgets>,
    reporter: tonic_health::server::HealthReporter,
    service: &'static str,
) {
    let mut exhausted = false;
    let mut ticks = tokio::time::interval(READ_BUDGET_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = budgets.reads_exhausted();
        if now != exhausted {
            exhausted = now;
            let status = if now {
                tracing::warn!("read budget exhausted: Rank refused; health NOT_SERVING until a slot frees");
                tonic_health::ServingStatus::NotServing
            } else {
                tonic_health::ServingStatus::Serving
            };
            reporter.set_service_status(service, status).await;
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
