//! The storage port: durable state behind one trait, [`Store`], and the
//! records it holds. The implementations (SQLite and PostgreSQL, one set of
//! SQL) live in the `callmeta-store` crate; this crate names no SQL. A
//! method that reads or writes one tenant's data takes its [`TenantId`];
//! the few that span tenants say so (the registry of tables, the SBC
//! routing table, job leases and web sessions, which are found by a key
//! that already belongs to one tenant). Times are epoch milliseconds.

use async_trait::async_trait;
use callmeta_core::csv::{Report, TableOptions};
use callmeta_core::domain::{TableName, TenantSlug};
use callmeta_core::enrich::{EnrichmentResult, Metadata};
use serde::{Deserialize, Serialize};

/// The internal id of a tenant (never shown to another tenant).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub String);

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What went wrong in the store, whichever database it is; each message
/// says what was being done.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The write would break a uniqueness rule (a taken slug, a call's
    /// `external_id` already used).
    #[error("conflict: {0}")]
    Conflict(String),
    /// What the store holds cannot be read back as a record.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database cannot be reached now (connection lost, pool
    /// exhausted, writer stopped): the same request may succeed later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database refused the statement.
    #[error("the database failed: {0}")]
    Failed(String),
}

#[derive(Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub password_hash: String,
    pub created_ms: i64,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableRecord {
    pub name: TableName,
    pub options: TableOptions,
    pub active_version: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One upload of a table: accepted or rejected, immutable once written.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    pub id: String,
    pub table: TableName,
    pub created_ms: i64,
    /// How it arrived: `http`, `cli`, `ftp`, `sftp`, `web`, `settings`.
    pub channel: String,
    pub filename: Option<String>,
    pub sha256: String,
    pub bytes: u64,
    pub blob_key: String,
    pub accepted: bool,
    pub rows: u64,
    /// The table options it was ingested with.
    pub options: TableOptions,
    pub report: Report,
}

/// What every node needs to know to hold the right versions in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct TableState {
    pub tenant: TenantId,
    pub name: TableName,
    pub options: TableOptions,
    pub active_version: Option<String>,
}

/// The kinds of background work, each finished by its own use case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// An upload whose original is in blob storage, its version not yet
    /// recorded (`tables`).
    Ingest,
    /// A SIPREC call being recorded (`recordings`).
    Recording,
    /// A back-fill under way (`backfill`).
    Backfill,
    /// An event to deliver to one webhook endpoint (`webhooks`): while no
    /// node works on it, its lease holds the time of its next attempt.
    Webhook,
    /// A tenant's retention policy, applied every hour (`retention`): while
    /// no node applies it, its lease holds the time of its next run.
    Retention,
    /// A tenant's daily export schedule (`export_push`): while no node runs
    /// it, its lease holds the time of its next run, which records the
    /// previous day's push.
    ExportSchedule,
    /// One day's export file to push to the tenant's destination
    /// (`export_push`): while no node works on it, its lease holds the time
    /// of its next attempt.
    ExportPush,
}

impl JobKind {
    pub const ALL: [JobKind; 7] = [
        JobKind::Ingest,
        JobKind::Recording,
        JobKind::Backfill,
        JobKind::Webhook,
        JobKind::Retention,
        JobKind::ExportSchedule,
        JobKind::ExportPush,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Ingest => "ingest",
            JobKind::Recording => "recording",
            JobKind::Backfill => "backfill",
            JobKind::Webhook => "webhook",
            JobKind::Retention => "retention",
            JobKind::ExportSchedule => "export_schedule",
            JobKind::ExportPush => "export_push",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Background work leased to one node at a time. Whoever holds the lease
/// renews it while working; a job whose lease ran out was left by a node that
/// stopped, and any node may claim it and finish the work.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The id of what the work produces or completes (a version, a call, a
    /// back-fill).
    pub id: String,
    pub kind: JobKind,
    pub tenant: TenantId,
    pub created_ms: i64,
    /// What the kind's use case needs to finish the work (its progress, for
    /// work done in steps).
    pub payload: serde_json::Value,
    /// The node holding the lease.
    pub owner: String,
    pub lease_until_ms: i64,
    /// How many times a node has claimed it after another's lease ran out.
    pub attempts: i64,
}

/// A web app login, as stored (the token itself is only in the cookie).
#[derive(Clone, PartialEq)]
pub struct WebSessionRecord {
    pub token_hash: String,
    pub tenant: TenantId,
    pub tenant_slug: String,
    pub csrf: String,
    pub created_ms: i64,
    /// The absolute end of the session.
    pub expires_ms: i64,
    /// When it was last used (updated at most every minute or so).
    pub last_seen_ms: i64,
    /// How long it may go unused before it ends.
    pub idle_ms: i64,
    /// The user it logged in as; empty for the tenant's own login.
    pub user_name: String,
    /// What the session may do.
    pub role: Role,
}

impl std::fmt::Debug for WebSessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSessionRecord")
            .field("tenant", &self.tenant)
            .field("expires_ms", &self.expires_ms)
            .field("last_seen_ms", &self.last_seen_ms)
            .field("idle_ms", &self.idle_ms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallSource {
    Siprec,
    Api,
    Ftp,
}

impl CallSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CallSource::Siprec => "siprec",
            CallSource::Api => "api",
            CallSource::Ftp => "ftp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "siprec" => Some(CallSource::Siprec),
            "api" => Some(CallSource::Api),
            "ftp" => Some(CallSource::Ftp),
            _ => None,
        }
    }
}

/// A version becoming a table's active one.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationRecord {
    pub version: String,
    pub activated_ms: i64,
    /// `http`, `cli`, `ftp`, `sftp`, `web` or `settings` (an upload or a
    /// settings change), or the channel that asked for a rollback.
    pub channel: String,
}

/// A version's original in blob storage.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOriginal {
    pub version: String,
    pub blob_key: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub unique_id: String,
    pub timestamp_ms: i64,
    pub source: CallSource,
    pub external_id: Option<String>,
    /// The call's own metadata, as received.
    pub metadata: Metadata,
    pub enrichment: Vec<EnrichmentResult>,
    pub audio_key: Option<String>,
    /// When the tenant's retention policy removed the call's audio (its
    /// `audio_key` is then `None`).
    pub audio_pruned_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One condition of a call list query on a key of the call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum KeyFilter {
    /// `metadata.KEY=VALUE` on an own or added key; the key repeated: any
    /// of the values.
    Equals { key: String, values: Vec<String> },
    /// `metadata.KEY.prefix=VALUE`: the value starts with these characters.
    Prefix { key: String, prefix: String },
    /// `metadata.KEY.missing=true` (`false`: the call has the key).
    Missing { key: String, missing: bool },
    /// `enrichment.TABLE=STATUS` (`matched`, `no_match`, ...); repeated:
    /// any of the statuses.
    Enrichment { table: String, statuses: Vec<String> },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallQuery {
    pub limit: u32,
    pub offset: u64,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// The conditions on keys, all must hold.
    pub filters: Vec<KeyFilter>,
    /// Only calls after this one in list order (`timestamp_ms`, `unique_id`):
    /// a walk by pages that updates what it reads does not skip or repeat.
    pub after: Option<(i64, String)>,
    /// Only calls after the one a previous page's `next_cursor` names.
    pub cursor: Option<Cursor>,
    /// Skip counting the matching calls (the count returned is 0): a walk
    /// by pages needs only the pages.
    pub uncounted: bool,
}

/// Where a page of calls ends, in list order (newest first): the last
/// call's time and its sequence number in the store. Shown to clients as
/// `TIMESTAMP_SEQ`, opaque to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub timestamp_ms: i64,
    pub seq: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.timestamp_ms, self.seq)
    }
}

impl std::str::FromStr for Cursor {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (ts, seq) = s.split_once('_').ok_or(())?;
        Ok(Cursor {
            timestamp_ms: ts.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// Counts stop here: a page never costs a scan of every call.
pub const COUNT_BOUND: u64 = 10_000;

/// A page of calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallPage {
    /// The calls matching, counted up to [`COUNT_BOUND`] (0 when the query
    /// was `uncounted`).
    pub count: u64,
    /// `false` when more calls match than `count` says.
    pub count_exact: bool,
    pub calls: Vec<CallRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// A back-fill, as stored: what it was asked, and its report so far.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillRecord {
    pub id: String,
    pub tenant: TenantId,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub finished_ms: Option<i64>,
    pub dry_run: bool,
    /// The calls it covers (the back-fill use case's filter, as JSON).
    pub filter: serde_json::Value,
    /// Its report, so far or final (the use case's report, as JSON).
    pub report: serde_json::Value,
}

/// One SBC network registered for a tenant by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipSource {
    pub tenant: TenantId,
    pub slug: String,
    /// Canonical CIDR (`192.0.2.0/24`, `2001:db8::1/128`).
    pub network: String,
}

/// What an API token may do (SPEC §14); the use cases decide what each
/// role allows (`usecases::tokens::Role::allows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Analyst,
    Uploader,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Analyst, Role::Uploader];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Uploader => "uploader",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A user of a tenant: its own login (`NAME@TENANT`) with a role. The
/// tenant's own login (its slug and password) is not one of them: it is the
/// tenant's first admin.
#[derive(Clone, PartialEq)]
pub struct UserRecord {
    pub tenant: TenantId,
    pub name: String,
    pub role: Role,
    /// argon2id.
    pub password_hash: String,
    pub disabled: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// An API token as stored, without its secret (only its SHA-256 is kept,
/// and it is not part of the record).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub tenant: TenantId,
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    /// `None`: it does not expire.
    pub expires_ms: Option<i64>,
    /// Updated at most about once a minute.
    pub last_used_ms: Option<i64>,
}

/// A tenant's webhook endpoint, as stored (its secret included: every
/// delivery is signed with it).
#[derive(Clone, PartialEq)]
pub struct WebhookRecord {
    pub id: String,
    pub tenant: TenantId,
    pub url: String,
    /// The event names it receives.
    pub events: Vec<String>,
    pub secret: String,
    pub created_ms: i64,
}

impl std::fmt::Debug for WebhookRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRecord")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A delivery attempt made, and what comes of its job.
#[derive(Debug, Clone)]
pub struct FinishedDelivery {
    pub attempt: DeliveryAttempt,
    /// The delivery's job id.
    pub job: String,
    /// `None`: the job is done (delivered, or given up). Else the payload
    /// to keep and when to try again.
    pub retry: Option<(serde_json::Value, i64)>,
}

/// One attempt to deliver an event to a webhook endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub id: String,
    pub tenant: TenantId,
    pub endpoint: String,
    pub event_id: String,
    pub event: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    pub attempted_ms: i64,
    /// The endpoint's HTTP status, if it answered.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// Why the attempt failed (no answer, refused destination, a status
    /// other than 2xx), if it did.
    pub error: Option<String>,
}

/// One entry of a tenant's audit log: who did what, when, from where, on
/// which object. Written once, never changed; only the retention prune
/// removes old entries.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The store's number of the entry, in the order entries were written
    /// (0 before it is written): the log's keyset.
    pub seq: i64,
    pub tenant: TenantId,
    pub at_ms: i64,
    /// A token's name, a login name, `system` or `cli`.
    pub actor: String,
    /// The peer address of the connection, when there was one.
    pub source: Option<String>,
    /// `api`, `web`, `ftp`, `sftp`, `siprec`, `cli` or `system`.
    pub channel: String,
    /// What was done (`table.upload`, `login.failed`, ...).
    pub action: String,
    /// What it was done on, as a path (`tables/crm/versions/ID`,
    /// `calls/ID/audio`, `tokens/ID`).
    pub object: String,
    /// What else the entry tells (a JSON object).
    pub detail: serde_json::Value,
}

/// A page of a tenant's audit log, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub limit: u32,
    /// Only entries older than this `seq` (a previous page's next cursor).
    pub before: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Only entries whose object starts with this.
    pub object_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// The `before` of the next page; `None` on the last page.
    pub next: Option<i64>,
}

/// A tenant's retention policy: how long what it stores is kept. `None`
/// keeps forever.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Days a call's audio is kept after the call's time.
    pub audio_days: Option<u32>,
    /// Days a call is kept after its time; then it is erased.
    pub calls_days: Option<u32>,
    /// Days a rejected upload's original is kept after the upload.
    pub rejected_uploads_days: Option<u32>,
    /// Versions kept per table, newest first (the active one is always kept).
    pub versions_kept: Option<u32>,
    pub updated_ms: i64,
}

/// A call past a retention cut-off: its id and its audio in blob storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgedCall {
    pub unique_id: String,
    pub audio_key: Option<String>,
}

/// A tenant's daily export push settings as stored: a JSON document the
/// use case reads (`export_push::PushSettings`), secrets included.
#[derive(Clone, PartialEq)]
pub struct ExportPushRecord {
    pub tenant: TenantId,
    pub settings: serde_json::Value,
    pub updated_ms: i64,
}

impl std::fmt::Debug for ExportPushRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportPushRecord")
            .field("tenant", &self.tenant)
            .field("settings", &"<not shown: holds secrets>")
            .field("updated_ms", &self.updated_ms)
            .finish()
    }
}

/// One day's export push: what its latest attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRun {
    pub tenant: TenantId,
    /// `YYYY-MM-DD`, in the schedule's UTC offset.
    pub day: String,
    pub file_name: String,
    /// Where it goes, without secrets (`sftp://user@host:22/dir`, `s3://bucket/prefix`).
    pub destination: String,
    /// `pending`, `running`, `retrying`, `delivered` or `failed`.
    pub status: String,
    pub calls: i64,
    pub bytes: i64,
    pub attempts: i64,
    pub error: Option<String>,
    pub requested_ms: i64,
    pub updated_ms: i64,
    /// When it is tried again, while `retrying`.
    pub next_attempt_ms: Option<i64>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a tenant with its first API token; `Conflict` if the slug is taken.
    async fn create_tenant(&self, tenant: &Tenant, token_hash: &str) -> Result<(), StoreError>;
    async fn tenant_by_slug(&self, slug: &TenantSlug) -> Result<Tenant, StoreError>;
    async fn tenant_by_token(&self, token_hash: &str) -> Result<Tenant, StoreError>;

    /// Creates the table, or replaces its options while it has no active version.
    async fn put_table(
        &self,
        tenant: &TenantId,
        name: &TableName,
        options: &TableOptions,
        now_ms: i64,
    ) -> Result<TableRecord, StoreError>;
    async fn table(&self, tenant: &TenantId, name: &TableName) -> Result<TableRecord, StoreError>;
    /// The tenant's tables (only `name`, if given), each with its versions
    /// newest first, all read from one snapshot: a version is never listed
    /// before its table points at it.
    async fn tables_with_versions(
        &self,
        tenant: &TenantId,
        name: Option<&TableName>,
    ) -> Result<Vec<(TableRecord, Vec<VersionRecord>)>, StoreError>;
    /// Every table of every tenant, for the in-memory registry.
    async fn table_states(&self) -> Result<Vec<TableState>, StoreError>;

    /// Writes a version; when `activate`, makes it the table's active version
    /// and its options the table's options, in the same transaction, which
    /// also deletes the job of the same id (its ingest job), if any, and
    /// writes `jobs` (its events, possibly none).
    async fn insert_version(
        &self,
        tenant: &TenantId,
        version: &VersionRecord,
        activate: bool,
        jobs: &[Job],
    ) -> Result<(), StoreError>;
    async fn version(&self, tenant: &TenantId, id: &str) -> Result<VersionRecord, StoreError>;
    /// Makes an accepted version of the table its active one again, with
    /// its options, and records the activation (one transaction, which
    /// also notifies the other nodes and writes `jobs`, its events).
    async fn activate_version(
        &self,
        tenant: &TenantId,
        version: &VersionRecord,
        channel: &str,
        now_ms: i64,
        jobs: &[Job],
    ) -> Result<(), StoreError>;
    /// The table's activations, newest first (at most `limit`).
    async fn activations(
        &self,
        tenant: &TenantId,
        name: &TableName,
        limit: u32,
    ) -> Result<Vec<ActivationRecord>, StoreError>;
    /// The originals of the tenant's rejected uploads still in blob storage,
    /// newest first.
    async fn rejected_originals(&self, tenant: &TenantId) -> Result<Vec<StoredOriginal>, StoreError>;
    /// Records that a version's original was deleted from blob storage (its
    /// blob key becomes empty; the version and its report stay).
    async fn forget_original(&self, tenant: &TenantId, version: &str) -> Result<(), StoreError>;

    /// `Conflict` if the tenant already has a call with this `external_id`
    /// (then none of `jobs` is written either). `jobs` (the call's events,
    /// possibly none) commit in the same transaction as the call.
    async fn insert_call(&self, tenant: &TenantId, call: &CallRecord, jobs: &[Job])
    -> Result<(), StoreError>;
    async fn call(&self, tenant: &TenantId, unique_id: &str) -> Result<CallRecord, StoreError>;
    async fn call_by_external_id(
        &self,
        tenant: &TenantId,
        external_id: &str,
    ) -> Result<CallRecord, StoreError>;
    /// Newest first, a page from the cursor (or `after`, or the offset).
    async fn list_calls(&self, tenant: &TenantId, query: &CallQuery) -> Result<CallPage, StoreError>;
    /// The values of `key` among the newest `sample` calls matching the
    /// query's filters (its page and cursor ignored), each with how many of
    /// those calls have it; `None` counts the calls without the key.
    async fn call_facets(
        &self,
        tenant: &TenantId,
        query: &CallQuery,
        key: &str,
        sample: u32,
    ) -> Result<Vec<(Option<String>, u64)>, StoreError>;
    /// The names found on a tenant's calls, in byte order: `m:KEY` for a
    /// metadata key (own or added), `e:TABLE` for a table with results.
    async fn call_key_names(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError>;
    /// Replaces a call's metadata, enrichment and audio (SIPREC updates,
    /// back-fill, audio stored); `jobs` (its events, possibly none) commit
    /// in the same transaction.
    async fn update_call(&self, tenant: &TenantId, call: &CallRecord, jobs: &[Job])
    -> Result<(), StoreError>;

    /// Checks that the database answers (health endpoint).
    /// Adds an SSH public key (`ALGORITHM BASE64`) a tenant may log in with;
    /// adding a known key again changes nothing.
    async fn add_tenant_key(
        &self,
        tenant: &TenantId,
        public_key: &str,
        comment: &str,
        created_ms: i64,
    ) -> Result<(), StoreError>;
    /// The tenant's SSH public keys (`ALGORITHM BASE64`).
    async fn tenant_keys(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError>;

    /// Replaces a tenant's SIPREC settings (JSON).
    async fn put_siprec_settings(
        &self,
        tenant: &TenantId,
        settings: &str,
        updated_ms: i64,
    ) -> Result<(), StoreError>;
    /// The tenant's SIPREC settings (JSON), if set.
    async fn siprec_settings(&self, tenant: &TenantId) -> Result<Option<String>, StoreError>;
    /// Registers a network (canonical CIDR) as one of the tenant's SBCs;
    /// false if it already was.
    async fn add_sip_source(
        &self,
        tenant: &TenantId,
        network: &str,
        created_ms: i64,
    ) -> Result<bool, StoreError>;
    /// False if the network was not registered for the tenant.
    async fn remove_sip_source(&self, tenant: &TenantId, network: &str) -> Result<bool, StoreError>;
    /// Every registered SBC network, of every tenant: the operator's routing
    /// table, read by the SIP listener to find the tenants a source may
    /// send calls for.
    async fn sip_sources(&self) -> Result<Vec<SipSource>, StoreError>;

    async fn insert_backfill(&self, backfill: &BackfillRecord) -> Result<(), StoreError>;
    /// Replaces a back-fill's report, `updated_ms` and `finished_ms`.
    async fn update_backfill(&self, backfill: &BackfillRecord) -> Result<(), StoreError>;
    async fn backfill(&self, tenant: &TenantId, id: &str) -> Result<BackfillRecord, StoreError>;
    /// The tenant's latest back-fills, newest first.
    async fn backfills(&self, tenant: &TenantId, limit: u32) -> Result<Vec<BackfillRecord>, StoreError>;

    /// Records background work, leased to its node.
    async fn insert_job(&self, job: &Job) -> Result<(), StoreError>;
    /// Extends the leases of those of `ids` that `owner` still holds;
    /// returns how many.
    async fn renew_jobs(&self, owner: &str, ids: &[String], lease_until_ms: i64) -> Result<u64, StoreError>;
    /// Claims the oldest job of `kind` whose lease ran out before `now_ms`
    /// (its node stopped): leased to `owner`, its attempts counted. Exactly
    /// one caller gets a given job, whichever node asks.
    async fn claim_stale_job(
        &self,
        kind: JobKind,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Job>, StoreError>;
    /// Claims one job if `owner` already holds it (a node restarting with
    /// the same name) or its lease ran out before `now_ms`; `None` if it is
    /// gone or another node holds it.
    async fn take_job(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Job>, StoreError>;
    /// Replaces the payload of a job `owner` holds (progress of work done in
    /// steps); `NotFound` if it is gone or no longer `owner`'s.
    async fn update_job(&self, id: &str, owner: &str, payload: &serde_json::Value) -> Result<(), StoreError>;
    async fn delete_job(&self, id: &str) -> Result<(), StoreError>;

    /// Calls enriched from one version of a table: (results, matched).
    async fn version_match_counts(
        &self,
        tenant: &TenantId,
        table: &TableName,
        version: &str,
    ) -> Result<(u64, u64), StoreError>;

    async fn insert_web_session(&self, session: &WebSessionRecord) -> Result<(), StoreError>;
    /// The session with this token hash, if it has neither reached its
    /// absolute end nor rested longer than its idle lifetime by `now_ms`.
    /// Inserting a session purges the ended ones.
    async fn web_session(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<WebSessionRecord>, StoreError>;
    /// Records that the session was used at `now_ms`.
    async fn touch_web_session(&self, token_hash: &str, now_ms: i64) -> Result<(), StoreError>;
    async fn delete_web_session(&self, token_hash: &str) -> Result<(), StoreError>;

    async fn ping(&self) -> Result<(), StoreError>;

    /// A counter that moves when another process may have activated a
    /// version, so every node reloads at once instead of at its next poll.
    /// `None` for a backend that cannot tell (polling alone then applies).
    fn version_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    // Tokens.

    /// Adds an API token, stored as `token_hash` (the SHA-256 of its secret).
    async fn insert_token(&self, token: &TokenRecord, token_hash: &str) -> Result<(), StoreError>;
    /// The tenant's API tokens, oldest first.
    async fn tokens(&self, tenant: &TenantId) -> Result<Vec<TokenRecord>, StoreError>;
    /// Deletes one of the tenant's tokens and, where other nodes may cache
    /// it, tells them in the same transaction; false if there was none.
    async fn delete_token(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;
    /// The token whose secret hashes to `token_hash`, with its tenant (this
    /// spans tenants: a token is how its tenant is found).
    async fn token_by_hash(&self, token_hash: &str) -> Result<(Tenant, TokenRecord), StoreError>;
    /// Records a token's last use.
    async fn touch_token(&self, id: &str, now_ms: i64) -> Result<(), StoreError>;
    /// A counter that moves when a token may have been deleted by another
    /// process, so every node drops what it cached at once. `None` for a
    /// backend that cannot tell.
    fn token_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// How many jobs of each kind there are (held or waiting to be
    /// claimed), every node's: the queue depth the metrics show.
    async fn job_counts(&self) -> Result<Vec<(JobKind, u64)>, StoreError>;
    // Webhooks.

    async fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError>;
    /// The tenant's endpoints, oldest first.
    async fn webhooks(&self, tenant: &TenantId) -> Result<Vec<WebhookRecord>, StoreError>;
    async fn webhook(&self, tenant: &TenantId, id: &str) -> Result<WebhookRecord, StoreError>;
    /// Deletes an endpoint, its delivery attempts and its pending deliveries
    /// (jobs of kind `webhook` whose payload's `endpoint` is its id); false
    /// if there was none.
    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;
    /// How many of the tenant's jobs of `kind` exist (its pending
    /// deliveries), counted up to `at_most` (so a bound costs at most that).
    async fn count_jobs(&self, tenant: &TenantId, kind: JobKind, at_most: u64) -> Result<u64, StoreError>;
    /// Records several jobs in one transaction (an event's deliveries, one
    /// per endpoint): all or none.
    async fn insert_jobs(&self, jobs: &[Job]) -> Result<(), StoreError>;
    /// Claims up to `limit` of the oldest jobs of `kind` whose lease ran out
    /// before `now_ms`, as [`Store::claim_stale_job`] claims one, in one
    /// statement (a batch of due deliveries).
    async fn claim_stale_jobs(
        &self,
        kind: JobKind,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError>;
    /// Records delivery attempts and, for each, deletes its job (`retry:
    /// None`) or gives it back to be claimed again once its time has passed
    /// (if `owner` still holds it): all in one transaction, so that the
    /// outcomes of deliveries finished together cost one commit.
    async fn finish_deliveries(&self, owner: &str, finished: &[FinishedDelivery]) -> Result<(), StoreError>;
    async fn insert_delivery_attempt(&self, attempt: &DeliveryAttempt) -> Result<(), StoreError>;
    /// An endpoint's latest attempts, newest first (at most `limit`).
    async fn delivery_attempts(
        &self,
        tenant: &TenantId,
        endpoint: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>, StoreError>;
    /// Deletes the attempts (of every tenant) made before `before_ms`;
    /// returns how many.
    async fn prune_delivery_attempts(&self, before_ms: i64) -> Result<u64, StoreError>;

    // Audit log. Append-only: entries are inserted and read, never
    // changed; the one removal is the retention prune.

    /// Appends an entry (its `seq` is the store's).
    async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// A page of the tenant's entries, newest first.
    async fn audit_entries(&self, tenant: &TenantId, query: &AuditQuery) -> Result<AuditPage, StoreError>;
    /// Deletes the entries (of every tenant) written before `before_ms`;
    /// returns how many.
    async fn prune_audit(&self, before_ms: i64) -> Result<u64, StoreError>;

    // Erasure and retention.

    /// Deletes a call, its entries in the index of calls, its job (a
    /// recording's, whose id is the call's) and the webhook deliveries
    /// about it still waiting (jobs of kind `webhook` whose payload's
    /// `call` is its id), and writes `jobs` (the erasure's own event), in one
    /// transaction; false, and nothing written, if there was no such call.
    async fn erase_call(&self, tenant: &TenantId, unique_id: &str, jobs: &[Job]) -> Result<bool, StoreError>;
    /// Deletes a table with its versions, its activations and its pending
    /// ingest jobs, in one transaction that tells the other nodes (as an
    /// activation does, so they drop it from memory); `NotFound` if there
    /// is no such table.
    async fn delete_table(&self, tenant: &TenantId, name: &TableName) -> Result<(), StoreError>;
    /// Deletes one version unless it is its table's active one (checked in
    /// the deleting statement); false if it was kept or was already gone.
    async fn delete_version(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;
    /// The tenant's retention policy, if it set one.
    async fn retention_policy(&self, tenant: &TenantId) -> Result<Option<RetentionPolicy>, StoreError>;
    /// Replaces the tenant's policy and records `job` (its retention job),
    /// in one transaction; if the job exists and no node is running it, its
    /// next run becomes `job`'s (`lease_until_ms`).
    async fn put_retention_policy(
        &self,
        tenant: &TenantId,
        policy: &RetentionPolicy,
        job: &Job,
    ) -> Result<(), StoreError>;
    /// Up to `limit` of the tenant's calls whose time is before
    /// `before_ms`, oldest first; `with_audio`: only those whose audio is
    /// still stored.
    async fn aged_calls(
        &self,
        tenant: &TenantId,
        before_ms: i64,
        with_audio: bool,
        limit: u32,
    ) -> Result<Vec<AgedCall>, StoreError>;
    /// Records that a call's audio was removed at `at_ms`: its audio key
    /// goes, and no later update brings one back.
    async fn mark_audio_pruned(
        &self,
        tenant: &TenantId,
        unique_id: &str,
        at_ms: i64,
    ) -> Result<(), StoreError>;
    /// One job, whoever holds it; `None` if there is none.
    async fn job(&self, id: &str) -> Result<Option<Job>, StoreError>;
    /// Gives a job `owner` holds back, with `payload`, to be claimed again
    /// once `next_ms` has passed (work that recurs); `NotFound` if it is
    /// gone or no longer `owner`'s.
    async fn reschedule_job(
        &self,
        id: &str,
        owner: &str,
        payload: &serde_json::Value,
        next_ms: i64,
    ) -> Result<(), StoreError>;

    // Users.

    /// Adds a user; `Conflict` if the tenant already has one of that name.
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// The tenant's users, by name.
    async fn users(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError>;
    /// One of the tenant's users; `NotFound` if there is none of that name.
    async fn user(&self, tenant: &TenantId, name: &str) -> Result<UserRecord, StoreError>;
    /// Writes a user's role, password, disabled flag and `updated_ms`, and,
    /// in the same transaction, ends its web sessions if it is now disabled
    /// or gives them its new role; `NotFound` if there is no such user.
    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Lets a user log in over SFTP with an SSH key (`ALGORITHM BASE64`).
    async fn add_user_key(
        &self,
        tenant: &TenantId,
        user: &str,
        public_key: &str,
        comment: &str,
        created_ms: i64,
    ) -> Result<(), StoreError>;
    /// A user's SSH public keys (`ALGORITHM BASE64`).
    async fn user_keys(&self, tenant: &TenantId, user: &str) -> Result<Vec<String>, StoreError>;
    /// The activation in force at `at_ms`: the table's last activation at
    /// or before it (of several in one millisecond, the last made); `None`
    /// if the table had none by then. The flag says whether its version
    /// still exists (retention or erasure may have deleted it since).
    async fn activation_at(
        &self,
        tenant: &TenantId,
        name: &TableName,
        at_ms: i64,
    ) -> Result<Option<(ActivationRecord, bool)>, StoreError>;
    // The daily export push.

    /// The tenant's export push settings, if it set some.
    async fn export_push_settings(&self, tenant: &TenantId) -> Result<Option<ExportPushRecord>, StoreError>;
    /// Replaces the tenant's settings.
    async fn put_export_push_settings(&self, record: &ExportPushRecord) -> Result<(), StoreError>;
    /// Deletes the tenant's settings and its jobs of kinds `export_schedule`
    /// and `export_push` (one under way may finish); false if it had none.
    async fn delete_export_push(&self, tenant: &TenantId) -> Result<bool, StoreError>;
    /// Records `job`, or, if a job of that id exists that no node holds (or
    /// whose lease ran out before `job.created_ms`), makes it `job` again
    /// (payload, lease, no owner, attempts); false if a node holds it.
    async fn upsert_job(&self, job: &Job) -> Result<bool, StoreError>;
    /// Records a day's run, replacing the tenant's row for that day.
    async fn put_export_run(&self, run: &ExportRun) -> Result<(), StoreError>;
    /// The tenant's runs, latest day first (at most `limit`).
    async fn export_runs(&self, tenant: &TenantId, limit: u32) -> Result<Vec<ExportRun>, StoreError>;
    /// The tenant's run of one day, if there is one.
    async fn export_run(&self, tenant: &TenantId, day: &str) -> Result<Option<ExportRun>, StoreError>;
}
