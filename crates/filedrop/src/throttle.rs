//! Failed-login throttling shared by FTP and SFTP: after `max_failures`
//! failed attempts within `window`, a user name, and separately a source
//! address, is refused (even with the right password) until the window has
//! passed since its last failure. A success clears the user's count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    users: HashMap<String, Failures>,
    addresses: HashMap<IpAddr, Failures>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Entries kept at most, so a flood of names cannot grow memory unbounded.
const MAX_ENTRIES: usize = 100_000;

impl LoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether an attempt for `user` from `address` may be checked at all.
    pub fn allowed(&self, user: &str, address: IpAddr) -> bool {
        let Ok(state) = self.state.lock() else {
            return true;
        };
        let now = Instant::now();
        let blocked = |f: Option<&Failures>| {
            f.is_some_and(|f| f.count >= self.max_failures && now.duration_since(f.last) < self.window)
        };
        !blocked(state.users.get(user)) && !blocked(state.addresses.get(&address))
    }

    pub fn failed(&self, user: &str, address: IpAddr) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        let window = self.window;
        if state.users.len() > MAX_ENTRIES || state.addresses.len() > MAX_ENTRIES {
            state.users.retain(|_, f| now.duration_since(f.last) < window);
            state.addresses.retain(|_, f| now.duration_since(f.last) < window);
        }
        let bump = |f: &mut Failures| {
            if now.duration_since(f.last) >= window {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
        };
        let fresh = Failures { count: 0, last: now };
        bump(state.users.entry(user.to_string()).or_insert(fresh));
        bump(state.addresses.entry(address).or_insert(fresh));
    }

    pub fn succeeded(&self, user: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.users.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_a_user_and_an_address_after_repeated_failures() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.allowed("acme", a));
            throttle.failed("acme", a);
        }
        assert!(!throttle.allowed("acme", a));
        assert!(
            !throttle.allowed("acme", b),
            "the user is blocked from any address"
        );
        assert!(
            !throttle.allowed("other", a),
            "the address is blocked for any user"
        );
        assert!(throttle.allowed("other", b));
    }

    #[test]
    fn the_block_ends_with_the_window() {
        let throttle = LoginThrottle::new(1, Duration::from_millis(20));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        throttle.failed("acme", a);
        assert!(!throttle.allowed("acme", a));
        std::thread::sleep(Duration::from_millis(30));
        assert!(throttle.allowed("acme", a));
    }
}
