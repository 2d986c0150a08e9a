//! Webhooks: a tenant's endpoints, the events recorded for them and the
//! policy of their delivery.
//!
//! An event is recorded where it happens (a call created or updated, its
//! audio stored, a version activated or rejected) as an outbox: one row of
//! the store's `jobs` table (kind `webhook`) per subscribed endpoint, holding
//! the exact body to send. While no node works on such a job, its lease
//! holds the time of its next attempt, so "due" is "lease ran out" and any
//! node claims it ([`claim_due`]), exactly one at a time. The HTTP client
//! that sends it is an adapter (`callmeta-webhooks`): it signs and posts
//! the body and reports the outcome ([`finish_all`], in batches), which deletes the job, or
//! gives it back due again after a backoff with jitter, until
//! `retry_for_secs` after the event.
//!
//! Also here: which destinations are refused (loopback, private, link-local
//! unless `[webhooks] allow_private`), and the bounds per tenant (endpoints,
//! pending deliveries).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::calls::format_timestamp;
use super::jobs::{self, Held};
use super::{AppError, Services, new_id};
use crate::store::{
    CallRecord, DeliveryAttempt, FinishedDelivery, Job, JobKind, StoreError, TenantId, VersionRecord,
    WebhookRecord,
};

/// What an endpoint can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    CallCreated,
    CallUpdated,
    CallAudioAvailable,
    /// A call erased on request (its id only: its data is gone).
    CallErased,
    VersionActivated,
    VersionRejected,
    /// A test event, sent to one endpoint on request, whatever it subscribed to.
    Ping,
}

impl Event {
    /// The events an endpoint may subscribe to.
    pub const SUBSCRIBABLE: [Event; 6] = [
        Event::CallCreated,
        Event::CallUpdated,
        Event::CallAudioAvailable,
        Event::CallErased,
        Event::VersionActivated,
        Event::VersionRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::CallCreated => "call.created",
            Event::CallUpdated => "call.updated",
            Event::CallAudioAvailable => "call.audio_available",
            Event::CallErased => "call.erased",
            Event::VersionActivated => "table.version.activated",
            Event::VersionRejected => "table.version.rejected",
            Event::Ping => "ping",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Event::SUBSCRIBABLE.into_iter().find(|e| e.as_str() == s)
    }
}

/// `[webhooks]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Deliver to loopback, private and link-local addresses too (tests,
    /// an endpoint on the same network by the operator's choice).
    pub allow_private: bool,
    /// Endpoints one tenant may have.
    pub max_endpoints_per_tenant: u32,
    /// Deliveries one tenant may have waiting; an event beyond it is not
    /// recorded (and its endpoints' delivery lists say so).
    pub max_pending_per_tenant: u64,
    /// How long one attempt may take (connect, send, answer).
    pub timeout_secs: u64,
    /// How long after an event its delivery is retried.
    pub retry_for_secs: u64,
    /// The wait after the first failed attempt; doubled after each, with
    /// jitter, up to `max_retry_secs`.
    pub first_retry_secs: u64,
    pub max_retry_secs: u64,
    /// How often every node looks for due deliveries (one recorded on the
    /// node itself is sent at once).
    pub poll_ms: u64,
    /// How long delivery attempts are listed.
    pub keep_attempts_days: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            max_endpoints_per_tenant: 20,
            max_pending_per_tenant: 10_000,
            timeout_secs: 10,
            retry_for_secs: 24 * 3600,
            first_retry_secs: 5,
            max_retry_secs: 3600,
            poll_ms: 250,
            keep_attempts_days: 7,
        }
    }
}

/// How long a tenant's endpoints are read from memory before the store is
/// asked again: an endpoint added on another node gets events within it.
const ENDPOINT_CACHE: Duration = Duration::from_secs(1);
/// How often an event not recorded (over the pending bound) is noted in
/// the tenant's delivery lists.
const DROPPED_NOTE_EVERY: Duration = Duration::from_secs(60);
/// The longest a URL, a secret may be.
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_SECRET_CHARS: usize = 256;
/// Delivery attempts listed for an endpoint at most.
pub const MAX_LISTED_ATTEMPTS: u32 = 100;

/// A tenant's endpoints as read at a time.
type CachedEndpoints = (Instant, Arc<Vec<WebhookRecord>>);

/// The webhooks' state in one process: settings, the endpoints read
/// recently, and the signal that a delivery is due now.
#[derive(Default)]
pub struct Outbox {
    settings: RwLock<WebhookSettings>,
    endpoints: Mutex<HashMap<TenantId, CachedEndpoints>>,
    dropped_noted: Mutex<HashMap<TenantId, Instant>>,
    recorded: tokio::sync::Notify,
    /// An export push was asked for on this node (`export_push`): the push
    /// loop looks at once instead of at its next poll.
    pub(crate) push_requested: tokio::sync::Notify,
}

impl Outbox {
    pub fn configure(&self, settings: WebhookSettings) {
        if let Ok(mut s) = self.settings.write() {
            *s = settings;
        }
    }

    pub fn settings(&self) -> WebhookSettings {
        self.settings.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Completes when an event was recorded on this node since the last
    /// wait (the delivery loop then looks at once instead of at its next poll).
    pub async fn recorded(&self) {
        self.recorded.notified().await
    }

    /// Completes when an export push was asked for on this node since the
    /// last wait.
    pub async fn push_requested(&self) {
        self.push_requested.notified().await
    }

    fn forget(&self, tenant: &TenantId) {
        if let Ok(mut map) = self.endpoints.lock() {
            map.remove(tenant);
        }
    }
}

/// An endpoint as its tenant sees it (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_ms: i64,
}

impl From<&WebhookRecord> for Endpoint {
    fn from(w: &WebhookRecord) -> Self {
        Endpoint {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            created_ms: w.created_ms,
        }
    }
}

/// What a tenant asks for.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
}

/// Why an address may not receive deliveries, if it may not.
pub fn refused_address(ip: IpAddr, allow_private: bool) -> Option<String> {
    if allow_private || !is_private(ip) {
        return None;
    }
    Some(format!(
        "{ip} is a loopback, private, link-local or otherwise internal address: \
         webhooks are not delivered there unless the operator sets [webhooks] allow_private = true"
    ))
}

/// Loopback, private, shared, link-local, unspecified, multicast and
/// broadcast addresses: what must not be reachable from a tenant's URL.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [o1, o2, ..] = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || o1 == 0
                // 100.64.0.0/10, carrier-grade NAT.
                || (o1 == 100 && (64..128).contains(&o2))
                // 192.0.0.0/24, protocol assignments.
                || (o1 == 192 && o2 == 0 && a.octets()[2] == 0)
                // 198.18.0.0/15, benchmarking; 240.0.0.0/4, reserved.
                || (o1 == 198 && (o2 == 18 || o2 == 19))
                || o1 >= 240
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s0 = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80
        }
    }
}

/// An endpoint URL: http or https, a host, no credentials; a host that is
/// an address (or `localhost`) must not be an internal one unless allowed.
/// A name's addresses are checked at each delivery, when it is resolved.
pub fn check_url(text: &str, allow_private: bool) -> Result<url::Url, AppError> {
    let field = "url";
    if text.chars().count() > MAX_URL_CHARS {
        return Err(AppError::invalid(
            field,
            format!("url must be at most {MAX_URL_CHARS} characters"),
        ));
    }
    let url = url::Url::parse(text.trim())
        .map_err(|e| AppError::invalid(field, format!("url is not a valid absolute URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(AppError::invalid(
            field,
            format!("url must use http or https, not {}", url.scheme()),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AppError::invalid(
            field,
            "url must not carry credentials: deliveries are authenticated by their signature",
        ));
    }
    let refused = match url.host() {
        None => return Err(AppError::invalid(field, "url must name a host")),
        Some(url::Host::Ipv4(a)) => refused_address(IpAddr::V4(a), allow_private),
        Some(url::Host::Ipv6(a)) => refused_address(IpAddr::V6(a), allow_private),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                refused_address(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), allow_private)
            } else {
                None
            }
        }
    };
    if let Some(why) = refused {
        return Err(AppError::invalid(field, why));
    }
    Ok(url)
}

fn check_events(events: &[String]) -> Result<Vec<String>, AppError> {
    if events.is_empty() {
        return Err(AppError::invalid("events", "events must name at least one event"));
    }
    let known = || {
        Event::SUBSCRIBABLE
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut wanted = Vec::new();
    for name in events {
        let event = Event::parse(name).ok_or_else(|| {
            AppError::invalid(
                "events",
                format!("unknown event {name:?}; the events are {}", known()),
            )
        })?;
        wanted.push(event);
    }
    // In the documented order, each once.
    Ok(Event::SUBSCRIBABLE
        .into_iter()
        .filter(|e| wanted.contains(e))
        .map(|e| e.as_str().to_string())
        .collect())
}

/// Adds an endpoint; its secret is kept to sign deliveries and never shown again.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn create_endpoint(
    services: &Services,
    tenant: &TenantId,
    new: NewEndpoint,
) -> Result<Endpoint, AppError> {
    let settings = services.webhooks.settings();
    let url = check_url(&new.url, settings.allow_private)?;
    let events = check_events(&new.events)?;
    if new.secret.is_empty() || new.secret.chars().count() > MAX_SECRET_CHARS {
        return Err(AppError::invalid(
            "secret",
            format!("secret must be 1 to {MAX_SECRET_CHARS} characters"),
        ));
    }
    let existing = services.store.webhooks(tenant).await?;
    if existing.len() >= settings.max_endpoints_per_tenant as usize {
        return Err(AppError::OverLimit {
            field: None,
            message: format!(
                "a tenant may have at most {} webhook endpoints; delete one first",
                settings.max_endpoints_per_tenant
            ),
        });
    }
    let record = WebhookRecord {
        id: new_id(),
        tenant: tenant.clone(),
        url: url.to_string(),
        events,
        secret: new.secret,
        created_ms: services.now_ms(),
    };
    services.store.insert_webhook(&record).await?;
    services.webhooks.forget(tenant);
    tracing::info!(tenant = %tenant, webhook = %record.id, url = %record.url, "webhook endpoint added");
    Ok(Endpoint::from(&record))
}

#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn list_endpoints(services: &Services, tenant: &TenantId) -> Result<Vec<Endpoint>, AppError> {
    Ok(services
        .store
        .webhooks(tenant)
        .await?
        .iter()
        .map(Endpoint::from)
        .collect())
}

async fn endpoint_record(
    services: &Services,
    tenant: &TenantId,
    id: &str,
) -> Result<WebhookRecord, AppError> {
    services.store.webhook(tenant, id).await.map_err(|e| match e {
        StoreError::NotFound => AppError::NotFound(format!("webhook {id}")),
        other => other.into(),
    })
}

#[tracing::instrument(skip_all, fields(tenant = %tenant, webhook = id))]
pub async fn get_endpoint(services: &Services, tenant: &TenantId, id: &str) -> Result<Endpoint, AppError> {
    Ok(Endpoint::from(&endpoint_record(services, tenant, id).await?))
}

/// Removes an endpoint, its delivery list and its pending deliveries (one
/// under way may still be sent).
#[tracing::instrument(skip_all, fields(tenant = %tenant, webhook = id))]
pub async fn delete_endpoint(services: &Services, tenant: &TenantId, id: &str) -> Result<(), AppError> {
    if !services.store.delete_webhook(tenant, id).await? {
        return Err(AppError::NotFound(format!("webhook {id}")));
    }
    services.webhooks.forget(tenant);
    tracing::info!(tenant = %tenant, webhook = id, "webhook endpoint removed");
    Ok(())
}

/// The endpoint's latest delivery attempts, newest first.
#[tracing::instrument(skip_all, fields(tenant = %tenant, webhook = id))]
pub async fn deliveries(
    services: &Services,
    tenant: &TenantId,
    id: &str,
) -> Result<Vec<DeliveryAttempt>, AppError> {
    endpoint_record(services, tenant, id).await?;
    Ok(services
        .store
        .delivery_attempts(tenant, id, MAX_LISTED_ATTEMPTS)
        .await?)
}

/// Sends a `ping` event to one endpoint (whatever it subscribed to);
/// returns the event's id.
#[tracing::instrument(skip_all, fields(tenant = %tenant, webhook = id))]
pub async fn send_test(services: &Services, tenant: &TenantId, id: &str) -> Result<String, AppError> {
    let endpoint = endpoint_record(services, tenant, id).await?;
    let data = json!({"webhook": endpoint.id, "message": "a test event, sent on request"});
    enqueue(services, tenant, Event::Ping, data, &[endpoint]).await
}

/// The tenant's endpoints, from memory when read within the last second.
async fn endpoints_of(services: &Services, tenant: &TenantId) -> Result<Arc<Vec<WebhookRecord>>, AppError> {
    if let Ok(map) = services.webhooks.endpoints.lock()
        && let Some((at, list)) = map.get(tenant)
        && at.elapsed() < ENDPOINT_CACHE
    {
        return Ok(list.clone());
    }
    let list = Arc::new(services.store.webhooks(tenant).await?);
    if let Ok(mut map) = services.webhooks.endpoints.lock() {
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < ENDPOINT_CACHE);
        }
        map.insert(tenant.clone(), (Instant::now(), list.clone()));
    }
    Ok(list)
}

/// The delivery jobs of an event, one per endpoint of the tenant that
/// subscribed to it, for the caller to write in the transaction of the
/// change the event tells of (the outbox: the change and its event commit
/// together or not at all); then [`jobs_written`]. None when no endpoint
/// wants it, or when the tenant's pending deliveries are at the bound
/// (the event is dropped, logged and noted, as the change must not fail
/// for it). An error reading the endpoints or the bound is the caller's:
/// committing the change without its event would lose the event.
pub async fn event_jobs(
    services: &Services,
    tenant: &TenantId,
    event: Event,
    data: impl FnOnce() -> Value,
) -> Result<Vec<Job>, AppError> {
    let endpoints = endpoints_of(services, tenant).await?;
    let targets: Vec<WebhookRecord> = endpoints
        .iter()
        .filter(|w| w.events.iter().any(|e| e == event.as_str()))
        .cloned()
        .collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    match build_jobs(services, tenant, event, data(), &targets).await {
        Ok((_, jobs)) => Ok(jobs),
        Err(AppError::OverLimit { message, .. }) => {
            note_dropped(services, tenant, event, &targets, &message).await;
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// After jobs of [`event_jobs`] committed: wakes this node's deliverer.
pub fn jobs_written(services: &Services) {
    services.webhooks.recorded.notify_one();
}

/// An event beyond the pending bound is logged, and noted in its endpoints'
/// delivery lists at most once a minute per tenant.
async fn note_dropped(
    services: &Services,
    tenant: &TenantId,
    event: Event,
    targets: &[WebhookRecord],
    why: &str,
) {
    tracing::warn!(tenant = %tenant, event = event.as_str(), reason = why, "webhook event not recorded");
    let due = services.webhooks.dropped_noted.lock().is_ok_and(|mut map| {
        let due = map
            .get(tenant)
            .is_none_or(|at| at.elapsed() >= DROPPED_NOTE_EVERY);
        if due {
            map.insert(tenant.clone(), Instant::now());
        }
        due
    });
    if !due {
        return;
    }
    for w in targets {
        let attempt = DeliveryAttempt {
            id: new_id(),
            tenant: tenant.clone(),
            endpoint: w.id.clone(),
            event_id: String::new(),
            event: event.as_str().to_string(),
            attempt: 0,
            attempted_ms: services.now_ms(),
            status_code: None,
            latency_ms: 0,
            error: Some(format!("events not recorded: {why}")),
        };
        if let Err(e) = services.store.insert_delivery_attempt(&attempt).await {
            tracing::warn!(error = %e, "noting a dropped webhook event failed");
        }
    }
}

/// What a delivery job holds: where to, and the exact body, so that every
/// attempt (on any node) sends the same bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeliveryPayload {
    endpoint: String,
    event_id: String,
    event: String,
    body: String,
    /// When the event happened: retries stop `retry_for_secs` after it.
    first_ms: i64,
    /// The call the event is about, if it is about one: erasing the call
    /// drops its deliveries still waiting (`Store::erase_call`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    call: Option<String>,
}

/// Writes one delivery job per endpoint, due at once, in one transaction.
async fn enqueue(
    services: &Services,
    tenant: &TenantId,
    event: Event,
    data: Value,
    targets: &[WebhookRecord],
) -> Result<String, AppError> {
    let (event_id, jobs) = build_jobs(services, tenant, event, data, targets).await?;
    services.store.insert_jobs(&jobs).await?;
    jobs_written(services);
    tracing::debug!(tenant = %tenant, event = event.as_str(), event_id = %event_id, endpoints = jobs.len(), "webhook event recorded");
    Ok(event_id)
}

/// One delivery job per endpoint, due at once, and the event's id;
/// `OverLimit` when the tenant's pending deliveries would pass the bound.
async fn build_jobs(
    services: &Services,
    tenant: &TenantId,
    event: Event,
    data: Value,
    targets: &[WebhookRecord],
) -> Result<(String, Vec<Job>), AppError> {
    let settings = services.webhooks.settings();
    let pending = services
        .store
        .count_jobs(tenant, JobKind::Webhook, settings.max_pending_per_tenant)
        .await?;
    if pending + targets.len() as u64 > settings.max_pending_per_tenant {
        return Err(AppError::OverLimit {
            field: None,
            message: format!(
                "{pending} webhook deliveries are pending, the most a tenant may have is {}; \
                 check that the endpoints answer 2xx",
                settings.max_pending_per_tenant
            ),
        });
    }
    let now = services.now_ms();
    let event_id = new_id();
    let call = matches!(
        event,
        Event::CallCreated | Event::CallUpdated | Event::CallAudioAvailable
    )
    .then(|| data.get("unique_id").and_then(Value::as_str).map(str::to_string))
    .flatten();
    let body = json!({
        "id": event_id,
        "event": event.as_str(),
        "created": format_timestamp(now),
        "data": data,
    })
    .to_string();
    let jobs: Vec<Job> = targets
        .iter()
        .map(|w| Job {
            id: new_id(),
            kind: JobKind::Webhook,
            tenant: tenant.clone(),
            created_ms: now,
            payload: serde_json::to_value(DeliveryPayload {
                endpoint: w.id.clone(),
                event_id: event_id.clone(),
                event: event.as_str().to_string(),
                body: body.clone(),
                first_ms: now,
                call: call.clone(),
            })
            .unwrap_or(Value::Null),
            owner: String::new(),
            // Due now: a lease that already ran out.
            lease_until_ms: now - 1,
            attempts: 0,
        })
        .collect();
    Ok((event_id, jobs))
}

/// The JSON of a call, as `GET /api/v1/calls/{id}` shows it.
pub fn call_data(c: &CallRecord) -> Value {
    let enrichment: Vec<Value> = c
        .enrichment
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Some(map) = v.as_object_mut() {
                map.remove("at_ms");
                map.insert("at".into(), Value::String(format_timestamp(r.at_ms)));
                if let Some(a) = &r.as_of {
                    let mut as_of = serde_json::Map::new();
                    as_of.insert("call_time".into(), format_timestamp(a.call_ms).into());
                    as_of.insert("reason".into(), a.reason.as_str().into());
                    if let Some(ms) = a.activated_ms {
                        as_of.insert("activated".into(), format_timestamp(ms).into());
                    }
                    map.insert("as_of".into(), Value::Object(as_of));
                }
            }
            v
        })
        .collect();
    json!({
        "unique_id": c.unique_id,
        "timestamp": format_timestamp(c.timestamp_ms),
        "source": c.source.as_str(),
        "external_id": c.external_id,
        "metadata": callmeta_core::enrich::merged_metadata(&c.metadata, &c.enrichment),
        "own_metadata": c.metadata,
        "enrichment": enrichment,
        "audio_state": super::calls::audio_state(c),
    })
}

/// The JSON of a version, as the API's table views show it.
pub fn version_data(v: &VersionRecord, active: bool) -> Value {
    let state = if !v.accepted {
        "rejected"
    } else if active {
        "active"
    } else {
        "inactive"
    };
    json!({
        "id": v.id,
        "table": v.table.to_string(),
        "created": format_timestamp(v.created_ms),
        "channel": v.channel,
        "filename": v.filename,
        "sha256": v.sha256,
        "bytes": v.bytes,
        "rows": v.rows,
        "state": state,
        "report": v.report,
    })
}

/// The jobs of `call.created`, to write with the call.
pub async fn call_created(
    services: &Services,
    tenant: &TenantId,
    call: &CallRecord,
) -> Result<Vec<Job>, AppError> {
    event_jobs(services, tenant, Event::CallCreated, || call_data(call)).await
}

/// The jobs of `call.updated` (its metadata replaced, or its enrichment
/// done again), to write with the update.
pub async fn call_updated(
    services: &Services,
    tenant: &TenantId,
    call: &CallRecord,
) -> Result<Vec<Job>, AppError> {
    event_jobs(services, tenant, Event::CallUpdated, || call_data(call)).await
}

/// The jobs of `call.audio_available`, to write with the call's audio key.
pub async fn audio_available(
    services: &Services,
    tenant: &TenantId,
    call: &CallRecord,
) -> Result<Vec<Job>, AppError> {
    event_jobs(services, tenant, Event::CallAudioAvailable, || call_data(call)).await
}

/// The jobs of `call.erased`, to write with the erasure: only the call's
/// id, what the tenant's systems need to forget it too.
pub async fn call_erased(
    services: &Services,
    tenant: &TenantId,
    unique_id: &str,
) -> Result<Vec<Job>, AppError> {
    event_jobs(
        services,
        tenant,
        Event::CallErased,
        || json!({"unique_id": unique_id}),
    )
    .await
}

/// The jobs of `table.version.activated` or `table.version.rejected` (with
/// its report), to write with the version or its activation; an accepted
/// version an activation guard held back is neither.
pub async fn version_recorded(
    services: &Services,
    tenant: &TenantId,
    version: &VersionRecord,
    activated: bool,
) -> Result<Vec<Job>, AppError> {
    let event = match (version.accepted, activated) {
        (false, _) => Event::VersionRejected,
        (true, true) => Event::VersionActivated,
        (true, false) => return Ok(Vec::new()),
    };
    event_jobs(services, tenant, event, || version_data(version, activated)).await
}

/// A delivery this node is making.
pub struct Due {
    /// The delivery's job id.
    pub id: String,
    pub tenant: TenantId,
    pub endpoint: String,
    pub url: String,
    pub secret: String,
    /// The event's id, the same on every attempt and for every endpoint.
    pub event_id: String,
    pub event: String,
    pub body: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    payload: DeliveryPayload,
    held: Held,
}

impl std::fmt::Debug for Due {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Due")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("url", &self.url)
            .field("event_id", &self.event_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// Claims up to `limit` of the oldest deliveries that are due (of any
/// tenant), each with its endpoint's URL and secret; deliveries to
/// endpoints removed since are dropped on the way.
pub async fn claim_due(services: &Services, limit: u32) -> Result<Vec<Due>, AppError> {
    let claimed = jobs::claim_stale_batch(services, JobKind::Webhook, limit.max(1)).await?;
    let mut due = Vec::with_capacity(claimed.len());
    for (job, held) in claimed {
        let payload: DeliveryPayload = match serde_json::from_value(job.payload.clone()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "a webhook delivery cannot be read; dropped");
                jobs::done(services, held).await?;
                continue;
            }
        };
        let Some(endpoint) = endpoint_for(services, &job.tenant, &payload.endpoint).await? else {
            jobs::done(services, held).await?;
            continue;
        };
        due.push(Due {
            id: job.id,
            tenant: job.tenant,
            endpoint: endpoint.id,
            url: endpoint.url,
            secret: endpoint.secret,
            event_id: payload.event_id.clone(),
            event: payload.event.clone(),
            body: payload.body.clone(),
            attempt: job.attempts.max(1),
            payload,
            held,
        });
    }
    Ok(due)
}

/// A tenant's endpoint, from the endpoints read in the last second, else
/// from the store (one added on another node meanwhile); `None` if it is gone.
async fn endpoint_for(
    services: &Services,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<WebhookRecord>, AppError> {
    if let Some(w) = endpoints_of(services, tenant).await?.iter().find(|w| w.id == id) {
        return Ok(Some(w.clone()));
    }
    match services.store.webhook(tenant, id).await {
        Ok(w) => Ok(Some(w)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What one attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The endpoint's HTTP status, if it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Why no answer came (refused destination, connection, timeout).
    pub error: Option<String>,
}

/// The wait before attempt `attempt + 1`: doubled at each attempt from
/// `first_retry_secs` up to `max_retry_secs`, then a random share of it
/// between half and all (jitter, so that endpoints coming back are not
/// hit by every retry at once).
pub fn backoff_ms(settings: &WebhookSettings, attempt: i64) -> i64 {
    let first = settings.first_retry_secs.max(1) as i64 * 1000;
    let max = (settings.max_retry_secs.max(1) as i64 * 1000).max(first);
    let doublings = (attempt - 1).clamp(0, 30) as u32;
    let full = first.saturating_mul(1i64 << doublings).min(max);
    rand::rng().random_range(full / 2..=full)
}

/// Records the attempts of deliveries made, then forgets each delivery
/// (delivered, or retried for long enough) or gives it back, due after a
/// backoff: all in one store transaction (one commit, not one per
/// delivery); the jobs are held until it commits.
#[tracing::instrument(skip_all, fields(deliveries = done.len()))]
pub async fn finish_all(services: &Services, done: Vec<(Due, Outcome)>) -> Result<(), AppError> {
    let mut finished = Vec::with_capacity(done.len());
    let mut held = Vec::with_capacity(done.len());
    for (due, outcome) in done {
        finished.push(outcome_of(services, &due, outcome));
        held.push(due.held);
    }
    services
        .store
        .finish_deliveries(&services.node, &finished)
        .await?;
    drop(held);
    Ok(())
}

/// What an attempt's outcome means for its delivery: the attempt to record
/// and the retry, if any (counted and logged here).
fn outcome_of(services: &Services, due: &Due, outcome: Outcome) -> FinishedDelivery {
    let _span = tracing::info_span!(
        "delivery",
        tenant = %due.tenant,
        webhook = %due.endpoint,
        event_id = %due.event_id,
        attempt = due.attempt
    )
    .entered();
    let settings = services.webhooks.settings();
    let now = services.now_ms();
    let delivered = outcome.error.is_none() && outcome.status.is_some_and(|s| (200..300).contains(&s));
    let mut error = match (&outcome.error, outcome.status) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(s)) if !delivered => Some(format!("the endpoint answered {s}, not 2xx")),
        _ => None,
    };
    let retry_at = if delivered {
        None
    } else {
        let at = now + backoff_ms(&settings, due.attempt);
        let until = due.payload.first_ms + settings.retry_for_secs as i64 * 1000;
        if at > until {
            if let Some(e) = error.as_mut() {
                e.push_str(&format!(
                    "; no further attempt: retried for {} s after the event",
                    settings.retry_for_secs
                ));
            }
            None
        } else {
            Some(at)
        }
    };
    let attempt = DeliveryAttempt {
        id: new_id(),
        tenant: due.tenant.clone(),
        endpoint: due.endpoint.clone(),
        event_id: due.event_id.clone(),
        event: due.event.clone(),
        attempt: due.attempt,
        attempted_ms: now,
        status_code: outcome.status.map(i64::from),
        latency_ms: outcome.latency_ms as i64,
        error: error.clone(),
    };
    services.metrics.webhook_delivery(match retry_at {
        None if delivered => "delivered",
        None => "given_up",
        Some(_) => "retrying",
    });
    match retry_at {
        None if !delivered => {
            tracing::warn!(
                error = error.as_deref().unwrap_or(""),
                "webhook delivery given up"
            )
        }
        None => {}
        Some(at) => {
            tracing::info!(
                error = error.as_deref().unwrap_or(""),
                retry_in_ms = at - now,
                "webhook delivery failed; will retry"
            )
        }
    }
    let payload = serde_json::to_value(&due.payload).unwrap_or(Value::Null);
    FinishedDelivery {
        attempt,
        job: due.id.clone(),
        retry: retry_at.map(|at| (payload, at)),
    }
}

/// Forgets delivery attempts older than `keep_attempts_days`.
pub async fn prune_attempts(services: &Services) -> Result<u64, AppError> {
    let days = services.webhooks.settings().keep_attempts_days.max(1) as i64;
    let before = services.now_ms() - days * 24 * 3600 * 1000;
    Ok(services.store.prune_delivery_attempts(before).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(refused_address(ip, false).is_some(), "{ip}");
            assert!(refused_address(ip, true).is_none(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(refused_address(ip.parse().unwrap(), false).is_none(), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked() {
        let err = |u: &str| check_url(u, false).unwrap_err().to_string();
        assert!(err("ftp://example.com/x").contains("http or https"));
        assert!(err("not a url").contains("valid absolute URL"));
        assert!(err("http://127.0.0.1:9/x").contains("allow_private"));
        assert!(err("http://localhost/x").contains("allow_private"));
        assert!(err("https://user:pw@example.com/").contains("credentials"));
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let s = WebhookSettings::default();
        for (attempt, full) in [(1, 5_000), (2, 10_000), (3, 20_000), (20, 3_600_000)] {
            for _ in 0..50 {
                let wait = backoff_ms(&s, attempt);
                assert!((full / 2..=full).contains(&wait), "attempt {attempt}: {wait}");
            }
        }
    }
}
