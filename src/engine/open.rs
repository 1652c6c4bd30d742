//! Opening the store a configuration names and the engine over it: the one
//! way `serve`, the offline import and the tests open a store, so the caches
//! are always kept coherent with the writes made through this process.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::engine::cache::Caches;
use crate::engine::metrics::EngineMetrics;
use crate::engine::{Clock, Engine, EngineSettings};
use crate::metrics::MetricsRegistry;
use crate::store::embedded::{EmbeddedStore, WriterSettings};
use crate::store::redis::{InvalidationHooks, RedisSettings, RedisStore};
use crate::store::{AnyStore, StoreError};

/// Opens the configured store — Redis when `config.store` is set, else the
/// embedded store in `config.data_dir` — and builds the engine over it, with
/// the caches kept coherent with writes made through this process.
///
/// # Errors
/// [`StoreError`] when the store cannot be opened or reached.
pub async fn open_engine(config: &Config, clock: Clock, registry: &MetricsRegistry) -> Result<Arc<Engine>, StoreError> {
    let caches = Arc::new(Caches::with_clock(&config.cache, clock.clone()));
    let hook_caches = Arc::clone(&caches);
    let remote_caches = Arc::clone(&caches);
    let resync_caches = Arc::clone(&caches);
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
                invalidation: Some(InvalidationHooks {
                    remote_write: Arc::new(move |touched| remote_caches.invalidate(touched)),
                    resync: Arc::new(move || resync_caches.invalidate_all()),
                }),
            })
            .await?,
        )),
        None => AnyStore::Embedded(EmbeddedStore::open(
            &config.data_dir,
            WriterSettings {
                ingest: config.ingest.clone(),
                dedupe_window_ms,
                on_commit: Some(Arc::new(move |changes| hook_caches.apply_commit(changes))),
                page_cache_bytes: config.cache.embedded_bytes(),
                disk_floor: config.embedded.disk_floor(),
            },
        )?),
    };
    let settings = EngineSettings {
        limits: config.limits.clone(),
        ingest: config.ingest.clone(),
        variants: config.variants.clone(),
    };
    let metrics = EngineMetrics::register(registry);
    Ok(Arc::new(Engine::new(store, caches, settings, clock, metrics)))
}
