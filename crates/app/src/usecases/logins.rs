//! Failed-login throttling, one policy for the web app, FTP and SFTP.
//!
//! Failures are counted per (user, source address). The first
//! `max_failures` cost nothing; each one after that blocks the pair for
//! `block_secs`, doubled with every further failure, up to
//! `max_block_secs`. A blocked pair is refused even with the right password,
//! but only that pair: the same user from another address, or another user
//! from the same address, is not. So an attacker guessing a tenant's
//! password slows down to one guess per `max_block_secs` per address, and
//! cannot lock the tenant out from everywhere. Failures from one address over
//! all users (`max_failures_per_address`) block that address alike, so that
//! trying one password on many tenants slows down the same way.
//!
//! A pair's failures are forgotten after `max_block_secs` without one, and at
//! its next successful login. Time comes from the application's [`Clock`],
//! so tests advance it instead of sleeping. The state is in memory, per
//! node: behind a load balancer each node counts on its own, which at most
//! multiplies an attacker's guesses by the number of nodes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;

/// The login throttle's settings (`[logins]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginSettings {
    /// Failed logins for one user from one address before it must wait.
    pub max_failures: u32,
    /// The first wait, in seconds; each further failure doubles it.
    pub block_secs: u64,
    /// The longest wait, in seconds; failures are forgotten after this long
    /// without one.
    pub max_block_secs: u64,
    /// Failed logins from one address, over all users, before that address
    /// must wait (with the same backoff).
    pub max_failures_per_address: u32,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            max_failures: 5,
            block_secs: 5,
            max_block_secs: 900,
            max_failures_per_address: 50,
        }
    }
}

#[derive(Debug)]
pub struct LoginThrottle {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    settings: LoginSettings,
    pairs: HashMap<(String, IpAddr), Failures>,
    addresses: HashMap<IpAddr, Failures>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// Epoch milliseconds of the application's clock.
    last: i64,
    blocked_until: i64,
}

/// Entries kept at most; past it, those no longer blocking are dropped. Only
/// an allowed attempt adds one, so one address adds a bounded number.
const MAX_ENTRIES: usize = 100_000;

/// Longest user name kept as a key.
const MAX_USER_BYTES: usize = 128;

impl LoginThrottle {
    pub fn new(settings: LoginSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(State {
                settings,
                ..State::default()
            }),
        }
    }

    /// Replaces the settings (at start, from the configuration).
    pub fn configure(&self, settings: LoginSettings) {
        if let Ok(mut state) = self.state.lock() {
            state.settings = settings;
        }
    }

    /// `Err(wait)` when `user` from `address` must wait before trying again.
    pub fn check(&self, user: &str, address: IpAddr) -> Result<(), Duration> {
        let Ok(state) = self.state.lock() else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let wait = |f: Option<&Failures>| f.map_or(Duration::ZERO, |f| ms_between(now, f.blocked_until));
        let wait = wait(state.pairs.get(&(key(user), address))).max(wait(state.addresses.get(&address)));
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Records a failed login.
    pub fn failed(&self, user: &str, address: IpAddr) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = self.clock.now_ms();
        let settings = state.settings.clone();
        if state.pairs.len() + state.addresses.len() > MAX_ENTRIES {
            let forget = Duration::from_secs(settings.max_block_secs);
            let live = |f: &mut Failures| ms_between(f.last.max(f.blocked_until), now) < forget;
            state.pairs.retain(|_, f| live(f));
            state.addresses.retain(|_, f| live(f));
            if state.pairs.len() + state.addresses.len() > MAX_ENTRIES {
                state.pairs.retain(|_, f| f.blocked_until > now);
                state.addresses.retain(|_, f| f.blocked_until > now);
            }
        }
        let fresh = Failures {
            count: 0,
            last: now,
            blocked_until: now,
        };
        let pair = state.pairs.entry((key(user), address)).or_insert(fresh);
        bump(pair, now, &settings, settings.max_failures);
        let by_address = state.addresses.entry(address).or_insert(fresh);
        bump(by_address, now, &settings, settings.max_failures_per_address);
    }

    /// Records a successful login: the pair's failures are forgotten (the
    /// address's are not, or logging in to one's own account between guesses
    /// would reset them).
    pub fn succeeded(&self, user: &str, address: IpAddr) {
        if let Ok(mut state) = self.state.lock() {
            state.pairs.remove(&(key(user), address));
        }
    }
}

fn key(user: &str) -> String {
    let user = user.trim();
    let mut end = user.len().min(MAX_USER_BYTES);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_lowercase()
}

/// The time from `from` to `to`, zero if `to` is not later.
fn ms_between(from: i64, to: i64) -> Duration {
    Duration::from_millis(u64::try_from(to.saturating_sub(from)).unwrap_or(0))
}

fn bump(f: &mut Failures, now: i64, settings: &LoginSettings, free: u32) {
    // Quiet for `max_block_secs` after the last failure and its wait: a
    // fresh start. (Counted from the end of the wait, or an attacker at the
    // longest wait would get `max_failures` free guesses after each one.)
    let quiet_since = f.last.max(f.blocked_until);
    if ms_between(quiet_since, now) >= Duration::from_secs(settings.max_block_secs) {
        f.count = 0;
    }
    f.count = f.count.saturating_add(1);
    f.last = now;
    let free = free.max(1);
    if f.count >= free {
        let doublings = (f.count - free).min(32);
        let secs = settings
            .block_secs
            .max(1)
            .saturating_mul(1u64 << doublings)
            .min(settings.max_block_secs.max(1));
        let ms = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        f.blocked_until = now.saturating_add(ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn throttle(max_failures: u32, per_address: u32) -> (LoginThrottle, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        let settings = LoginSettings {
            max_failures,
            block_secs: 10,
            max_block_secs: 100,
            max_failures_per_address: per_address,
        };
        (LoginThrottle::new(settings, clock.clone()), clock)
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_user_is_blocked_from_one_address_only() {
        let (t, _) = throttle(3, 100);
        for _ in 0..2 {
            t.failed("acme", A);
            assert_eq!(t.check("acme", A), Ok(()));
        }
        t.failed("acme", A);
        assert_eq!(t.check("acme", A), Err(Duration::from_secs(10)));
        assert_eq!(
            t.check("ACME ", A),
            Err(Duration::from_secs(10)),
            "names are compared as typed at login"
        );
        assert_eq!(
            t.check("acme", B),
            Ok(()),
            "the owner elsewhere is not locked out"
        );
        assert_eq!(
            t.check("other", A),
            Ok(()),
            "another user from the same address is not either"
        );
    }

    #[test]
    fn the_wait_doubles_with_each_failure_up_to_the_cap_and_ends() {
        let (t, clock) = throttle(1, 100);
        let mut waits = Vec::new();
        for _ in 0..7 {
            t.failed("acme", A);
            let wait = t.check("acme", A).unwrap_err();
            waits.push(wait.as_secs());
            clock.advance(wait);
            assert_eq!(t.check("acme", A), Ok(()));
        }
        assert_eq!(waits, [10, 20, 40, 80, 100, 100, 100]);
        // Quiet for the longest wait after the last one ended: a fresh start.
        t.failed("acme", A);
        clock.advance(Duration::from_secs(200));
        t.failed("acme", A);
        assert_eq!(t.check("acme", A), Err(Duration::from_secs(10)));
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_while_and_after_a_success() {
        let (t, clock) = throttle(2, 100);
        t.failed("acme", A);
        clock.advance(Duration::from_secs(100));
        t.failed("acme", A);
        assert_eq!(t.check("acme", A), Ok(()), "the first failure was forgotten");
        t.succeeded("acme", A);
        t.failed("acme", A);
        assert_eq!(
            t.check("acme", A),
            Ok(()),
            "a success forgets the pair's failures"
        );
        t.failed("acme", A);
        assert!(t.check("acme", A).is_err());
    }

    #[test]
    fn one_address_trying_many_users_is_blocked_for_all() {
        let (t, _) = throttle(5, 4);
        for user in ["a", "b", "c", "d"] {
            t.failed(user, A);
        }
        assert!(t.check("e", A).is_err());
        assert_eq!(t.check("e", B), Ok(()));
    }
}
