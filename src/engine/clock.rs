//! The one clock of a process: wall time (unix milliseconds) for scores and
//! event timestamps, and a monotonic reading for cache ages, timeouts and the
//! store breaker. Made once (in `serve`, a command or a test) and handed
//! down, so a test can stand time still and move it without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where "now" comes from: the system's clocks, or a manual clock that stands
/// still until a test or a replay ("as of") moves it.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<Manual>>);

#[derive(Debug)]
struct Manual {
    wall_ms: AtomicI64,
    /// The monotonic reading when the clock was made.
    start: Instant,
    /// How far [`Clock::advance`] moved monotonic time.
    advanced: Mutex<Duration>,
    /// Whether monotonic time stands still between advances; else it runs
    /// with the system's (plus the advances).
    frozen: bool,
}

impl Clock {
    /// The system's wall and monotonic clocks.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// Wall time standing still at `now_ms` until [`Clock::set`] or
    /// [`Clock::advance`] (scores as of a fixed instant: tests, replays);
    /// monotonic time runs with the system's, so cache ages, timeouts and
    /// the breaker behave as in production, plus any advance.
    pub fn manual(now_ms: i64) -> Clock {
        Clock::made(now_ms, false)
    }

    /// Wall and monotonic time both standing still until moved: for tests
    /// that check an age to the millisecond.
    pub fn frozen(now_ms: i64) -> Clock {
        Clock::made(now_ms, true)
    }

    fn made(now_ms: i64, frozen: bool) -> Clock {
        Clock(Some(Arc::new(Manual {
            wall_ms: AtomicI64::new(now_ms),
            start: Instant::now(),
            advanced: Mutex::new(Duration::ZERO),
            frozen,
        })))
    }

    /// Sets a manual clock's wall time (a replay jumping to an instant);
    /// monotonic time does not move. No effect on the system clock.
    pub fn set(&self, now_ms: i64) {
        if let Some(manual) = &self.0 {
            manual.wall_ms.store(now_ms, Ordering::Release);
        }
    }

    /// Moves a manual clock forward: wall and monotonic time together. No
    /// effect on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(manual) = &self.0 {
            let by_ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
            manual.wall_ms.fetch_add(by_ms, Ordering::AcqRel);
            *manual.advanced.lock().unwrap_or_else(PoisonError::into_inner) += by;
        }
    }

    /// Wall time now, unix milliseconds (0 if the system clock is before 1970).
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Some(manual) => manual.wall_ms.load(Ordering::Acquire),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        }
    }

    /// Monotonic time now, for ages and timeouts.
    pub fn instant(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(manual) => {
                let advanced = *manual.advanced.lock().unwrap_or_else(PoisonError::into_inner);
                let base = if manual.frozen { manual.start } else { Instant::now() };
                base + advanced
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_moves_only_when_told() {
        let clock = Clock::frozen(1_000);
        let start = clock.instant();
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now_ms(), 1_250);
        assert_eq!(clock.instant() - start, Duration::from_millis(250));
        clock.set(5_000);
        assert_eq!(clock.now_ms(), 5_000);
        assert_eq!(clock.instant() - start, Duration::from_millis(250));
    }

    #[test]
    fn a_manual_clock_holds_wall_time_and_lets_monotonic_time_run() {
        let clock = Clock::manual(1_000);
        let start = clock.instant();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.now_ms(), 1_000);
        assert!(clock.instant() - start >= Duration::from_millis(2));
        clock.advance(Duration::from_secs(60));
        assert_eq!(clock.now_ms(), 61_000);
        assert!(clock.instant() - start >= Duration::from_secs(60));
    }

    #[test]
    fn the_system_clock_ignores_moves() {
        let clock = Clock::system();
        clock.set(0);
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now_ms() > 1_600_000_000_000);
    }
}
