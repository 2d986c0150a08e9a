//! The application's use cases: what a tenant can do, whatever the channel.
//! Adapters (HTTP, CLI, FTP, SFTP, SIP, web) call these and nothing else; the
//! use cases call the enrichment core, the [`Store`] and the [`BlobStore`].
//!
//! - [`tenants`]: create a tenant, authenticate by password.
//! - [`tokens`]: API tokens, their roles and what each allows.
//! - [`users`]: a tenant's users, each with its own login and role on the
//!   web app, FTP and SFTP.
//! - [`tables`]: configure a reference table, upload a version of it.
//! - [`active_tables`]: the in-memory active versions every call is enriched from.
//! - [`calls`]: create, read and list calls.
//! - [`export`]: every call a list query matches, as CSV or NDJSON, page by page.
//! - [`backfill`]: re-enrich past calls from the active versions, on request.
//! - [`siprec`]: a tenant's SIPREC key mapping and recording-client addresses.
//! - [`recordings`]: SIPREC recordings in progress, finished by another node
//!   if theirs stops.
//! - [`jobs`]: background work leased to one node, finished by another if
//!   that node stops.
//! - [`web_sessions`]: web app logins, their CSRF tokens and expiry.
//! - [`uploads`]: the policy every upload channel shares: size limit, spool
//!   files, the ingest memory budget, no sparse writes.
//! - [`connections`]: connection caps per listener, in total and per address.
//! - [`logins`]: failed-login throttling per (user, address), for the web
//!   app, FTP and SFTP alike.
//! - [`webhooks`]: a tenant's endpoints, the events recorded for them (an
//!   outbox of leased jobs) and the policy of their delivery.
//! - [`audit`]: the audit log (who did what, from where, on which object),
//!   written by the use cases themselves.
//! - [`erasure`]: a call or a table erased on request, with what it stored.
//! - [`retention`]: a tenant's retention policy and the hourly job (one per
//!   tenant, leased) that applies it.

pub mod active_tables;
pub mod as_of;
pub mod audit;
pub mod backfill;
pub mod calls;
pub mod connections;
pub mod erasure;
pub mod export;
pub mod export_push;
pub mod jobs;
pub mod logins;
pub mod recordings;
pub mod retention;
pub mod siprec;
pub mod tables;
pub mod tenants;
pub mod tokens;
pub mod uploads;
pub mod users;
pub mod web_sessions;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;

use callmeta_core::csv::Limits;

use crate::blobs::{BlobError, BlobStore};
use crate::clock::Clock;
use crate::store::{Store, StoreError};
use active_tables::ActiveTables;

/// Everything a use case needs, shared by all adapters of one process.
pub struct Services {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub tables: ActiveTables,
    pub limits: Limits,
    /// This process's name in job leases: kept across restarts by a server
    /// (in its data dir), random for a one-off command.
    pub node: String,
    /// How long a node holds a job (an upload it ingests, a call it records,
    /// a back-fill) without renewing the lease; past it, another node takes
    /// the job over.
    pub job_lease_ms: u64,
    /// The jobs this node works on.
    pub leases: Arc<jobs::Leases>,
    /// The ingest memory budget and the rejected-upload quota.
    pub uploads: uploads::UploadPolicy,
    pub ingest_budget: uploads::IngestBudget,
    /// Where uploads are received before they are parsed and stored
    /// (`<data dir>/spool` for a server).
    pub spool_dir: PathBuf,
    /// Failed logins of every channel (web, FTP, SFTP), per (user, address).
    pub logins: logins::LoginThrottle,
    /// Where every timestamp the use cases store or compare comes from.
    pub clock: Arc<dyn Clock>,
    /// API tokens authenticated within the last second.
    pub tokens: tokens::TokenCache,
    /// What this process counts, for `GET /metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Webhook settings, the endpoints read recently, the signal that an
    /// event was recorded.
    pub webhooks: webhooks::Outbox,
    /// Failed logins of the current minute per tenant, for the audit log's
    /// bound on them.
    pub failed_logins: audit::FailedLogins,
}

/// The default lease of an upload being ingested.
pub const DEFAULT_JOB_LEASE_MS: u64 = 30_000;

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Self::for_node(
            store,
            blobs,
            limits,
            DEFAULT_JOB_LEASE_MS,
            None,
            uploads::UploadPolicy::default(),
            std::env::temp_dir().join("callmeta-spool"),
            clock,
        )
    }

    /// `node`: this process's name in job leases (`None`: a random one);
    /// `spool_dir`: where uploads are received; `clock`: the time of every
    /// use case.
    #[allow(clippy::too_many_arguments)]
    pub fn for_node(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        limits: Limits,
        job_lease_ms: u64,
        node: Option<String>,
        upload_policy: uploads::UploadPolicy,
        spool_dir: PathBuf,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            blobs,
            tables: ActiveTables::default(),
            limits,
            node: node.filter(|n| !n.is_empty()).unwrap_or_else(new_id),
            job_lease_ms: job_lease_ms.max(100),
            leases: Arc::default(),
            ingest_budget: uploads::IngestBudget::new(upload_policy.memory_budget_bytes),
            uploads: upload_policy,
            spool_dir,
            logins: logins::LoginThrottle::new(logins::LoginSettings::default(), clock.clone()),
            clock,
            tokens: tokens::TokenCache::new(store.token_changes()),
            metrics: crate::metrics::Metrics::new(),
            store,
            webhooks: webhooks::Outbox::default(),
            failed_logins: audit::FailedLogins::default(),
        })
    }

    /// The time of the use cases, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// The errors of the use cases; each adapter turns them into its own replies
/// in exactly one place (`http::error`, the FTP report file, a SIP status).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// Valid credentials whose role does not allow the request.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// The server is at capacity (the ingest memory budget): try again later.
    #[error("{message}")]
    Busy { message: String, retry_after_secs: u64 },
    /// A request beyond a documented bound (filters per query, page depth,
    /// lengths): the request itself must change.
    #[error("{message}")]
    OverLimit { field: Option<String>, message: String },
    /// Too many failed logins for this user from this address: try again
    /// after the wait.
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// What was asked for was removed by the tenant's retention policy (a
    /// call's audio): the message says when.
    #[error("{0}")]
    Pruned(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl AppError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl AppError {
    pub fn over_limit(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::OverLimit {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AppError::NotFound("object".into()),
            StoreError::Conflict(m) => AppError::Conflict(m),
            other => AppError::Unexpected(anyhow::Error::new(other)),
        }
    }
}

impl From<BlobError> for AppError {
    fn from(e: BlobError) -> Self {
        AppError::Unexpected(anyhow::Error::new(e))
    }
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
