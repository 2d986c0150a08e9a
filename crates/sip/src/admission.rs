//! Who may start a call now: INVITE rate and concurrent calls, per source
//! address and per tenant, so that a flood from one SBC (or for one tenant)
//! never takes what another needs. A refused INVITE gets `503` with
//! `Retry-After`, answered without keeping any state.
//!
//! Time is an argument ([`Instant`]), so the rules are tested without
//! waiting.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callmeta_app::store::TenantId;
use tokio::time::Instant;

/// The bounds (from `[siprec]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdmissionLimits {
    pub calls_per_source: usize,
    pub calls_per_tenant: usize,
    /// New calls per second; twice as many may come in a burst.
    pub invites_per_sec_per_source: u32,
    pub invites_per_sec_per_tenant: u32,
}

/// A token bucket: `rate` tokens a second, at most `burst` held.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(now: Instant, burst: f64) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate.max(1e-9)))
        }
    }
}

#[derive(Debug)]
struct Peer {
    calls: usize,
    bucket: Bucket,
}

/// Entries kept before the idle ones are forgotten, and at most.
const PRUNE_AT: usize = 10_000;
const MAX_PEERS: usize = 100_000;

/// Per-key counters; entries with no call and a full bucket are forgotten
/// when the map grows (at most once a second, so that a map full of busy
/// entries is not walked on every INVITE), so its size follows the sources
/// seen recently; past [`MAX_PEERS`] a new key is refused.
#[derive(Debug)]
struct Counters<K> {
    peers: HashMap<K, Peer>,
    pruned: Option<Instant>,
}

impl<K: Hash + Eq + Clone> Counters<K> {
    fn new() -> Self {
        Counters {
            peers: HashMap::new(),
            pruned: None,
        }
    }

    fn check(&mut self, key: &K, now: Instant, rate: f64, max_calls: usize) -> Result<(), Refusal> {
        let burst = (rate * 2.0).max(1.0);
        let due = self
            .pruned
            .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
        if self.peers.len() > PRUNE_AT && due {
            self.pruned = Some(now);
            self.peers.retain(|_, p| {
                p.bucket.refill(now, rate, burst);
                p.calls > 0 || p.bucket.tokens < burst
            });
        }
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(key) {
            return Err(Refusal::TooFast(Duration::from_secs(1)));
        }
        let peer = self.peers.entry(key.clone()).or_insert_with(|| Peer {
            calls: 0,
            bucket: Bucket::full(now, burst),
        });
        if peer.calls >= max_calls {
            return Err(Refusal::TooManyCalls);
        }
        peer.bucket.take(now, rate, burst).map_err(Refusal::TooFast)
    }

    fn give_back_token(&mut self, key: &K) {
        if let Some(p) = self.peers.get_mut(key) {
            p.bucket.tokens += 1.0;
        }
    }

    fn add(&mut self, key: &K) {
        if let Some(p) = self.peers.get_mut(key) {
            p.calls += 1;
        }
    }

    fn remove(&mut self, key: &K) {
        if let Some(p) = self.peers.get_mut(key) {
            p.calls = p.calls.saturating_sub(1);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Refusal {
    TooManyCalls,
    TooFast(Duration),
}

/// Why an INVITE is refused: the text of its `503` and its `Retry-After`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refused {
    pub why: String,
    pub retry_after_secs: u64,
}

#[derive(Debug)]
struct Inner {
    sources: Counters<IpAddr>,
    tenants: Counters<TenantId>,
}

/// The admission counters of one listener.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    limits: AdmissionLimits,
    inner: Arc<Mutex<Inner>>,
}

/// A call admitted: it counts against its source and tenant until dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    inner: Arc<Mutex<Inner>>,
    source: IpAddr,
    tenant: TenantId,
}

impl Ticket {
    pub(crate) fn tenant(&self) -> &TenantId {
        &self.tenant
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.sources.remove(&self.source);
            inner.tenants.remove(&self.tenant);
        }
    }
}

impl Admission {
    pub(crate) fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            limits,
            inner: Arc::new(Mutex::new(Inner {
                sources: Counters::new(),
                tenants: Counters::new(),
            })),
        }
    }

    /// Admits a new call from `source` for `tenant`, or says why not.
    pub(crate) fn admit(&self, source: IpAddr, tenant: &TenantId, now: Instant) -> Result<Ticket, Refused> {
        let source = source.to_canonical();
        let limits = self.limits;
        let Ok(mut inner) = self.inner.lock() else {
            return Err(Refused {
                why: "admission state unavailable".into(),
                retry_after_secs: 1,
            });
        };
        let refused = |what: &str, r: Refusal| match r {
            Refusal::TooManyCalls => Refused {
                why: format!("too many calls in progress from this {what}"),
                retry_after_secs: 5,
            },
            Refusal::TooFast(wait) => Refused {
                why: format!("too many new calls per second from this {what}"),
                retry_after_secs: wait.as_secs().clamp(1, 60),
            },
        };
        inner
            .sources
            .check(
                &source,
                now,
                f64::from(limits.invites_per_sec_per_source.max(1)),
                limits.calls_per_source,
            )
            .map_err(|r| refused("source address", r))?;
        if let Err(r) = inner.tenants.check(
            tenant,
            now,
            f64::from(limits.invites_per_sec_per_tenant.max(1)),
            limits.calls_per_tenant,
        ) {
            inner.sources.give_back_token(&source);
            return Err(refused("tenant", r));
        }
        inner.sources.add(&source);
        inner.tenants.add(tenant);
        Ok(Ticket {
            inner: self.inner.clone(),
            source,
            tenant: tenant.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(calls: usize, rate: u32) -> Admission {
        Admission::new(AdmissionLimits {
            calls_per_source: calls,
            calls_per_tenant: calls * 2,
            invites_per_sec_per_source: rate,
            invites_per_sec_per_tenant: rate * 2,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_source_is_bounded_in_rate_and_concurrent_calls_others_are_not() {
        let a = admission(3, 1);
        let t = TenantId("t".into());
        let u = TenantId("u".into());
        let now = Instant::now();
        // A burst of twice the rate, then refused until a token comes back.
        let first = a.admit(ip("192.0.2.1"), &t, now).unwrap();
        let _second = a.admit(ip("192.0.2.1"), &t, now).unwrap();
        let refused = a.admit(ip("192.0.2.1"), &t, now).unwrap_err();
        assert_eq!(refused.retry_after_secs, 1);
        assert!(refused.why.contains("per second from this source"));
        // Another source, another tenant: admitted.
        let _other = a.admit(ip("198.51.100.1"), &u, now).unwrap();
        // A second later: one more token, and the third call.
        let later = now + Duration::from_secs(1);
        let _third = a.admit(ip("::ffff:192.0.2.1"), &t, later).unwrap();
        // Three calls under way from that source: the fourth is refused
        // however slowly it comes, until one ends.
        let much_later = later + Duration::from_secs(60);
        let refused = a.admit(ip("192.0.2.1"), &t, much_later).unwrap_err();
        assert!(
            refused
                .why
                .contains("too many calls in progress from this source")
        );
        drop(first);
        assert!(a.admit(ip("192.0.2.1"), &t, much_later).is_ok());
    }

    #[test]
    fn a_tenant_is_bounded_across_its_sources() {
        let a = admission(100, 100);
        let t = TenantId("t".into());
        let now = Instant::now();
        let mut tickets = Vec::new();
        // calls_per_tenant is 200: spread over many sources, still 200.
        for i in 0..200u32 {
            let source = IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
            tickets.push(
                a.admit(source, &t, now + Duration::from_secs(u64::from(i)))
                    .unwrap(),
            );
        }
        let refused = a
            .admit(ip("10.9.9.9"), &t, now + Duration::from_secs(1000))
            .unwrap_err();
        assert!(refused.why.contains("from this tenant"));
    }
}
