//! The webhook deliverer, an adapter: it posts the events the use cases
//! recorded (`callmeta_app::usecases::webhooks`) to the tenants' endpoints.
//!
//! [`run`] is the delivery loop of one node: it claims every delivery that
//! is due (a new event at once: the use case wakes it; a retry, or another
//! node's event, at its next poll), sends each on a task of its own (at most
//! [`MAX_IN_FLIGHT`] at once) and hands the outcome back to the use case,
//! which decides what comes next (done, retried after a backoff, given up).
//! Outcomes are handed back by one finisher, in batches of those ready
//! together ([`webhooks::finish_all`]: one store commit for the batch); a
//! delivery's slot is free again once its outcome is committed.
//!
//! A delivery is a `POST` of the stored body with `X-Callmeta-Delivery` (the
//! event id), `X-Callmeta-Timestamp` (unix seconds, from the use cases'
//! clock) and `X-Callmeta-Signature: sha256=HEX`, the HMAC-SHA256 of
//! `timestamp + "." + body` under the endpoint's secret ([`sign`]). The
//! client follows no redirect, uses no proxy, gives up after the configured
//! timeout, and connects only to addresses the use case's policy allows:
//! every address a name resolves to is checked ([`Guard`]), and an address
//! written in the URL before sending.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callmeta_app::usecases::Services;
use callmeta_app::usecases::webhooks::{self, Due, Outcome, refused_address};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;

/// Deliveries one node makes at once; a slow endpoint holds one of them
/// for at most the timeout.
pub const MAX_IN_FLIGHT: usize = 32;
/// Outcomes committed together at most.
const MAX_FINISH_BATCH: usize = 256;

/// A delivery made, with the way to tell its task that its outcome is
/// committed.
type Made = (Due, Outcome, tokio::sync::oneshot::Sender<()>);

/// Commits outcomes as they come: each batch is whatever was ready when the
/// last commit ended, so the batches grow with the load.
async fn finisher(services: Arc<Services>, mut made: tokio::sync::mpsc::Receiver<Made>) {
    while let Some(first) = made.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_FINISH_BATCH {
            match made.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (done, acks): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|(due, outcome, ack)| ((due, outcome), ack))
            .unzip();
        if let Err(e) = webhooks::finish_all(&services, done).await {
            tracing::warn!(error = %e, "recording webhook deliveries' outcomes failed");
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// How often old delivery attempts are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// `sha256=` and the hex HMAC-SHA256 of `timestamp.body` under `secret`:
/// what `openssl dgst -sha256 -hmac SECRET` gives for that string.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Resolves a name and refuses it if any of its addresses is one the
/// policy refuses (so that a name cannot point a delivery inside the
/// network, and the addresses checked are the ones connected to).
pub struct Guard {
    pub allow_private: bool,
}

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            for a in &addrs {
                if let Some(why) = refused_address(a.ip(), allow_private) {
                    return Err(format!("{host} resolves to {why}").into());
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The client every delivery of this node goes through.
pub fn client(allow_private: bool, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("callmeta-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(Guard { allow_private }))
        .build()
}

/// Delivers due events until the task is dropped, which also drops the
/// deliveries under way (their jobs go back to any node when their leases
/// run out).
pub async fn run(services: Arc<Services>) {
    let settings = services.webhooks.settings();
    let timeout = Duration::from_secs(settings.timeout_secs.max(1));
    let client = match client(settings.allow_private, timeout) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "the webhook client cannot be built (TLS setup): this node delivers no webhook");
            return;
        }
    };
    let poll = Duration::from_millis(settings.poll_ms.max(10));
    let mut pruned: Option<Instant> = None;
    let mut under_way = tokio::task::JoinSet::new();
    // Dropped with this loop, which aborts the finisher.
    let mut finishing = tokio::task::JoinSet::new();
    let (made, to_finish) = tokio::sync::mpsc::channel::<Made>(MAX_IN_FLIGHT);
    finishing.spawn(finisher(services.clone(), to_finish));
    loop {
        loop {
            while under_way.try_join_next().is_some() {}
            let free = MAX_IN_FLIGHT.saturating_sub(under_way.len());
            if free == 0 {
                // Every slot is busy: wait for one to be done before claiming more.
                under_way.join_next().await;
                continue;
            }
            let due = match webhooks::claim_due(&services, free as u32).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for due webhook deliveries failed; retrying");
                    break;
                }
            };
            let claimed = due.len();
            for due in due {
                let (services, client, made) = (services.clone(), client.clone(), made.clone());
                let allow_private = settings.allow_private;
                under_way.spawn(async move {
                    let outcome = send(&client, &due, allow_private, services.now_ms()).await;
                    let (committed, wait) = tokio::sync::oneshot::channel();
                    if made.send((due, outcome, committed)).await.is_ok() {
                        let _ = wait.await;
                    }
                });
            }
            if claimed < free {
                break;
            }
        }
        if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned = Some(Instant::now());
            if let Err(e) = webhooks::prune_attempts(&services).await {
                tracing::warn!(error = %e, "pruning old delivery attempts failed");
            }
        }
        tokio::select! {
            _ = services.webhooks.recorded() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One attempt: the signed `POST`, and what came of it.
pub async fn send(client: &reqwest::Client, due: &Due, allow_private: bool, now_ms: i64) -> Outcome {
    let started = Instant::now();
    let elapsed = || started.elapsed().as_millis() as u64;
    // An address written in the URL is not resolved, so not seen by the Guard.
    let literal = reqwest::Url::parse(&due.url).ok().and_then(|u| match u.host() {
        Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        _ => None,
    });
    if let Some(why) = literal.and_then(|ip| refused_address(ip, allow_private)) {
        return Outcome {
            status: None,
            latency_ms: 0,
            error: Some(why),
        };
    }
    let timestamp = now_ms.div_euclid(1000);
    let result = client
        .post(&due.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Callmeta-Delivery", &due.event_id)
        .header("X-Callmeta-Event", &due.event)
        .header("X-Callmeta-Timestamp", timestamp.to_string())
        .header("X-Callmeta-Signature", sign(&due.secret, timestamp, &due.body))
        .body(due.body.clone())
        .send()
        .await;
    match result {
        Ok(response) => Outcome {
            status: Some(response.status().as_u16()),
            latency_ms: elapsed(),
            error: None,
        },
        Err(e) => Outcome {
            status: None,
            latency_ms: elapsed(),
            error: Some(describe(&e)),
        },
    }
}

/// The error and its causes on one line (the cause says what happened:
/// refused address, connection refused, timeout).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "no answer within the timeout".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            sign("s3cret", 1_700_000_000, r#"{"a":1}"#),
            "sha256=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_unless_allowed() {
        let name: Name = "localhost".parse().unwrap();
        let refused = Guard { allow_private: false }.resolve(name).await;
        assert!(refused.err().unwrap().to_string().contains("allow_private"));
        let name: Name = "localhost".parse().unwrap();
        let allowed = Guard { allow_private: true }.resolve(name).await.unwrap();
        assert!(allowed.into_iter().all(|a| a.ip().is_loopback()));
    }
}
