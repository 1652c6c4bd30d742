//! Wiring: engine, gRPC service, health, reflection, graceful shutdown.
//! `main` only parses flags and calls [`serve`]; tests call [`run`] with a
//! listener bound to an ephemeral port.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::config::{Config, ConfigError, MessageLimits, Overrides, TransportConfig};
use crate::service::cache::Caches;
use crate::service::engine::{Clock, Engine, EngineSettings};
use crate::service::grpc::GrpcService;
use crate::service::metrics::Metrics;

use crate::proto;
use crate::proto::creator_boost_server::CreatorBoostServer;
use crate::service::transport::admission::{AdmissionLayer, AdmissionSettings, Budgets};
use crate::service::transport::listener::ConnectionLimits;
use crate::store::embedded::{EmbeddedStore, WriterSettings};
use crate::store::redis::{RedisSettings, RedisStore};
use crate::store::{AnyStore, Store, StoreError};

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
    Tls(String),
    /// Reflection could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(String),
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
    /// TLS settings; `None` = plaintext.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
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
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let read = |path: &std::path::Path| {
                    std::fs::read(path).map_err(|e| ServeError::Tls(format!("{}: {e}", path.display())))
                };
                let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
                let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
                if let Some(ca) = &config.tls_client_ca {
                    tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
                }
                Some(tls)
            }
            _ => None,
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
        })
    }
}

/// Opens the configured store — Redis when `config.store` is set, else the
/// embedded store in `config.data_dir` — and builds the engine over it, with
/// the caches kept coherent with writes made through this process.
///
/// # Errors
/// [`StoreError`] when the store cannot be opened or reached.
pub async fn open_engine(
    config: &Config,
    clock: Clock,
    metrics: Arc<Metrics>,
) -> Result<Arc<Engine<AnyStore>>, StoreError> {
    let caches = Arc::new(Caches::new(&config.cache));
    let hook_caches = Arc::clone(&caches);
    let dedupe_window_ms = i64::try_from(config.limits.dedupe_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let store = match &config.store {
        Some(url) => AnyStore::Redis(Box::new(
            RedisStore::connect(RedisSettings {
                url: url.clone(),
                key_prefix: config.redis.key_prefix.clone(),
                ingest: config.ingest.clone(),
                dedupe_window_ms,
                read_timeout: Duration::from_millis(config.redis.read_timeout_ms),
                write_timeout: Duration::from_millis(config.redis.write_timeout_ms),
                on_write: Some(Arc::new(move |touched| hook_caches.invalidate(touched))),
            })
            .await?,
        )),
        None => AnyStore::Embedded(EmbeddedStore::open(
            &config.data_dir,
            WriterSettings {
                ingest: config.ingest.clone(),
                dedupe_window_ms,
                on_commit: Some(Arc::new(move |changes| hook_caches.apply_commit(changes))),
            },
        )?),
    };
    let settings = EngineSettings {
        limits: config.limits.clone(),
        ingest: config.ingest.clone(),
        variants: config.variants.clone(),
    };
    Ok(Arc::new(Engine::new(store, caches, settings, clock, metrics)))
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
    let engine = open_engine(&config, Clock::system(), Metrics::new()).await?;
    let _reloader = config_path.map(|path| {
        AbortOnDrop(tokio::spawn(reload_on_sighup(
            Arc::clone(&engine),
            path,
            overrides,
            config.clone(),
        )))
    });
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
    run(listener, metrics, engine, options, shutdown_signal()).await
}

/// Serves on `listener` until `shutdown` resolves, then reports NOT_SERVING,
/// stops accepting, and drains in-flight calls for at most the grace period.
///
/// # Errors
/// [`ServeError`] when reflection cannot be built or the transport fails.
pub async fn run<S: Store>(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    engine: Arc<Engine<S>>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let deadlines = crate::service::deadline::DeadlineLayer::new(Arc::clone(engine.metrics()));
    let budgets = Budgets::new(options.max_in_flight, options.max_writes_in_flight);
    let admission = AdmissionLayer::new(
        AdmissionSettings {
            budgets: Arc::clone(&budgets),
            write_token: options.write_token.clone(),
            message_limits: options.message_limits,
            message_timeout: Duration::from_millis(options.transport.message_timeout_ms),
            stream_idle_timeout: Duration::from_millis(options.transport.stream_idle_timeout_ms),
        },
        Arc::clone(engine.metrics()),
    );
    // Stopped when `run` returns (the guard aborts the task).
    let _metrics_task = metrics.map(|listener| {
        AbortOnDrop(tokio::spawn(crate::service::metrics::serve_metrics(
            listener,
            Arc::clone(engine.metrics()),
        )))
    });
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let _store_probe = AbortOnDrop(tokio::spawn(probe_store(Arc::clone(&engine), health_reporter.clone())));
    let connection_metrics = Arc::clone(engine.metrics());
    let service = GrpcService::new(engine);
    // The admission layer enforces each RPC's own limit first; this is the
    // codec's backstop at the largest of them.
    let limits = options.message_limits;
    let largest_request = limits.rank.max(limits.creator_scores).max(limits.record_events);
    let service = CreatorBoostServer::new(service)
        .max_decoding_message_size(largest_request)
        .max_encoding_message_size(options.max_message_bytes);
    health_reporter
        .set_serving::<CreatorBoostServer<GrpcService<S>>>()
        .await;
    let _read_budget_watch = AbortOnDrop(tokio::spawn(watch_read_budget(
        Arc::clone(&budgets),
        health_reporter.clone(),
        <CreatorBoostServer<GrpcService<S>> as tonic::server::NamedService>::NAME,
    )));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;

    // `shutdown` first flips health to NOT_SERVING so load balancers stop
    // sending, then lets tonic stop accepting and drain.
    let (drain_started_tx, drain_started) = tokio::sync::oneshot::channel::<()>();
    let reporter = health_reporter.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
        reporter.set_not_serving::<CreatorBoostServer<GrpcService<S>>>().await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let _ = drain_started_tx.send(());
    };

    let transport = &options.transport;
    let incoming = crate::service::transport::listener::incoming(
        listener,
        ConnectionLimits {
            max_connections: transport.max_connections,
            handshake_timeout: Duration::from_millis(transport.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(transport.idle_timeout_ms),
        },
        connection_metrics,
    );
    let keepalive =
        (transport.keepalive_interval_ms > 0).then(|| Duration::from_millis(transport.keepalive_interval_ms));
    let mut builder = Server::builder()
        .max_concurrent_streams(transport.max_concurrent_streams)
        .http2_max_header_list_size(transport.max_header_list_bytes)
        .initial_stream_window_size(transport.stream_window_bytes)
        .initial_connection_window_size(transport.connection_window_bytes)
        .http2_max_pending_accept_reset_streams(Some(transport.max_pending_accept_reset_streams))
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(Some(Duration::from_millis(transport.keepalive_timeout_ms)));
    if let Some(tls) = options.tls.clone() {
        builder = builder.tls_config(tls).map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let server = builder
        .layer(admission)
        .layer(deadlines)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal);

    let grace = options.shutdown_grace;
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

/// How often the store is probed.
const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(1);

async fn probe_store<S: Store>(engine: Arc<Engine<S>>, reporter: tonic_health::server::HealthReporter) {
    let mut last = None;
    let mut ticks = tokio::time::interval(STORE_PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let up = engine.store_reachable().await;
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

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Re-reads the config file and swaps in its model parameters and variants.
/// Everything else in the file needs a restart; a changed value there is
/// reported in the log and left as it was.
///
/// # Errors
/// [`ConfigError`] when the file is unreadable or invalid; the parameters in
/// force stay.
pub fn reload_config<S: Store>(
    engine: &Engine<S>,
    path: &std::path::Path,
    overrides: Overrides,
    running: &Config,
) -> Result<String, ConfigError> {
    let fresh = Config::load(Some(path), overrides)?;
    let restart_needed: Vec<&str> = [
        ("listen", fresh.listen != running.listen),
        ("data_dir", fresh.data_dir != running.data_dir),
        ("store", fresh.store != running.store),
        ("redis", fresh.redis != running.redis),
        ("limits", fresh.limits != running.limits),
        ("cache", fresh.cache != running.cache),
        ("ingest", fresh.ingest != running.ingest),
        ("max_in_flight", fresh.max_in_flight != running.max_in_flight),
        (
            "max_writes_in_flight",
            fresh.max_writes_in_flight != running.max_writes_in_flight,
        ),
        (
            "allow_open_writes",
            fresh.allow_open_writes != running.allow_open_writes,
        ),
        ("transport", fresh.transport != running.transport),
        ("write_token_file", fresh.write_token_file != running.write_token_file),
        ("metrics_listen", fresh.metrics_listen != running.metrics_listen),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect();
    if !restart_needed.is_empty() {
        tracing::warn!(keys = ?restart_needed, "config reload: these settings need a restart and were not applied");
    }
    let version = fresh.variants.default_variant().model_version.clone();
    engine.replace_variants(fresh.variants);
    Ok(version)
}

/// Reloads the config on every SIGHUP until the task is dropped.
async fn reload_on_sighup<S: Store>(
    engine: Arc<Engine<S>>,
    path: std::path::PathBuf,
    overrides: Overrides,
    running: Config,
) {
    #[cfg(unix)]
    {
        let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot watch SIGHUP; config hot reload is off");
            return;
        };
        while hangup.recv().await.is_some() {
            match reload_config(&engine, &path, overrides.clone(), &running) {
                Ok(version) => tracing::info!(model_version = %version, path = %path.display(), "config reloaded"),
                Err(error) => tracing::error!(%error, "config reload refused; keeping the parameters in force"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (engine, path, overrides, running);
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
