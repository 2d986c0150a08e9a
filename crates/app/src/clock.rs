//! The application's clock: where every timestamp the use cases store or
//! compare comes from (call and version times, session expiry, job leases,
//! the login throttle's windows).
//!
//! It is a port, handed to the use cases in [`Services`](crate::usecases::Services)
//! when the application is wired, never read from a global: a server runs on
//! [`SystemClock`]; the tests run on a [`ManualClock`] and advance it, so
//! that what expires does so in microseconds rather than after a sleep.
//! Timers of I/O (socket timeouts, retransmissions, the intervals of
//! background loops) stay on tokio's time: they wait, they do not date.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Where the time of the use cases comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that stands still until it is moved: the tests' clock. It starts
/// at the wall-clock time of its creation, so what it dates sits among what
/// other processes (the CLI, another node) date on their own clocks.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::at(SystemClock.now_ms())
    }
}

impl ManualClock {
    /// A clock standing at `now_ms`.
    pub fn at(now_ms: i64) -> Self {
        Self {
            now_ms: AtomicI64::new(now_ms),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(ms))
            })
            .ok();
    }

    /// Moves the clock forward to `now_ms`, if it is behind it; never back.
    pub fn advance_to(&self, now_ms: i64) {
        self.now_ms.fetch_max(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_forward_and_only_when_told() {
        let clock = ManualClock::at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now_ms(), 1_250);
        clock.advance_to(1_100);
        assert_eq!(clock.now_ms(), 1_250, "never back");
        clock.advance_to(5_000);
        assert_eq!(clock.now_ms(), 5_000);
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let now = SystemClock.now_ms();
        assert!(now >= before && now - before < 60_000, "{before} {now}");
    }
}
