//! The audit log: who (a token's name, a login name, `system`, `cli`), from
//! where (the peer address of the connection), through which channel, did
//! what, on which object, when. One log per tenant, append-only in the
//! store.
//!
//! The use cases record their own entries ([`record`]), so an upload, a
//! settings change or a download is logged the same whichever channel asked
//! for it; an adapter only says who is asking, as an [`Actor`]. An actor's
//! name is an API token's name or a login name (`alice@acme` for a user,
//! the bare slug for the tenant's own login).
//!
//! # What is recorded
//!
//! Logins (web, FTP, SFTP: succeeded, failed), table uploads and
//! activations, table settings, SIPREC settings, back-fills, API tokens
//! created and deleted, users created and changed, SSH keys added, audio
//! downloads ([`actions`]). A change is recorded
//! after it is committed: if the entry cannot be written, the change stands
//! and a warning is logged. A download is recorded before the audio is
//! returned, and refused if it cannot be: no recording leaves unlisted.
//!
//! # Failed logins cannot flood the log
//!
//! A failure is recorded only for an existing tenant (an unknown name has
//! no log to go to) and only when the password was checked: an attempt the
//! login throttle refuses (`logins`) is not checked and not listed, the
//! failures that made it wait are. The throttle bounds the failures per
//! (user, address); many addresses could still fail often, so at most
//! [`FAILED_LOGINS_LISTED`] failures per tenant and minute are listed one
//! by one. Past that they are counted, and the count (with the first and
//! last time, the last name and address) is written as one
//! `login.failed` entry with `detail.suppressed` when that minute is over:
//! at the tenant's next login attempt or at the next [`flush`] (every few
//! seconds on a server, and as it stops), so at most
//! [`FAILED_LOGINS_LISTED`] + 1 entries a minute per tenant on each node
//! (the counts are in memory, per node), whatever the flood.
//!
//! # Retention
//!
//! [`prune`] deletes the entries older than a number of days, of every
//! tenant; the retention job calls it. The store refuses to update an entry
//! or to delete one otherwise (triggers on both databases).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{AppError, Services};
use crate::store::{AuditEntry, AuditPage, AuditQuery, TenantId};

/// How a request reached callmeta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Api,
    Web,
    Ftp,
    Sftp,
    Siprec,
    Cli,
    System,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Api,
        Channel::Web,
        Channel::Ftp,
        Channel::Sftp,
        Channel::Siprec,
        Channel::Cli,
        Channel::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Web => "web",
            Channel::Ftp => "ftp",
            Channel::Sftp => "sftp",
            Channel::Siprec => "siprec",
            Channel::Cli => "cli",
            Channel::System => "system",
        }
    }
}

/// Who asks for something: a name, the address the request came from (if
/// it came over a connection) and the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    pub source: Option<IpAddr>,
    pub channel: Channel,
}

impl Actor {
    pub fn new(name: impl Into<String>, source: Option<IpAddr>, channel: Channel) -> Self {
        Self {
            name: name.into(),
            source,
            channel,
        }
    }

    /// callmeta itself (work resumed after a node stopped, a retention job).
    pub fn system() -> Self {
        Self::new("system", None, Channel::System)
    }

    /// The operator's command line.
    pub fn cli() -> Self {
        Self::new("cli", None, Channel::Cli)
    }
}

/// The actions of the log, as stored and filtered on.
pub mod actions {
    pub const LOGIN_SUCCEEDED: &str = "login.succeeded";
    pub const LOGIN_FAILED: &str = "login.failed";
    /// A table version uploaded (accepted or rejected).
    pub const TABLE_UPLOAD: &str = "table.upload";
    /// A version became its table's active one (an upload, a settings
    /// change, a rollback).
    pub const TABLE_ACTIVATE: &str = "table.activate";
    /// A table created or its settings changed.
    pub const TABLE_SETTINGS: &str = "table.settings";
    pub const SIPREC_SETTINGS: &str = "siprec.settings";
    pub const BACKFILL: &str = "backfill.start";
    pub const TOKEN_CREATE: &str = "token.create";
    pub const TOKEN_DELETE: &str = "token.delete";
    pub const AUDIO_DOWNLOAD: &str = "call.audio_download";
    /// A call erased on request (with its audio and parts).
    pub const CALL_ERASE: &str = "call.erase";
    /// A table deleted on request (with its versions and originals).
    pub const TABLE_DELETE: &str = "table.delete";
    /// The tenant's retention policy set.
    pub const RETENTION_SETTINGS: &str = "retention.settings";
    /// A run of the retention policy that removed something (counts in
    /// `detail`).
    pub const RETENTION_RUN: &str = "retention.run";
    pub const USER_CREATE: &str = "user.create";
    /// A user's role, password or disabled flag changed (what, in `detail`).
    pub const USER_CHANGE: &str = "user.change";
    /// An SSH key added to a login.
    pub const KEY_ADD: &str = "key.add";
    /// The daily export push set, changed or removed (the destination, never
    /// its secrets, in `detail`).
    pub const EXPORT_SETTINGS: &str = "export.settings";
    /// A day's export push asked for on request.
    pub const EXPORT_RUN: &str = "export.run";

    pub const ALL: [&str; 19] = [
        LOGIN_SUCCEEDED,
        LOGIN_FAILED,
        TABLE_UPLOAD,
        TABLE_ACTIVATE,
        TABLE_SETTINGS,
        SIPREC_SETTINGS,
        BACKFILL,
        TOKEN_CREATE,
        TOKEN_DELETE,
        AUDIO_DOWNLOAD,
        CALL_ERASE,
        TABLE_DELETE,
        RETENTION_SETTINGS,
        RETENTION_RUN,
        USER_CREATE,
        USER_CHANGE,
        KEY_ADD,
        EXPORT_SETTINGS,
        EXPORT_RUN,
    ];
}

/// Failed logins listed one by one per tenant and minute; past it they are
/// counted (see the module's documentation).
pub const FAILED_LOGINS_LISTED: u32 = 10;
const WINDOW_MS: i64 = 60_000;
/// The longest page of the log.
pub const MAX_LIMIT: u32 = 1000;
pub const DEFAULT_LIMIT: u32 = 50;
/// The longest actor, action or object a query may filter on.
const MAX_FILTER_CHARS: usize = 256;

/// The failed logins of the current minute, per tenant (in memory, per
/// node; bounded by the number of tenants, since only existing tenants'
/// failures are counted).
#[derive(Debug, Default)]
pub struct FailedLogins {
    windows: Mutex<HashMap<TenantId, Window>>,
}

#[derive(Debug, Clone)]
struct Window {
    start_ms: i64,
    listed: u32,
    suppressed: u32,
    first_suppressed_ms: i64,
    last_suppressed_ms: i64,
    last: Option<Actor>,
}

impl Window {
    fn new(start_ms: i64) -> Self {
        Self {
            start_ms,
            listed: 0,
            suppressed: 0,
            first_suppressed_ms: 0,
            last_suppressed_ms: 0,
            last: None,
        }
    }

    /// The entry counting the failures not listed, if any.
    fn summary(&self, tenant: &TenantId, at_ms: i64) -> Option<AuditEntry> {
        let last = self.last.as_ref()?;
        (self.suppressed > 0).then(|| AuditEntry {
            seq: 0,
            tenant: tenant.clone(),
            at_ms,
            actor: last.name.clone(),
            source: last.source.map(|s| s.to_string()),
            channel: last.channel.as_str().to_string(),
            action: actions::LOGIN_FAILED.to_string(),
            object: login_object(&last.name),
            detail: serde_json::json!({
                "suppressed": self.suppressed,
                "first": super::calls::format_timestamp(self.first_suppressed_ms),
                "last": super::calls::format_timestamp(self.last_suppressed_ms),
                "note": "failed logins over the per-minute listing bound, counted; the last one's name and address shown",
            }),
        })
    }
}

impl FailedLogins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Window>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the summaries of the minutes that are over (of every minute,
    /// with `all`).
    fn ended(&self, now_ms: i64, all: bool, only: Option<&TenantId>) -> Vec<AuditEntry> {
        let mut windows = self.lock();
        let mut out = Vec::new();
        windows.retain(|tenant, w| {
            if (!all && now_ms - w.start_ms < WINDOW_MS) || only.is_some_and(|t| t != tenant) {
                return true;
            }
            out.extend(w.summary(tenant, now_ms));
            false
        });
        out
    }

    /// Counts a failure: whether it is to be listed by itself.
    fn failed(&self, tenant: &TenantId, actor: &Actor, now_ms: i64) -> bool {
        let mut windows = self.lock();
        let w = windows
            .entry(tenant.clone())
            .or_insert_with(|| Window::new(now_ms));
        if w.listed < FAILED_LOGINS_LISTED {
            w.listed += 1;
            return true;
        }
        if w.suppressed == 0 {
            w.first_suppressed_ms = now_ms;
        }
        w.suppressed += 1;
        w.last_suppressed_ms = now_ms;
        w.last = Some(actor.clone());
        false
    }
}

fn login_object(name: &str) -> String {
    format!("logins/{name}")
}

/// Writes an entry; a failure is logged, not returned (the change it tells
/// of is already committed).
pub async fn record(
    services: &Services,
    tenant: &TenantId,
    actor: &Actor,
    action: &str,
    object: impl Into<String>,
    detail: serde_json::Value,
) {
    if let Err(e) = try_record(services, tenant, actor, action, object, detail).await {
        tracing::warn!(tenant = %tenant, action, error = %e, "writing an audit entry failed");
    }
}

/// Writes an entry, or says why it could not be.
pub async fn try_record(
    services: &Services,
    tenant: &TenantId,
    actor: &Actor,
    action: &str,
    object: impl Into<String>,
    detail: serde_json::Value,
) -> Result<(), AppError> {
    let entry = AuditEntry {
        seq: 0,
        tenant: tenant.clone(),
        at_ms: services.now_ms(),
        actor: actor.name.clone(),
        source: actor.source.map(|s| s.to_string()),
        channel: actor.channel.as_str().to_string(),
        action: action.to_string(),
        object: object.into(),
        detail,
    };
    Ok(services.store.insert_audit(&entry).await?)
}

/// A login by `actor` (whose name is the login name) to `tenant`.
pub(crate) async fn login_succeeded(services: &Services, tenant: &TenantId, actor: &Actor) {
    flush_tenant(services, tenant).await;
    record(
        services,
        tenant,
        actor,
        actions::LOGIN_SUCCEEDED,
        login_object(&actor.name),
        serde_json::json!({}),
    )
    .await;
}

/// An SFTP login with one of the tenant's SSH keys.
pub async fn key_login(services: &Services, tenant: &TenantId, actor: &Actor) {
    record(
        services,
        tenant,
        actor,
        actions::LOGIN_SUCCEEDED,
        login_object(&actor.name),
        serde_json::json!({"method": "ssh key"}),
    )
    .await;
}

/// A wrong password for `tenant`: listed, or counted past the bound.
pub(crate) async fn login_failed(services: &Services, tenant: &TenantId, actor: &Actor) {
    flush_tenant(services, tenant).await;
    if services.failed_logins.failed(tenant, actor, services.now_ms()) {
        record(
            services,
            tenant,
            actor,
            actions::LOGIN_FAILED,
            login_object(&actor.name),
            serde_json::json!({"reason": "wrong password"}),
        )
        .await;
    }
}

async fn flush_tenant(services: &Services, tenant: &TenantId) {
    for entry in services
        .failed_logins
        .ended(services.now_ms(), false, Some(tenant))
    {
        write_summary(services, entry).await;
    }
}

async fn write_summary(services: &Services, entry: AuditEntry) {
    if let Err(e) = services.store.insert_audit(&entry).await {
        tracing::warn!(tenant = %entry.tenant, error = %e, "writing the count of failed logins failed");
    }
}

/// Writes the counts of failed logins of every minute that is over (a
/// server calls it every few seconds, and with `all` as it stops, for the
/// minute under way); returns how many entries it wrote.
pub async fn flush(services: &Services, all: bool) -> usize {
    let ended = services.failed_logins.ended(services.now_ms(), all, None);
    let n = ended.len();
    for entry in ended {
        write_summary(services, entry).await;
    }
    n
}

/// A page of the tenant's log, newest first. `limit`: 1 to
/// [`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]); `cursor`: a previous page's
/// `next_cursor`; `actor`, `action`: only entries with exactly this actor,
/// action; `object_prefix`: only entries on objects under this path.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn list(
    services: &Services,
    tenant: &TenantId,
    limit: Option<u32>,
    cursor: Option<&str>,
    actor: Option<&str>,
    action: Option<&str>,
    object_prefix: Option<&str>,
) -> Result<AuditPage, AppError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::over_limit(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let before = match cursor {
        None => None,
        // 1 to 18 digits, as the API document says (`+1` or `-1` is
        // no page's cursor).
        Some(c) => Some(
            (c.len() <= 18 && c.bytes().all(|b| b.is_ascii_digit()))
                .then(|| c.parse::<i64>().ok())
                .flatten()
                .ok_or_else(|| AppError::invalid("cursor", "cursor must be a previous page's next_cursor"))?,
        ),
    };
    let filter = |name: &str, value: Option<&str>| -> Result<Option<String>, AppError> {
        match value.filter(|v| !v.is_empty()) {
            Some(v) if v.chars().count() > MAX_FILTER_CHARS => Err(AppError::over_limit(
                name,
                format!("{name} must have at most {MAX_FILTER_CHARS} characters"),
            )),
            other => Ok(other.map(str::to_string)),
        }
    };
    let query = AuditQuery {
        limit,
        before,
        actor: filter("actor", actor)?,
        action: filter("action", action)?,
        object_prefix: filter("object", object_prefix)?,
    };
    // No actor, action or object holds a NUL (names refuse control
    // characters), and PostgreSQL's text cannot even be compared with one.
    let filters = [&query.actor, &query.action, &query.object_prefix];
    if filters
        .iter()
        .any(|f| f.as_deref().is_some_and(|f| f.contains('\0')))
    {
        return Ok(AuditPage::default());
    }
    Ok(services.store.audit_entries(tenant, &query).await?)
}

/// The latest entries of `action` on objects under `object_prefix` (at
/// most `limit`): who uploaded a table's versions, who downloaded a call's
/// audio.
pub async fn on_objects(
    services: &Services,
    tenant: &TenantId,
    action: &str,
    object_prefix: &str,
    limit: u32,
) -> Result<Vec<AuditEntry>, AppError> {
    let query = AuditQuery {
        limit: limit.clamp(1, MAX_LIMIT),
        before: None,
        actor: None,
        action: Some(action.to_string()),
        object_prefix: Some(object_prefix.to_string()),
    };
    Ok(services.store.audit_entries(tenant, &query).await?.entries)
}

/// Deletes every tenant's entries older than `days` days; returns how
/// many. What the retention settings keep is theirs to say; this is the
/// one way entries leave the log.
#[tracing::instrument(skip_all, fields(days))]
pub async fn prune(services: &Services, days: u32) -> Result<u64, AppError> {
    let before = services
        .now_ms()
        .saturating_sub(i64::from(days).saturating_mul(86_400_000));
    let n = services.store.prune_audit(before).await?;
    if n > 0 {
        tracing::info!(entries = n, days, "audit entries past their retention deleted");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_past_the_bound_are_counted_into_one_entry_per_minute() {
        let logins = FailedLogins::default();
        let tenant = TenantId("t".into());
        let actor = Actor::new("acme", Some("192.0.2.7".parse().unwrap()), Channel::Web);
        let listed = (0..1000)
            .filter(|i| logins.failed(&tenant, &actor, 1_000 + i))
            .count();
        assert_eq!(listed, FAILED_LOGINS_LISTED as usize);
        assert!(
            logins.ended(1_000 + WINDOW_MS - 1, false, None).is_empty(),
            "the minute is not over"
        );
        let summary = logins.ended(1_000 + WINDOW_MS, false, None);
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].detail["suppressed"], 1000 - FAILED_LOGINS_LISTED);
        assert_eq!(summary[0].source.as_deref(), Some("192.0.2.7"));
        assert_eq!(summary[0].action, actions::LOGIN_FAILED);
        // A new minute lists again.
        assert!(logins.failed(&tenant, &actor, 1_000 + WINDOW_MS));
        // A minute without suppressed failures writes nothing when it ends.
        assert!(logins.ended(1_000 + 3 * WINDOW_MS, false, None).is_empty());
    }
}
