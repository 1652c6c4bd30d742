//! Steps 2 and 3 (aggregate hashes) and the settle step of a batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::future::try_join_all;

use super::RedisStore;
use super::keys::{GLOBAL_ID, global_shard, marker};
use super::scripts::{AggregateItem, AggregateTimes, AggregateWrite};
use super::write::{Batch, Counted};
use crate::store::{StoreError, creator_bucket};

/// One aggregate hash's write, with the batch index of each item for a
/// creator bucket (`None` for a platform shard).
type Located<'a> = (AggregateWrite<'a>, Vec<Option<usize>>);

impl RedisStore {
    /// Steps 2 and 3 for the events in `work`; returns, per event index,
    /// whether its creator's script applied it now.
    pub(super) async fn apply_aggregates(
        &self,
        batch: &Batch<'_>,
        work: &[Counted],
        times: AggregateTimes,
    ) -> Result<HashMap<usize, bool>, StoreError> {
        let mut by_bucket: BTreeMap<u32, Vec<&Counted>> = BTreeMap::new();
        let mut by_shard: BTreeMap<u32, Vec<&Counted>> = BTreeMap::new();
        for counted in work {
            let bucket = creator_bucket(batch.events[counted.index].creator_id);
            by_bucket.entry(bucket).or_default().push(counted);
            by_shard.entry(global_shard(bucket)).or_default().push(counted);
        }
        let mut writes: Vec<(String, Located<'_>)> = Vec::with_capacity(by_bucket.len() + by_shard.len());
        for (bucket, counted) in by_bucket {
            let items = counted
                .iter()
                .map(|counted| AggregateItem {
                    marker: batch.hashes[counted.index],
                    aggregate_id: batch.events[counted.index].creator_id.to_string(),
                    delta: counted.delta.creator(),
                })
                .collect();
            let indices = counted.iter().map(|counted| Some(counted.index)).collect();
            writes.push(located(self.keys.bucket(bucket), items, indices));
        }
        for (shard, counted) in by_shard {
            let items = counted
                .iter()
                .map(|counted| AggregateItem {
                    marker: batch.hashes[counted.index],
                    aggregate_id: GLOBAL_ID.to_owned(),
                    delta: counted.delta.platform(),
                })
                .collect();
            writes.push(located(self.keys.global(shard), items, vec![None; counted.len()]));
        }
        let calls = self
            .group_by_slot(writes)
            .into_iter()
            .map(|group| self.apply_group(times, group));
        let mut fresh = HashMap::with_capacity(work.len());
        for (index, flag) in try_join_all(calls).await?.into_iter().flatten() {
            if let Some(index) = index {
                fresh.insert(index, flag);
            }
        }
        Ok(fresh)
    }

    /// One script call's worth of aggregate writes, sent again without the
    /// events found applied before until every write lands; returns each
    /// item's batch index with whether it was applied now.
    async fn apply_group(
        &self,
        times: AggregateTimes,
        mut writes: Vec<Located<'_>>,
    ) -> Result<Vec<(Option<usize>, bool)>, StoreError> {
        let mut flags = Vec::new();
        while !writes.is_empty() {
            let sent: Vec<&AggregateWrite<'_>> = writes.iter().map(|(write, _)| write).collect();
            let found = self.scripts.apply_deltas(&self.connection, times, &sent).await?;
            let mut again = Vec::new();
            for (position, (write, indices)) in writes.into_iter().enumerate() {
                let before: HashSet<usize> = found
                    .iter()
                    .filter(|(w, _)| *w == position)
                    .map(|(_, item)| *item)
                    .collect();
                if before.is_empty() {
                    flags.extend(indices.into_iter().map(|index| (index, true)));
                    continue;
                }
                let AggregateWrite { snapshot_key, items } = write;
                let mut kept = (Vec::new(), Vec::new());
                for (n, (item, index)) in items.into_iter().zip(indices).enumerate() {
                    if before.contains(&n) {
                        flags.push((index, false));
                    } else {
                        kept.0.push(item);
                        kept.1.push(index);
                    }
                }
                if !kept.0.is_empty() {
                    again.push((
                        AggregateWrite {
                            snapshot_key,
                            items: kept.0,
                        },
                        kept.1,
                    ));
                }
            }
            writes = again;
        }
        Ok(flags)
    }

    /// The settle step for the events at `indices` (viewer events with an
    /// id, counted by steps 2 and 3): first their pending deltas are
    /// dropped, then their markers are shortened to
    /// [`RedisStore::settled_marker_ms`]. In that order: a resend that read
    /// a pending line before it was dropped finds the markers still there.
    /// A failure is logged, not returned: the events are durable already,
    /// and what stays unsettled expires with the dedupe window.
    pub(super) async fn settle(&self, batch: &Batch<'_>, indices: &[usize]) {
        if let Err(error) = self.try_settle(batch, indices).await {
            tracing::warn!(%error, events = indices.len(), "settling a batch failed");
        }
    }

    async fn try_settle(&self, batch: &Batch<'_>, indices: &[usize]) -> Result<(), StoreError> {
        let mut by_viewer: BTreeMap<u64, Vec<u128>> = BTreeMap::new();
        let mut markers = Vec::with_capacity(2 * indices.len());
        for &index in indices {
            let Some(hash) = batch.hashes[index] else { continue };
            let event = &batch.events[index];
            by_viewer.entry(event.viewer_id).or_default().push(hash);
            let bucket = creator_bucket(event.creator_id);
            for snapshot in [self.keys.bucket(bucket), self.keys.global(global_shard(bucket))] {
                let key = marker(&snapshot, hash);
                markers.push((key.clone(), key));
            }
        }
        let viewers = by_viewer.into_iter().map(|(viewer, hashes)| {
            let key = self.keys.viewer(viewer);
            (key.clone(), (key, hashes))
        });
        let drops = self
            .group_by_slot(viewers)
            .into_iter()
            .map(|group| async move { self.scripts.settle(&self.connection, &group).await });
        try_join_all(drops).await?;
        let expiry = self.settled_marker_ms();
        let shortens = self
            .group_by_slot(markers)
            .into_iter()
            .map(|group| async move { self.scripts.shorten(&self.connection, &group, expiry).await });
        try_join_all(shortens).await?;
        Ok(())
    }
}

fn located<'a>(
    snapshot_key: String,
    items: Vec<AggregateItem<'a>>,
    indices: Vec<Option<usize>>,
) -> (String, Located<'a>) {
    (snapshot_key.clone(), (AggregateWrite { snapshot_key, items }, indices))
}
