//! The free-space floor of the data volume. Below it writes are refused at
//! once, before the database meets a full disk (as Elasticsearch's
//! flood-stage watermark and etcd's space quota do): a database that runs
//! out of space mid-commit latches an I/O error and must be reopened, while
//! a refused batch costs nothing and is simply sent again later.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::super::StoreError;

/// The least free space the data volume must keep for writes to go on.
/// Both parts apply: the floor is the larger of the two.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiskFloor {
    /// Bytes that must stay free (0 = no byte floor).
    pub min_free_bytes: u64,
    /// Percent of the volume's size that must stay free (0 = no percent floor).
    pub min_free_percent: f64,
}

impl DiskFloor {
    /// No floor: writes go on until the disk is full.
    pub const NONE: DiskFloor = DiskFloor {
        min_free_bytes: 0,
        min_free_percent: 0.0,
    };

    /// The floor in bytes on a volume of `total` bytes.
    pub fn bytes(&self, total: u64) -> u64 {
        let percent = (total as f64 * self.min_free_percent / 100.0) as u64;
        self.min_free_bytes.max(percent)
    }
}

/// The data volume as last measured: free space, the floor, and whether
/// writes stand below it. Shared by the writer, the write path and the probe.
#[derive(Debug)]
pub(super) struct Volume {
    dir: PathBuf,
    floor: DiskFloor,
    free_bytes: AtomicU64,
    floor_bytes: AtomicU64,
    below: AtomicBool,
}

impl Volume {
    /// The volume holding `dir`, measured once.
    pub(super) fn new(dir: &Path, floor: DiskFloor) -> Volume {
        let volume = Volume {
            dir: dir.to_owned(),
            floor,
            free_bytes: AtomicU64::new(u64::MAX),
            floor_bytes: AtomicU64::new(0),
            below: AtomicBool::new(false),
        };
        let _ = volume.check();
        volume
    }

    /// Measures the volume now (one `statvfs`, about a microsecond).
    ///
    /// # Errors
    /// [`StoreError::DiskFloor`] when free space is below the floor. A volume
    /// that cannot be measured does not block writes (the database reports
    /// real failures itself).
    pub(super) fn check(&self) -> Result<(), StoreError> {
        let stat = match rustix::fs::statvfs(&self.dir) {
            Ok(stat) => stat,
            Err(error) => {
                tracing::debug!(%error, dir = %self.dir.display(), "cannot measure the data volume");
                return Ok(());
            }
        };
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let total = stat.f_blocks.saturating_mul(stat.f_frsize);
        let floor = self.floor.bytes(total);
        self.free_bytes.store(free, Ordering::Relaxed);
        self.floor_bytes.store(floor, Ordering::Relaxed);
        let below = free < floor;
        let was_below = self.below.swap(below, Ordering::Relaxed);
        if below != was_below {
            if below {
                tracing::error!(
                    free_bytes = free,
                    floor_bytes = floor,
                    dir = %self.dir.display(),
                    "data volume below its free-space floor: writes refused until space returns"
                );
            } else {
                tracing::info!(
                    free_bytes = free,
                    floor_bytes = floor,
                    "data volume above its floor again: writes resume"
                );
            }
        }
        if below {
            return Err(StoreError::DiskFloor {
                dir: self.dir.clone(),
                free_bytes: free,
                floor_bytes: floor,
            });
        }
        Ok(())
    }

    /// Whether the latest measure was below the floor.
    pub(super) fn below(&self) -> bool {
        self.below.load(Ordering::Relaxed)
    }

    /// Free bytes and the floor, as last measured (`None` before a measure
    /// succeeded).
    pub(super) fn last(&self) -> Option<(u64, u64)> {
        let free = self.free_bytes.load(Ordering::Relaxed);
        (free != u64::MAX).then(|| (free, self.floor_bytes.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_larger_of_its_parts() {
        let floor = DiskFloor {
            min_free_bytes: 512 << 20,
            min_free_percent: 5.0,
        };
        assert_eq!(floor.bytes(1 << 30), 512 << 20);
        assert_eq!(floor.bytes(100 << 30), 5 << 30);
        assert_eq!(DiskFloor::NONE.bytes(u64::MAX), 0);
    }

    #[test]
    fn a_floor_above_the_volume_refuses_and_none_never_does() {
        let temp = tempfile::tempdir().expect("temp");
        let open = Volume::new(temp.path(), DiskFloor::NONE);
        assert!(open.check().is_ok() && !open.below());
        assert!(open.last().is_some_and(|(free, floor)| free > 0 && floor == 0));
        let full = Volume::new(
            temp.path(),
            DiskFloor {
                min_free_bytes: u64::MAX,
                min_free_percent: 0.0,
            },
        );
        let Err(StoreError::DiskFloor {
            free_bytes,
            floor_bytes,
            ..
        }) = full.check()
        else {
            panic!("a floor of u64::MAX must refuse");
        };
        assert!(full.below() && free_bytes < floor_bytes);
    }
}
