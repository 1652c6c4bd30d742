//! SIGHUP: re-read the config file and the TLS files, apply what can change
//! under a running server, report what cannot.
//!
//! - Model parameters and variants are swapped in whole; calls in flight
//!   finish with the parameters they began with.
//! - The TLS certificate, key and client CA are re-read from their paths;
//!   new connections get the new certificate, a set that fails to load is
//!   refused and the one in force stays.
//! - Every other setting needs a restart: a changed one is logged and shown
//!   as `creator_boost_restart_pending{setting}` until the file matches the
//!   running process again. The list comes from [`Config::restart_only_changes`],
//!   which cannot miss a field.
//!
//! Each SIGHUP counts once in `creator_boost_reloads_total{outcome}`:
//! `refused` when the file or the certificates were refused, else `applied`.

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::{Config, Overrides};
use crate::engine::Engine;
use crate::metrics::{MetricsRegistry, register};
use crate::service::transport::tls::Certificates;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Reload's own metrics: reloads by outcome, and settings waiting for a restart.
#[derive(Debug)]
pub struct ReloadMetrics {
    outcomes: [Counter; 2],
    restart_pending: Gauge,
}

impl ReloadMetrics {
    /// Reload's families, registered into `registry`.
    pub fn register(registry: &MetricsRegistry) -> Arc<ReloadMetrics> {
        Arc::new(registry.register(|r| {
            let outcomes = Family::<OutcomeLabel, Counter>::default();
            let metrics = ReloadMetrics {
                outcomes: ["applied", "refused"]
                    .map(|outcome| outcomes.get_or_create(&OutcomeLabel { outcome }).clone()),
                restart_pending: register(
                    r,
                    "creator_boost_restart_pending",
                    "Settings changed in the config file that need a restart to apply (the log names them).",
                    Gauge::default(),
                ),
            };
            r.register(
                "creator_boost_reloads",
                "SIGHUP reloads of the config and TLS files, by outcome (refused: what was in force stays).",
                outcomes,
            );
            metrics
        }))
    }

    /// One SIGHUP reload: applied, or refused (what was in force stays).
    pub fn reloaded(&self, applied: bool) {
        self.outcomes[usize::from(!applied)].inc();
    }

    /// The settings of the config file that differ from the running ones
    /// and need a restart (none = the file matches the process).
    pub fn restart_pending(&self, settings: &[&str]) {
        self.restart_pending
            .set(i64::try_from(settings.len()).unwrap_or(i64::MAX));
    }
}

/// What a reload needs: the running process's config and where it came from.
pub struct Reloader {
    /// The engine whose variants are swapped.
    pub engine: Arc<Engine>,
    /// The config file; `None` = only the TLS files are re-read.
    pub path: Option<PathBuf>,
    /// The command line's values, which win over the file as at start.
    pub overrides: Overrides,
    /// The config the process started with.
    pub running: Config,
    /// The certificate in force, if TLS is on.
    pub certificates: Option<Arc<Certificates>>,
    /// Where reloads are counted.
    pub metrics: Arc<ReloadMetrics>,
}

/// What one reload did.
#[derive(Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// The default variant's model version after the reload, if the file was read.
    pub model_version: Option<String>,
    /// Settings that differ in the file but need a restart.
    pub restart_pending: Vec<&'static str>,
    /// Whether the certificates were re-read.
    pub certificates: bool,
}

/// Why a reload was refused; what was in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file is unreadable or invalid.
    #[error("config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The TLS files could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] crate::service::transport::tls::TlsError),
}

impl Reloader {
    /// One reload: the config file is validated whole and the certificates
    /// loaded whole before the variants are swapped in.
    ///
    /// # Errors
    /// [`ReloadError`]: the part that failed; nothing was swapped in (a
    /// refused file leaves the certificates unread, refused certificates
    /// leave the variants as they were).
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        // Both parts are checked before either is swapped in, so a refusal
        // leaves everything as it was.
        let fresh = match &self.path {
            Some(path) => Some(Config::load(Some(path), self.overrides.clone())?),
            None => None,
        };
        if let Some(certificates) = &self.certificates {
            certificates.reload()?;
        }
        let mut reloaded = Reloaded {
            model_version: None,
            restart_pending: Vec::new(),
            certificates: self.certificates.is_some(),
        };
        if let Some(fresh) = fresh {
            reloaded.restart_pending = self.running.restart_only_changes(&fresh);
            reloaded.model_version = Some(fresh.variants.default_variant().model_version.clone());
            self.engine.replace_variants(fresh.variants);
        }
        Ok(reloaded)
    }

    /// Reloads on every SIGHUP until the task is dropped.
    pub async fn on_sighup(self) {
        #[cfg(unix)]
        {
            let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                tracing::warn!("cannot watch SIGHUP; reload is off");
                return;
            };
            while hangup.recv().await.is_some() {
                self.report(self.reload());
            }
        }
        #[cfg(not(unix))]
        {
            let _ = self;
        }
    }

    fn report(&self, result: Result<Reloaded, ReloadError>) {
        let metrics = &self.metrics;
        match result {
            Ok(reloaded) => {
                if !reloaded.restart_pending.is_empty() {
                    tracing::warn!(
                        settings = ?reloaded.restart_pending,
                        "reload: these settings changed in the file but need a restart; not applied"
                    );
                }
                metrics.restart_pending(&reloaded.restart_pending);
                metrics.reloaded(true);
                tracing::info!(
                    model_version = reloaded.model_version.as_deref().unwrap_or("-"),
                    certificates = reloaded.certificates,
                    "reloaded"
                );
            }
            Err(error) => {
                metrics.reloaded(false);
                tracing::error!(%error, "reload refused; keeping what is in force");
            }
        }
    }
}
