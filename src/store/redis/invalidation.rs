//! Invalidation across replicas: after each batch a replica publishes what
//! it touched on one pub/sub channel; every replica subscribes and drops its
//! cached copies at once, instead of serving them until their TTL.
//!
//! Pub/sub is fire-and-forget: a replica whose subscription is down misses
//! messages. While it is down the cache TTL still bounds staleness (every
//! entry expires `cache.ttl_ms` after it was read); once it is back the
//! replica drops every cached copy (what it missed is unknown) and the
//! fast bound holds again. On a Cluster, classic `PUBLISH` reaches every
//! node, so one subscription to any node hears every replica.

use std::sync::Arc;
use std::time::Duration;

use ::redis::ConnectionInfo;
use futures_util::StreamExt;

use crate::store::{InvalidateHook, Touched};

/// Wait before subscribing again after the subscription failed or ended.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(200);

/// What a replica does with what other replicas publish.
#[derive(Clone)]
pub struct InvalidationHooks {
    /// Another replica wrote these: drop their cached copies.
    pub remote_write: InvalidateHook,
    /// The subscription is (back) up after missing messages: drop everything cached.
    pub resync: Arc<dyn Fn() + Send + Sync>,
}

/// The message a batch publishes: `<origin>;<buckets>;<viewers>`, the lists
/// comma-separated.
pub(super) fn message(origin: u64, touched: &Touched) -> String {
    let join = |ids: &mut dyn Iterator<Item = String>| ids.collect::<Vec<_>>().join(",");
    format!(
        "{origin};{};{}",
        join(&mut touched.buckets.iter().map(u32::to_string)),
        join(&mut touched.viewers.iter().map(u64::to_string))
    )
}

/// Parses a message; `None` when it is malformed.
fn parse(payload: &str) -> Option<(u64, Touched)> {
    let mut parts = payload.splitn(3, ';');
    let origin = parts.next()?.parse().ok()?;
    let list = |text: &str| -> Option<Vec<u64>> {
        text.split(',')
            .filter(|id| !id.is_empty())
            .map(|id| id.parse().ok())
            .collect()
    };
    let buckets = list(parts.next()?)?
        .into_iter()
        .map(u32::try_from)
        .collect::<Result<_, _>>()
        .ok()?;
    let viewers = list(parts.next()?)?;
    Some((origin, Touched { buckets, viewers }))
}

/// Stops the listener when the last clone of the store goes.
pub(super) struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening on `channel` through `nodes` (tried in turn), ignoring
/// this replica's own messages (`origin`).
pub(super) fn listen(nodes: Vec<ConnectionInfo>, channel: String, origin: u64, hooks: InvalidationHooks) -> Listener {
    Listener(tokio::spawn(async move {
        for node in nodes.iter().cycle() {
            match follow(node, &channel, origin, &hooks).await {
                Ok(()) => {
                    tracing::warn!("invalidation subscription closed; the cache TTL bounds staleness until it is back")
                }
                Err(error) => {
                    tracing::warn!(%error, "invalidation subscription failed; the cache TTL bounds staleness until it is back")
                }
            }
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
        }
    }))
}

/// One subscription, until its connection ends (`Ok`) or fails to start.
async fn follow(
    node: &ConnectionInfo,
    channel: &str,
    origin: u64,
    hooks: &InvalidationHooks,
) -> Result<(), ::redis::RedisError> {
    let client = ::redis::Client::open(node.clone())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    // Subscribed: anything written from now on is heard; what was written
    // while no subscription was up is not, so all cached copies go.
    (hooks.resync)();
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        match parse(&payload) {
            Some((from, _)) if from == origin => {}
            Some((_, touched)) => (hooks.remote_write)(&touched),
            None => {
                tracing::warn!(payload = %payload.chars().take(80).collect::<String>(), "malformed invalidation message")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let touched = Touched {
            buckets: vec![1, 65_535],
            viewers: vec![7, u64::MAX],
        };
        let (origin, parsed) = parse(&message(42, &touched)).expect("valid");
        assert_eq!(
            (origin, parsed.buckets, parsed.viewers),
            (42, touched.buckets, touched.viewers)
        );
        let (_, empty) = parse(&message(1, &Touched::default())).expect("valid");
        assert!(empty.buckets.is_empty() && empty.viewers.is_empty());
        assert!(parse("x;1;2").is_none());
        assert!(parse("1;99999999999;2").is_none());
    }
}
