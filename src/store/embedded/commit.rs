//! The writer thread: gathers the batches waiting, applies them in one
//! write transaction, commits durably, then runs the commit hook and answers
//! each batch.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, Table, WriteTransaction};
use tokio::sync::mpsc;

use super::{CREATORS, DEDUPE, GLOBAL_KEY, Job, META, Shared, VIEWERS, WriteJob, WriterSettings, backend, creator_key};
use crate::model::aggregate::apply_event;
use crate::model::params::KindWeights;
use crate::model::{CreatorAggregate, Decay, Event, ViewerRecord};
use crate::store::codec::{decode_creator, decode_viewer, encode_creator, encode_viewer};
use crate::store::{Applied, Changes, StoreError, event_key};

/// How long the writer waits for more batches before committing a group.
const GROUP_LINGER: Duration = Duration::from_millis(1);
/// Most events applied in one group commit.
const MAX_GROUP_EVENTS: usize = 200_000;
/// Dedupe entries examined for expiry per commit: at least this many, and
/// twice the ids the commit added, so the sweep outruns the table's growth.
const MIN_SWEEP_PER_COMMIT: usize = 1_000;
const SWEEP_KEY: &str = "dedupe_sweep_cursor";

/// Per batch of a group, each event's status; and what the group changed.
type GroupOutcome = (Vec<Vec<Applied>>, Changes);

/// The writer thread's loop: until the queue closes, gather a group, check
/// that it may be written (the volume's floor, a pending reopen), commit it,
/// answer it.
pub(super) fn writer_loop(shared: &Shared, settings: &WriterSettings, mut jobs: mpsc::Receiver<Job>) {
    let decay = settings.ingest.decay();
    while let Some(job) = jobs.blocking_recv() {
        let first = match job {
            Job::Write(first) => first,
            Job::Recover => {
                shared.recover();
                continue;
            }
        };
        let (group, events) = gather_group(first, &mut jobs);
        let outcome = shared
            .writable()
            .and_then(|db| commit_group(&db, settings, &decay, &group));
        shared.committed(outcome.as_ref().map(|_| ()));
        answer_group(settings, group, events, outcome);
    }
}

/// `first` and the batches that arrive within [`GROUP_LINGER`], up to
/// [`MAX_GROUP_EVENTS`] events; returns them and their event count.
fn gather_group(first: WriteJob, jobs: &mut mpsc::Receiver<Job>) -> (Vec<WriteJob>, usize) {
    let mut events = first.events.len();
    let mut group = vec![first];
    // Writers that were waiting for the previous commit send their next
    // batches within a fraction of a millisecond: linger briefly so they
    // share this commit instead of each paying for one.
    let linger_until = Instant::now() + GROUP_LINGER;
    while events < MAX_GROUP_EVENTS {
        match jobs.try_recv() {
            Ok(Job::Write(job)) => {
                events += job.events.len();
                group.push(job);
            }
            // The group about to be written checks for a pending reopen.
            Ok(Job::Recover) => {}
            Err(mpsc::error::TryRecvError::Empty) if Instant::now() < linger_until => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(_) => break,
        }
    }
    (group, events)
}

/// After a durable commit, runs the hook and acknowledges every batch; after
/// a failure, answers every batch with the error.
fn answer_group(
    settings: &WriterSettings,
    group: Vec<WriteJob>,
    events: usize,
    outcome: Result<GroupOutcome, StoreError>,
) {
    match outcome {
        Ok((statuses, changes)) => {
            if let Some(hook) = &settings.on_commit {
                hook(&changes);
            }
            for (job, status) in group.into_iter().zip(statuses) {
                // A caller that went away still had its events committed.
                let _ = job.reply.send(Ok(status));
            }
        }
        Err(error) => {
            // A refusal for the floor or a pending reopen was logged once
            // when it began; the batches refused meanwhile are not.
            if matches!(error, StoreError::DiskFloor { .. } | StoreError::Reopening { .. }) {
                tracing::debug!(%error, batches = group.len(), events, "store write refused");
            } else {
                tracing::error!(%error, batches = group.len(), events, "store commit failed");
            }
            for job in group {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
    }
}

/// The four tables, open in one write transaction.
struct Tables<'txn> {
    creators: Table<'txn, u128, &'static [u8]>,
    viewers: Table<'txn, u64, &'static [u8]>,
    meta: Table<'txn, &'static str, &'static [u8]>,
    dedupe: Table<'txn, u128, i64>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, StoreError> {
        Ok(Tables {
            creators: txn.open_table(CREATORS).map_err(backend)?,
            viewers: txn.open_table(VIEWERS).map_err(backend)?,
            meta: txn.open_table(META).map_err(backend)?,
            dedupe: txn.open_table(DEDUPE).map_err(backend)?,
        })
    }
}

/// The records one group reads and changes, kept in memory until written.
struct Working {
    global: CreatorAggregate,
    creators: HashMap<u64, CreatorAggregate>,
    viewers: HashMap<u64, ViewerRecord>,
    /// Event keys accepted by this group.
    seen: HashSet<u128>,
    /// The latest `now_ms` of the group's batches (the sweep's reference).
    newest_ms: i64,
}

/// One write transaction for the whole group: apply each batch to the
/// records, write them, sweep expired event ids, commit (fsync).
fn commit_group(
    db: &Database,
    settings: &WriterSettings,
    decay: &Decay,
    group: &[WriteJob],
) -> Result<GroupOutcome, StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    let outcome = {
        let mut tables = Tables::open(&txn)?;
        let mut working = Working {
            global: match tables.meta.get(GLOBAL_KEY).map_err(backend)? {
                Some(value) => decode_creator(value.value())?,
                None => CreatorAggregate::default(),
            },
            creators: HashMap::new(),
            viewers: HashMap::new(),
            seen: HashSet::new(),
            newest_ms: i64::MIN,
        };
        let statuses = group
            .iter()
            .map(|job| apply_job(&mut tables, &mut working, settings, decay, job))
            .collect::<Result<Vec<_>, _>>()?;
        let changes = write_changes(&mut tables, working, settings.dedupe_window_ms)?;
        (statuses, changes)
    };
    txn.commit().map_err(backend)?;
    Ok(outcome)
}

/// Applies one batch's new events to the working records; each event's status.
fn apply_job(
    tables: &mut Tables<'_>,
    working: &mut Working,
    settings: &WriterSettings,
    decay: &Decay,
    job: &WriteJob,
) -> Result<Vec<Applied>, StoreError> {
    working.newest_ms = working.newest_ms.max(job.now_ms);
    let mut statuses = Vec::with_capacity(job.events.len());
    for event in &job.events {
        if !claim_event_id(&mut tables.dedupe, &mut working.seen, event, job.now_ms)? {
            statuses.push(Applied::Duplicate);
            continue;
        }
        let creator = load_creator(&mut working.creators, &tables.creators, event.creator_id)?;
        let viewer = match event.viewer_id {
            0 => None,
            viewer_id => Some(load_viewer(
                &mut working.viewers,
                &tables.viewers,
                viewer_id,
                &settings.ingest.intimacy_weights,
            )?),
        };
        apply_event(event, &settings.ingest, decay, creator, &mut working.global, viewer);
        statuses.push(Applied::Accepted);
    }
    Ok(statuses)
}

/// Whether `event` is new: an event without an id always is; one with an id
/// is unless this group or the dedupe window has seen it. A new id is
/// remembered from `now_ms`.
fn claim_event_id(
    dedupe: &mut Table<'_, u128, i64>,
    seen: &mut HashSet<u128>,
    event: &Event,
    now_ms: i64,
) -> Result<bool, StoreError> {
    if event.event_id.is_empty() {
        return Ok(true);
    }
    let id = event_key(event);
    if seen.contains(&id) || dedupe.get(id).map_err(backend)?.is_some() {
        return Ok(false);
    }
    seen.insert(id);
    dedupe.insert(id, now_ms).map_err(backend)?;
    Ok(true)
}

/// The working copy of a creator's aggregate, read from the table on first use.
fn load_creator<'w>(
    creators: &'w mut HashMap<u64, CreatorAggregate>,
    table: &Table<'_, u128, &'static [u8]>,
    creator_id: u64,
) -> Result<&'w mut CreatorAggregate, StoreError> {
    Ok(match creators.entry(creator_id) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            let loaded = match table.get(creator_key(creator_id)).map_err(backend)? {
                Some(value) => decode_creator(value.value())?,
                None => CreatorAggregate::default(),
            };
            entry.insert(loaded)
        }
    })
}

/// The working copy of a viewer's record, read from the table on first use.
fn load_viewer<'w>(
    viewers: &'w mut HashMap<u64, ViewerRecord>,
    table: &Table<'_, u64, &'static [u8]>,
    viewer_id: u64,
    intimacy_weights: &KindWeights,
) -> Result<&'w mut ViewerRecord, StoreError> {
    Ok(match viewers.entry(viewer_id) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            let loaded = match table.get(viewer_id).map_err(backend)? {
                Some(value) => decode_viewer(value.value(), intimacy_weights)?,
                None => ViewerRecord::default(),
            };
            entry.insert(loaded)
        }
    })
}

/// Writes the changed records and the platform aggregate, sweeps expired
/// event ids, and returns what changed for the commit hook.
fn write_changes(tables: &mut Tables<'_>, working: Working, dedupe_window_ms: i64) -> Result<Changes, StoreError> {
    // Written in key order: neighbouring keys share B-tree pages, so a
    // page is copied once per commit rather than once per scattered insert.
    let mut creators: Vec<(u64, CreatorAggregate)> = working.creators.into_iter().collect();
    creators.sort_unstable_by_key(|(id, _)| creator_key(*id));
    let mut viewers: Vec<(u64, ViewerRecord)> = working.viewers.into_iter().collect();
    viewers.sort_unstable_by_key(|(id, _)| *id);
    for (id, aggregate) in &creators {
        tables
            .creators
            .insert(creator_key(*id), encode_creator(aggregate).as_slice())
            .map_err(backend)?;
    }
    for (id, record) in &viewers {
        tables
            .viewers
            .insert(id, encode_viewer(record).as_slice())
            .map_err(backend)?;
    }
    tables
        .meta
        .insert(GLOBAL_KEY, encode_creator(&working.global).as_slice())
        .map_err(backend)?;
    sweep_dedupe(
        &mut tables.dedupe,
        &mut tables.meta,
        working.newest_ms.saturating_sub(dedupe_window_ms),
        (2 * working.seen.len()).max(MIN_SWEEP_PER_COMMIT),
    )?;
    creators.sort_unstable_by_key(|(id, _)| *id);
    Ok(Changes {
        creators,
        viewers: viewers.into_iter().map(|(id, r)| (id, Arc::new(r))).collect(),
        global: Arc::new(working.global),
    })
}

/// Forgets event ids accepted before `cutoff_ms`. Keys are uniform hashes,
/// so a cursor sweeping `budget` keys per commit around the key space visits
/// every entry regularly without a second, time-ordered index to maintain.
fn sweep_dedupe(
    dedupe: &mut redb::Table<u128, i64>,
    meta: &mut redb::Table<&str, &[u8]>,
    cutoff_ms: i64,
    budget: usize,
) -> Result<(), StoreError> {
    let cursor = match meta.get(SWEEP_KEY).map_err(backend)? {
        Some(value) => value.value().try_into().map(u128::from_le_bytes).unwrap_or(0),
        None => 0,
    };
    let mut expired: Vec<u128> = Vec::new();
    let mut last = None;
    let mut scanned = 0;
    for entry in dedupe.range(cursor..).map_err(backend)?.take(budget) {
        let (key, accepted_at) = entry.map_err(backend)?;
        scanned += 1;
        last = Some(key.value());
        if accepted_at.value() < cutoff_ms {
            expired.push(key.value());
        }
    }
    for key in &expired {
        dedupe.remove(key).map_err(backend)?;
    }
    // Past the end (fewer keys than the budget): start again from the beginning.
    let next = match last {
        Some(key) if scanned == budget => key.saturating_add(1),
        _ => 0,
    };
    meta.insert(SWEEP_KEY, next.to_le_bytes().as_slice()).map_err(backend)?;
    Ok(())
}
