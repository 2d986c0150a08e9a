//! Reference tables: their settings and their versions. Every channel (HTTP,
//! CLI, FTP, SFTP) uploads through [`upload_reference_table`], so all produce
//! the same versions and the same reports.
//!
//! Order of an upload, and why: the original bytes go to blob storage while
//! the CSV is ingested off the async runtime, and both finish before anything
//! else (nothing is lost: even a rejected upload can be read back), then one
//! transaction records the version
//! and, if it was accepted, activates it; only after that commit is the new
//! index swapped into memory. A failure at any step leaves the previous
//! version active.
//!
//! Once the original is stored, an ingest job ([`super::jobs`]: the version's
//! id, leased to this node and renewed while it works) records that the
//! upload is under way; the version's transaction deletes it. If the node dies in between,
//! the lease runs out and another node (or this one, restarted) claims the
//! job in [`finish_stale_uploads`] and records the version from the stored
//! original, so an upload whose original was stored is never lost and never
//! half-recorded.

use std::sync::Arc;

use bytes::Bytes;
use callmeta_core::csv::{self, Report, TableOptions};
use callmeta_core::domain::TableName;
use callmeta_core::index::TableIndex;
use callmeta_core::matching::Matcher;

use super::jobs;
use super::{AppError, Services, active_tables, new_id, now_ms};
use crate::store::{Job, JobKind, StoreError, TableRecord, TenantId, VersionRecord};

/// How an upload arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Http,
    Cli,
    Ftp,
    Sftp,
    Web,
    Settings,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Http => "http",
            Channel::Cli => "cli",
            Channel::Ftp => "ftp",
            Channel::Sftp => "sftp",
            Channel::Web => "web",
            Channel::Settings => "settings",
        }
    }
}

/// The outcome of an upload: the version written (accepted or rejected), or
/// the active version when the content was identical to it.
#[derive(Debug, Clone)]
pub struct UploadOutcome {
    pub version: VersionRecord,
    pub activated: bool,
    /// Same sha256 as the active version: no new version was made.
    pub unchanged: bool,
}

pub struct TableDetails {
    pub table: TableRecord,
    pub versions: Vec<VersionRecord>,
}

pub fn parse_table_name(name: &str) -> Result<TableName, AppError> {
    TableName::parse(name).map_err(|e| AppError::invalid("table", e.to_string()))
}

fn validate_options(options: &TableOptions) -> Result<(), AppError> {
    Matcher::new(options.match_mode, options.region.as_deref())
        .map(|_| ())
        .map_err(|e| AppError::invalid("region", e.to_string()))
}

/// Creates a table or changes its settings. With an active version, new
/// settings take effect through a new version ingested from the active one's
/// original bytes, so every version says which settings built it; if the
/// active data does not ingest under the new settings (say, the new key
/// column is missing), nothing changes and the report says why.
pub async fn configure_table(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    options: TableOptions,
) -> Result<(TableRecord, Option<UploadOutcome>), AppError> {
    validate_options(&options)?;
    let existing = match services.store.table(tenant, name).await {
        Ok(t) => Some(t),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    match existing {
        Some(table) if table.active_version.is_some() => {
            if table.options == options {
                return Ok((table, None));
            }
            let active = services
                .store
                .version(tenant, table.active_version.as_deref().unwrap_or(""))
                .await?;
            let bytes = services.blobs.get(&active.blob_key).await?;
            let outcome = ingest_and_record(
                services,
                tenant,
                name,
                &options,
                bytes,
                Channel::Settings,
                active.filename.clone(),
                None,
                Some(active.sha256.clone()),
            )
            .await?;
            let table = services.store.table(tenant, name).await?;
            Ok((table, Some(outcome)))
        }
        _ => {
            let held = active_tables::hold_installs(services).await;
            let table = services.store.put_table(tenant, name, &options, now_ms()).await?;
            active_tables::install(services, &held, tenant, name, &options, None, None).await?;
            Ok((table, None))
        }
    }
}

pub async fn table_details(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
) -> Result<TableDetails, AppError> {
    let (table, versions) = services
        .store
        .tables_with_versions(tenant, Some(name))
        .await?
        .pop()
        .ok_or_else(|| not_found(StoreError::NotFound, name))?;
    Ok(TableDetails { table, versions })
}

/// Calls enriched from a version of a table: (results, matched).
pub async fn match_counts(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    version: &str,
) -> Result<(u64, u64), AppError> {
    Ok(services.store.version_match_counts(tenant, name, version).await?)
}

pub async fn list_tables(services: &Services, tenant: &TenantId) -> Result<Vec<TableDetails>, AppError> {
    Ok(services
        .store
        .tables_with_versions(tenant, None)
        .await?
        .into_iter()
        .map(|(table, versions)| TableDetails { table, versions })
        .collect())
}

fn not_found(e: StoreError, name: &TableName) -> AppError {
    match e {
        StoreError::NotFound => AppError::NotFound(format!("table {name}")),
        other => other.into(),
    }
}

/// The table an upload goes to; its absence is explained with how to fix it.
pub async fn require_table(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
) -> Result<TableRecord, AppError> {
    services.store.table(tenant, name).await.map_err(|e| match e {
        StoreError::NotFound => AppError::NotFound(format!(
            "table {name} (create it first with PUT /api/v1/tables/{name} and a body such as {{\"key\": \"agent_id\"}})"
        )),
        other => other.into(),
    })
}

/// Uploads a new version of a table (any channel). The table must exist.
pub async fn upload_reference_table(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    bytes: Bytes,
    channel: Channel,
    filename: Option<String>,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
) -> Result<UploadOutcome, AppError> {
    let table = require_table(services, tenant, name).await?;
    // Only with an active version to compare to is the hash needed up front.
    let mut digest = None;
    if let Some(active_id) = &table.active_version {
        let hashed = bytes.clone();
        let sha = tokio::task::spawn_blocking(move || csv::sha256_hex(&hashed))
            .await
            .map_err(anyhow::Error::new)?;
        let active = services.store.version(tenant, active_id).await?;
        if active.sha256 == sha {
            return Ok(UploadOutcome {
                version: active,
                activated: false,
                unchanged: true,
            });
        }
        digest = Some(sha);
    }
    ingest_and_record(
        services,
        tenant,
        name,
        &table.options,
        bytes,
        channel,
        filename,
        progress,
        digest,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn ingest_and_record(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    options: &TableOptions,
    bytes: Bytes,
    channel: Channel,
    filename: Option<String>,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
    digest: Option<String>,
) -> Result<UploadOutcome, AppError> {
    let id = new_id();
    let blob_key = format!("tenants/{}/tables/{}/{}.csv", tenant, name, id);
    // The original is hashed and written while the CSV is parsed (on
    // another core); all finish before the version is recorded.
    let store_and_hash = {
        let bytes = bytes.clone();
        async {
            let digest = digest.map(Ok).unwrap_or_else(|| {
                let bytes = bytes.clone();
                Err(tokio::task::spawn_blocking(move || csv::sha256_hex(&bytes)))
            });
            let (stored, digest) = tokio::join!(
                async {
                    services.blobs.put(&blob_key, bytes).await?;
                    let payload = IngestPayload {
                        table: name.to_string(),
                        channel: channel.as_str().to_string(),
                        filename: filename.clone(),
                        blob_key: blob_key.clone(),
                        options: options.clone(),
                    };
                    jobs::start(services, JobKind::Ingest, &id, tenant, payload.to_json()).await
                },
                async {
                    match digest {
                        Ok(known) => Ok(known),
                        Err(task) => task.await.map_err(anyhow::Error::new),
                    }
                }
            );
            Ok::<_, AppError>((stored?, digest?))
        }
    };
    let (stored, ingested) = tokio::join!(store_and_hash, ingest(services, options, bytes, progress));
    let (_lease, digest) = stored?;
    let (index, mut report) = ingested?;
    report.sha256 = digest;
    let accepted = index.is_some();
    let version = VersionRecord {
        id: id.clone(),
        table: name.clone(),
        created_ms: now_ms(),
        channel: channel.as_str().to_string(),
        filename,
        sha256: report.sha256.clone(),
        bytes: report.bytes,
        blob_key,
        accepted,
        rows: report.rows_accepted,
        options: options.clone(),
        report,
    };
    let held = active_tables::hold_installs(services).await;
    services.store.insert_version(tenant, &version, accepted).await?;
    if let Some(index) = index {
        active_tables::install(services, &held, tenant, name, options, Some(&id), Some(index)).await?;
        tracing::info!(tenant = %tenant, table = %name, version = %id, rows = version.rows,
            channel = channel.as_str(), "version activated");
    } else {
        tracing::info!(tenant = %tenant, table = %name, version = %id, channel = channel.as_str(),
            error = version.report.error.as_deref().unwrap_or(""), "upload rejected; previous version stays active");
    }
    Ok(UploadOutcome {
        version,
        activated: accepted,
        unchanged: false,
    })
}

/// What an ingest job needs to record its version from the stored original.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct IngestPayload {
    table: String,
    channel: String,
    filename: Option<String>,
    blob_key: String,
    options: TableOptions,
}

impl IngestPayload {
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Finishes the uploads whose node died while ingesting them: each is
/// claimed by exactly one node, ingested from its stored original and
/// recorded as a version; it becomes active unless a newer version of its
/// table was activated meanwhile. Returns how many were finished.
pub async fn finish_stale_uploads(services: &Services) -> Result<usize, AppError> {
    let mut finished = 0;
    while let Some((job, held)) = jobs::claim_stale(services, JobKind::Ingest).await? {
        let payload: IngestPayload = match serde_json::from_value(job.payload.clone()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "an interrupted upload's job is unreadable; dropped");
                jobs::done(services, held).await?;
                continue;
            }
        };
        let bytes = match services.blobs.get(&payload.blob_key).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "an interrupted upload's original is unreadable; dropped");
                jobs::done(services, held).await?;
                continue;
            }
        };
        match finish_upload(services, &job, &payload, bytes).await {
            Ok(version) => {
                finished += 1;
                drop(held);
                tracing::info!(tenant = %job.tenant, table = %payload.table, version = %version.id,
                    accepted = version.accepted, attempts = job.attempts,
                    "finished an upload left by a node that stopped");
            }
            Err(e) if job.attempts >= 5 => {
                tracing::warn!(job = %job.id, error = %e, "an interrupted upload failed 5 times; dropped");
                jobs::done(services, held).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(finished)
}

async fn finish_upload(
    services: &Services,
    job: &Job,
    payload: &IngestPayload,
    bytes: Bytes,
) -> Result<VersionRecord, AppError> {
    let table_name =
        TableName::parse(&payload.table).map_err(|e| AppError::invalid("table", e.to_string()))?;
    let hashed = bytes.clone();
    let sha = tokio::task::spawn_blocking(move || csv::sha256_hex(&hashed))
        .await
        .map_err(anyhow::Error::new)?;
    let (index, mut report) = ingest(services, &payload.options, bytes, None).await?;
    report.sha256 = sha;
    let table = services.store.table(&job.tenant, &table_name).await?;
    let superseded = match &table.active_version {
        Some(active) => services.store.version(&job.tenant, active).await?.created_ms > job.created_ms,
        None => false,
    };
    let accepted = index.is_some();
    let version = VersionRecord {
        id: job.id.clone(),
        table: table_name.clone(),
        created_ms: job.created_ms,
        channel: payload.channel.clone(),
        filename: payload.filename.clone(),
        sha256: report.sha256.clone(),
        bytes: report.bytes,
        blob_key: payload.blob_key.clone(),
        accepted,
        rows: report.rows_accepted,
        options: payload.options.clone(),
        report,
    };
    let activate = accepted && !superseded;
    let held = active_tables::hold_installs(services).await;
    services
        .store
        .insert_version(&job.tenant, &version, activate)
        .await?;
    if let (true, Some(index)) = (activate, index) {
        active_tables::install(
            services,
            &held,
            &job.tenant,
            &table_name,
            &payload.options,
            Some(&job.id),
            Some(index),
        )
        .await?;
    }
    Ok(version)
}

async fn ingest(
    services: &Services,
    options: &TableOptions,
    bytes: Bytes,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
) -> Result<(Option<Arc<TableIndex>>, Report), AppError> {
    let options = options.clone();
    let limits = services.limits.clone();
    let result = tokio::task::spawn_blocking(move || match progress {
        Some(mut progress) => csv::ingest_unhashed(&bytes, &options, &limits, &mut *progress),
        None => csv::ingest_unhashed(&bytes, &options, &limits, &mut |_| {}),
    })
    .await
    .map_err(anyhow::Error::new)?;
    Ok(match result {
        Ok(ingested) => (Some(Arc::new(ingested.index)), ingested.report),
        Err(report) => (None, *report),
    })
}
