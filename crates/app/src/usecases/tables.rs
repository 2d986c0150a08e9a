//! Reference tables: their settings and their versions. Every channel (HTTP,
//! CLI, FTP, SFTP) uploads through [`upload_reference_table`], so all produce
//! the same versions and the same reports.
//!
//! Order of an upload, and why: the upload arrives whole in a spool file
//! ([`uploads::Received`], under the size limit, hashed), waits for its share
//! of the ingest memory budget, then the original goes to blob storage while
//! the CSV is ingested off the async runtime from that file, read in chunks
//! parsed on every core, and both finish before anything else (nothing is lost: even a rejected
//! upload can be read back, within the tenant's quota of rejected originals),
//! then one transaction records the version
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

use anyhow::Context;
use callmeta_core::csv::{self, HeaderChange, Report, TableOptions};
use callmeta_core::delta;
use callmeta_core::domain::TableName;
use callmeta_core::index::TableIndex;
use callmeta_core::matching::Matcher;

use super::audit::{self, Actor, actions};
use super::uploads::{self, Received};
use super::{AppError, Services, active_tables, jobs, new_id, webhooks};
use crate::spool::SpoolSource;
use crate::store::{ActivationRecord, Job, JobKind, StoreError, TableRecord, TenantId, VersionRecord};

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
    /// The latest activations, newest first.
    pub activations: Vec<ActivationRecord>,
}

/// Activations listed with a table.
const ACTIVATIONS_SHOWN: u32 = 50;

/// Where the originals of a table's versions are kept in blob storage:
/// `{id}.csv` under it.
pub(crate) fn originals_prefix(tenant: &TenantId, name: &TableName) -> String {
    format!("tenants/{tenant}/tables/{name}")
}

pub fn parse_table_name(name: &str) -> Result<TableName, AppError> {
    TableName::parse(name).map_err(|e| AppError::invalid("table", e.to_string()))
}

fn validate_options(options: &TableOptions) -> Result<(), AppError> {
    options
        .check()
        .map_err(|e| AppError::invalid(e.field(), e.to_string()))?;
    Matcher::new(options.match_mode, options.region.as_deref())
        .map(|_| ())
        .map_err(|e| AppError::invalid("region", e.to_string()))
}

/// Creates a table or changes its settings. With an active version, new
/// settings take effect through a new version ingested from the active one's
/// original bytes, so every version says which settings built it; if the
/// active data does not ingest under the new settings (say, the new key
/// column is missing), nothing changes and the report says why. A change
/// is written to the audit log under `actor`.
#[tracing::instrument(skip_all, fields(tenant = %tenant, table = %name, version = tracing::field::Empty))]
pub async fn configure_table(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    options: TableOptions,
    actor: &Actor,
) -> Result<(TableRecord, Option<UploadOutcome>), AppError> {
    validate_options(&options)?;
    let existing = match services.store.table(tenant, name).await {
        Ok(t) => Some(t),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let created = existing.is_none();
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
            let upload = Received::from_stored(services, bytes).await?;
            let _memory = uploads::reserve_memory(services, upload.len()).await?;
            let outcome = ingest_and_record(
                services,
                tenant,
                name,
                &options,
                upload,
                Channel::Settings,
                active.filename.clone(),
                None,
                // The active data under new settings: nothing to guard against.
                Guards::Override,
                None,
                actor,
            )
            .await?;
            let table = services.store.table(tenant, name).await?;
            let detail = serde_json::json!({
                "options": &options,
                "version": &outcome.version.id,
                "activated": outcome.activated,
                "error": &outcome.version.report.error,
            });
            audit::record(
                services,
                tenant,
                actor,
                actions::TABLE_SETTINGS,
                table_object(name),
                detail,
            )
            .await;
            Ok((table, Some(outcome)))
        }
        _ => {
            let held = active_tables::hold_installs(services).await;
            let table = services
                .store
                .put_table(tenant, name, &options, services.now_ms())
                .await?;
            active_tables::install(services, &held, tenant, name, &options, None, None).await?;
            drop(held);
            let detail = serde_json::json!({"options": &options, "created": created});
            audit::record(
                services,
                tenant,
                actor,
                actions::TABLE_SETTINGS,
                table_object(name),
                detail,
            )
            .await;
            Ok((table, None))
        }
    }
}

#[tracing::instrument(skip_all, fields(tenant = %tenant, table = %name))]
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
    let activations = services
        .store
        .activations(tenant, name, ACTIVATIONS_SHOWN)
        .await?;
    Ok(TableDetails {
        table,
        versions,
        activations,
    })
}

/// Makes an accepted version of a table its active one again (a rollback,
/// or a roll forward), recorded in the table's activations with `channel`.
/// The version is loaded first, under the ingest memory budget, and
/// installed once its activation is committed; other nodes pick it up from
/// the store (at once with PostgreSQL's notification, else at their next
/// refresh).
#[tracing::instrument(skip_all, fields(tenant = %tenant, table = %name, version = version_id))]
pub async fn activate_version(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    version_id: &str,
    channel: Channel,
    actor: &Actor,
) -> Result<TableDetails, AppError> {
    let table = require_table(services, tenant, name).await?;
    let missing = || AppError::NotFound(format!("version {version_id} of table {name}"));
    let version = match services.store.version(tenant, version_id).await {
        Ok(v) if v.table == *name => v,
        Ok(_) | Err(StoreError::NotFound) => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    if !version.accepted {
        return Err(AppError::Conflict(format!(
            "version {version_id} was rejected ({}): only an accepted version can be activated",
            version.report.error.as_deref().unwrap_or("refused")
        )));
    }
    if table.active_version.as_deref() == Some(version_id) {
        return table_details(services, tenant, name).await;
    }
    let bytes = services.blobs.get(&version.blob_key).await?;
    let upload = Received::from_stored(services, bytes).await?;
    let _memory = uploads::reserve_memory(services, upload.len()).await?;
    let (index, report) = ingest(services, &version.options, Arc::new(upload), None).await?;
    let Some(index) = index else {
        return Err(AppError::Unexpected(anyhow::anyhow!(
            "stored version {version_id} no longer ingests: {}",
            report.error.as_deref().unwrap_or("rejected")
        )));
    };
    let events = webhooks::version_recorded(services, tenant, &version, true).await?;
    let held = active_tables::hold_installs(services).await;
    services
        .store
        .activate_version(tenant, &version, channel.as_str(), services.now_ms(), &events)
        .await?;
    active_tables::install(
        services,
        &held,
        tenant,
        name,
        &version.options,
        Some(version_id),
        Some(index),
    )
    .await?;
    drop(held);
    audit::record(
        services,
        tenant,
        actor,
        actions::TABLE_ACTIVATE,
        version_object(name, version_id),
        serde_json::json!({"rollback": true}),
    )
    .await;
    // Woken once the version is in this node's memory.
    if !events.is_empty() {
        webhooks::jobs_written(services);
    }
    tracing::info!(tenant = %tenant, table = %name, version = %version_id, channel = channel.as_str(),
        "version activated again");
    table_details(services, tenant, name).await
}

/// Calls enriched from a version of a table: (results, matched).
#[tracing::instrument(skip_all, fields(tenant = %tenant, table = %name, version))]
pub async fn match_counts(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    version: &str,
) -> Result<(u64, u64), AppError> {
    Ok(services.store.version_match_counts(tenant, name, version).await?)
}

#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn list_tables(services: &Services, tenant: &TenantId) -> Result<Vec<TableDetails>, AppError> {
    let mut all = Vec::new();
    for (table, versions) in services.store.tables_with_versions(tenant, None).await? {
        let activations = services
            .store
            .activations(tenant, &table.name, ACTIVATIONS_SHOWN)
            .await?;
        all.push(TableDetails {
            table,
            versions,
            activations,
        });
    }
    Ok(all)
}

fn not_found(e: StoreError, name: &TableName) -> AppError {
    match e {
        StoreError::NotFound => AppError::NotFound(format!("table {name}")),
        other => other.into(),
    }
}

/// The table an upload goes to; its absence is explained with how to fix it.
#[tracing::instrument(skip_all, fields(tenant = %tenant, table = %name))]
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

/// Whether the table's activation guards (`max_row_drop_pct`,
/// `on_header_change`) apply to an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guards {
    Apply,
    /// Activate an accepted upload whatever the guards say (`?force=true`).
    Override,
}

/// Uploads a new version of a table (any channel), from an upload received
/// whole (see [`uploads::Incoming`]). The table must exist. Parsing waits
/// for its share of the ingest memory budget. The table's activation guards
/// apply.
#[allow(clippy::too_many_arguments)]
pub async fn upload_reference_table(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    upload: Received,
    channel: Channel,
    filename: Option<String>,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
    actor: &Actor,
) -> Result<UploadOutcome, AppError> {
    upload_reference_table_with(
        services,
        tenant,
        name,
        upload,
        channel,
        filename,
        progress,
        Guards::Apply,
        actor,
    )
    .await
}

/// A delta upload (rows with an `_op` column: `upsert`, `delete`): applied
/// to the active version's rows, it makes a new full version, recorded and
/// activated like any upload (the activation guards apply unless
/// overridden); its report counts what the delta did. The delta and the
/// active rows are held in memory while it is applied (under the ingest
/// memory budget): deltas are meant to be small next to the table.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all, fields(tenant = %tenant, table = %name, channel = channel.as_str(), version = tracing::field::Empty))]
pub async fn upload_delta(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    upload: Received,
    channel: Channel,
    filename: Option<String>,
    guards: Guards,
    actor: &Actor,
) -> Result<UploadOutcome, AppError> {
    let result = delta_uncounted(services, tenant, name, upload, channel, filename, guards, actor).await;
    counted(services, channel, result)
}

#[allow(clippy::too_many_arguments)]
async fn delta_uncounted(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    upload: Received,
    channel: Channel,
    filename: Option<String>,
    guards: Guards,
    actor: &Actor,
) -> Result<UploadOutcome, AppError> {
    let table = require_table(services, tenant, name).await?;
    uploads::check_declared_size(services, upload.len())?;
    let active = match &table.active_version {
        Some(id) => Some(services.store.version(tenant, id).await?),
        None => None,
    };
    let active_len = active.as_ref().map_or(0, |v| v.bytes);
    let full = {
        let _memory = uploads::reserve_memory(services, upload.len().saturating_add(active_len)).await?;
        let delta_bytes = tokio::fs::read(upload.path())
            .await
            .with_context(|| format!("reading delta upload {}", upload.path().display()))?;
        drop(upload);
        let invalid = |e: String| AppError::invalid("delta", e);
        let (header, rows) = csv::parse_records(&delta_bytes, &services.limits)
            .map_err(|e| invalid(format!("the delta cannot be read: {e}")))?;
        drop(delta_bytes);
        let delta = delta::Records { header, rows };
        let active_records = match &active {
            Some(v) => {
                let bytes = services.blobs.get(&v.blob_key).await?;
                let (header, rows) = csv::parse_records(&bytes, &services.limits)
                    .map_err(|e| AppError::Unexpected(anyhow::anyhow!("active version {}: {e}", v.id)))?;
                delta::Records { header, rows }
            }
            None => delta::Records {
                header: delta
                    .header
                    .iter()
                    .filter(|c| *c != delta::OP_COLUMN)
                    .cloned()
                    .collect(),
                rows: Vec::new(),
            },
        };
        let key: Vec<String> = table.options.key_entries()[0]
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        let matcher = Matcher::new(table.options.match_mode, table.options.region.as_deref())
            .map_err(|e| AppError::invalid("region", e.to_string()))?;
        let (records, counts) =
            delta::apply(active_records, delta, &key, &matcher).map_err(|e| invalid(e.to_string()))?;
        (delta::to_csv(&records), counts)
    };
    let (bytes, counts) = full;
    let upload = Received::from_stored(services, bytes.into()).await?;
    let _memory = uploads::reserve_memory(services, upload.len()).await?;
    ingest_and_record(
        services,
        tenant,
        name,
        &table.options,
        upload,
        channel,
        filename,
        None,
        guards,
        Some(counts),
        actor,
    )
    .await
}

/// [`upload_reference_table`], saying whether the activation guards apply.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all, fields(tenant = %tenant, table = %name, channel = channel.as_str(), version = tracing::field::Empty))]
pub async fn upload_reference_table_with(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    upload: Received,
    channel: Channel,
    filename: Option<String>,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
    guards: Guards,
    actor: &Actor,
) -> Result<UploadOutcome, AppError> {
    let result = upload_uncounted(
        services, tenant, name, upload, channel, filename, progress, guards, actor,
    )
    .await;
    counted(services, channel, result)
}

/// Counts an upload's outcome in the metrics (`callmeta_uploads`).
fn counted(
    services: &Services,
    channel: Channel,
    result: Result<UploadOutcome, AppError>,
) -> Result<UploadOutcome, AppError> {
    let outcome = match &result {
        Ok(o) if o.unchanged => "unchanged",
        Ok(o) if o.activated => "activated",
        Ok(o) if o.version.accepted => "not_activated",
        Ok(_) => "rejected",
        Err(_) => "failed",
    };
    services.metrics.upload(channel.as_str(), outcome);
    result
}

#[allow(clippy::too_many_arguments)]
async fn upload_uncounted(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    upload: Received,
    channel: Channel,
    filename: Option<String>,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
    guards: Guards,
    actor: &Actor,
) -> Result<UploadOutcome, AppError> {
    let table = require_table(services, tenant, name).await?;
    uploads::check_declared_size(services, upload.len())?;
    if let Some(active_id) = &table.active_version {
        let active = services.store.version(tenant, active_id).await?;
        if active.sha256 == upload.sha256() {
            let detail = serde_json::json!({
                "filename": filename,
                "bytes": upload.len(),
                "sha256": upload.sha256(),
                "unchanged": true,
            });
            let object = version_object(name, &active.id);
            audit::record(services, tenant, actor, actions::TABLE_UPLOAD, object, detail).await;
            return Ok(UploadOutcome {
                version: active,
                activated: false,
                unchanged: true,
            });
        }
    }
    let _memory = uploads::reserve_memory(services, upload.len()).await?;
    ingest_and_record(
        services,
        tenant,
        name,
        &table.options,
        upload,
        channel,
        filename,
        progress,
        guards,
        None,
        actor,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn ingest_and_record(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    options: &TableOptions,
    upload: Received,
    channel: Channel,
    filename: Option<String>,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
    guards: Guards,
    delta: Option<delta::DeltaCounts>,
    actor: &Actor,
) -> Result<UploadOutcome, AppError> {
    let id = new_id();
    // The span of the upload (or of the settings change) names its version.
    tracing::Span::current().record("version", id.as_str());
    let blob_key = format!("{}/{}.csv", originals_prefix(tenant, name), id);
    let upload = Arc::new(upload);
    // The original is stored while the CSV is parsed (on another core);
    // both finish before the version is recorded.
    let store = async {
        services.blobs.put_file(&blob_key, upload.path()).await?;
        let payload = IngestPayload {
            table: name.to_string(),
            channel: channel.as_str().to_string(),
            filename: filename.clone(),
            blob_key: blob_key.clone(),
            options: options.clone(),
            actor: Some(actor.clone()),
        };
        jobs::start(services, JobKind::Ingest, &id, tenant, payload.to_json()).await
    };
    let (stored, ingested) = tokio::join!(store, ingest(services, options, upload.clone(), progress));
    let _lease = stored?;
    let (index, mut report) = ingested?;
    report.sha256 = upload.sha256().to_string();
    report.delta = delta;
    drop(upload);
    let accepted = index.is_some();
    if accepted && guards == Guards::Apply {
        report.not_activated = guard_refusal(services, tenant, name, options, &report).await?;
    }
    let activate = accepted && report.not_activated.is_none();
    let version = VersionRecord {
        id: id.clone(),
        table: name.clone(),
        created_ms: services.now_ms(),
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
    let events = webhooks::version_recorded(services, tenant, &version, activate).await?;
    let held = active_tables::hold_installs(services).await;
    services
        .store
        .insert_version(tenant, &version, activate, &events)
        .await?;
    if let Some(why) = &version.report.not_activated {
        drop(held);
        tracing::info!(tenant = %tenant, table = %name, version = %id, channel = channel.as_str(),
            reason = why.as_str(), "upload recorded, not activated: an activation guard held it back");
    } else if let Some(index) = index {
        active_tables::install(services, &held, tenant, name, options, Some(&id), Some(index)).await?;
        tracing::info!(tenant = %tenant, table = %name, version = %id, rows = version.rows,
            channel = channel.as_str(), "version activated");
    } else {
        drop(held);
        tracing::info!(tenant = %tenant, table = %name, version = %id, channel = channel.as_str(),
            error = version.report.error.as_deref().unwrap_or(""), "upload rejected; previous version stays active");
        enforce_rejected_quota(services, tenant).await;
    }
    record_version(services, tenant, &version, activate, actor).await;
    // This node's deliverer is woken once the version is in its memory: a
    // receiver that acts on it here is served from it.
    if !events.is_empty() {
        webhooks::jobs_written(services);
    }
    Ok(UploadOutcome {
        version,
        activated: activate,
        unchanged: false,
    })
}

/// Why the table's activation guards hold an accepted upload back, if they
/// do: compared with the active version, too many rows fewer
/// (`max_row_drop_pct`), or a column gone (`on_header_change: reject`).
async fn guard_refusal(
    services: &Services,
    tenant: &TenantId,
    name: &TableName,
    options: &TableOptions,
    report: &Report,
) -> Result<Option<String>, AppError> {
    if options.max_row_drop_pct.is_none() && options.on_header_change == HeaderChange::Accept {
        return Ok(None);
    }
    let table = services.store.table(tenant, name).await?;
    let Some(active_id) = table.active_version else {
        return Ok(None);
    };
    let active = services.store.version(tenant, &active_id).await?;
    let force = "upload again with force to activate it anyway";
    if let Some(pct) = options.max_row_drop_pct {
        let (before, after) = (active.rows, report.rows_accepted);
        if before > 0 && after < before {
            let dropped = (before - after) as f64 * 100.0 / before as f64;
            if dropped > pct {
                return Ok(Some(format!(
                    "{after} rows against {before} in the active version: {dropped:.1}% fewer, over the \
                     table's max_row_drop_pct of {pct}; {force}"
                )));
            }
        }
    }
    if options.on_header_change == HeaderChange::Reject {
        let gone: Vec<&str> = active
            .report
            .columns
            .iter()
            .filter(|c| !report.columns.contains(c))
            .map(String::as_str)
            .collect();
        if !gone.is_empty() {
            return Ok(Some(format!(
                "the active version's {} {} missing or renamed, and the table's on_header_change is reject; {force}",
                if gone.len() == 1 { "column" } else { "columns" },
                gone.iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + if gone.len() == 1 { " is" } else { " are" }
            )));
        }
    }
    Ok(None)
}

/// Keeps the originals of a tenant's rejected uploads within
/// `[uploads] rejected_quota_bytes`: the newest are kept, the oldest past the
/// quota are deleted from blob storage (their versions and reports stay).
/// A failure is logged and retried at the next rejected upload.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn enforce_rejected_quota(services: &Services, tenant: &TenantId) {
    let quota = services.uploads.rejected_quota_bytes;
    let kept = match services.store.rejected_originals(tenant).await {
        Ok(kept) => kept,
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "listing rejected originals failed");
            return;
        }
    };
    let mut total = 0u64;
    for original in kept {
        total = total.saturating_add(original.bytes);
        if total <= quota {
            continue;
        }
        let removed = async {
            services.store.forget_original(tenant, &original.version).await?;
            services.blobs.delete(&original.blob_key).await?;
            Ok::<_, AppError>(())
        }
        .await;
        match removed {
            Ok(()) => tracing::info!(tenant = %tenant, version = %original.version, bytes = original.bytes,
                "rejected upload's original deleted: over the tenant's quota of rejected originals"),
            Err(e) => tracing::warn!(tenant = %tenant, version = %original.version, error = %e,
                "deleting a rejected original failed"),
        }
    }
}

/// What an ingest job needs to record its version from the stored original.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct IngestPayload {
    table: String,
    channel: String,
    filename: Option<String>,
    blob_key: String,
    options: TableOptions,
    /// Who uploaded it (absent in jobs written before the audit log).
    #[serde(default)]
    actor: Option<Actor>,
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
#[tracing::instrument(skip_all)]
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
        let upload = Received::from_stored(services, bytes).await?;
        match finish_upload(services, &job, &payload, upload).await {
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

#[tracing::instrument(skip_all, fields(tenant = %job.tenant, table = %payload.table, version = %job.id))]
async fn finish_upload(
    services: &Services,
    job: &Job,
    payload: &IngestPayload,
    upload: Received,
) -> Result<VersionRecord, AppError> {
    let table_name =
        TableName::parse(&payload.table).map_err(|e| AppError::invalid("table", e.to_string()))?;
    let _memory = uploads::reserve_memory(services, upload.len()).await?;
    let sha = upload.sha256().to_string();
    let (index, mut report) = ingest(services, &payload.options, Arc::new(upload), None).await?;
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
    let events = webhooks::version_recorded(services, &job.tenant, &version, activate).await?;
    let held = active_tables::hold_installs(services).await;
    services
        .store
        .insert_version(&job.tenant, &version, activate, &events)
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
    let actor = payload.actor.clone().unwrap_or_else(Actor::system);
    record_version(services, &job.tenant, &version, activate, &actor).await;
    if !events.is_empty() {
        webhooks::jobs_written(services);
    }
    Ok(version)
}

/// The audit object of a table.
pub fn table_object(name: &TableName) -> String {
    format!("tables/{name}")
}

/// The audit object of a version of a table.
pub fn version_object(name: &TableName, version: &str) -> String {
    format!("tables/{name}/versions/{version}")
}

/// Writes a recorded version to the audit log: its upload (unless a
/// settings change made it: that change is its entry) and its activation.
async fn record_version(
    services: &Services,
    tenant: &TenantId,
    version: &VersionRecord,
    activated: bool,
    actor: &Actor,
) {
    let object = version_object(&version.table, &version.id);
    if version.channel != Channel::Settings.as_str() {
        let detail = serde_json::json!({
            "filename": &version.filename,
            "bytes": version.bytes,
            "sha256": &version.sha256,
            "accepted": version.accepted,
            "rows": version.rows,
            "activated": activated,
            "error": &version.report.error,
            "not_activated": &version.report.not_activated,
        });
        audit::record(
            services,
            tenant,
            actor,
            actions::TABLE_UPLOAD,
            object.clone(),
            detail,
        )
        .await;
    }
    if activated {
        let detail = serde_json::json!({"rollback": false});
        audit::record(services, tenant, actor, actions::TABLE_ACTIVATE, object, detail).await;
    }
}

/// Parses a received upload off the async runtime, reading its spool file in
/// chunks that the parser's threads take in turn (never the whole file at
/// once).
pub(crate) async fn ingest(
    services: &Services,
    options: &TableOptions,
    upload: Arc<Received>,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
) -> Result<(Option<Arc<TableIndex>>, Report), AppError> {
    let options = options.clone();
    let limits = services.limits.clone();
    let started_ms = services.now_ms();
    let result = tokio::task::spawn_blocking(move || {
        let context = || format!("reading the received upload {}", upload.path().display());
        let source = SpoolSource::open(upload.path()).with_context(context)?;
        let mut progress = progress;
        let mut moved = |done: u64| {
            if let Some(progress) = progress.as_mut() {
                progress(done);
            }
        };
        csv::ingest_from(
            &source,
            &options,
            &limits,
            csv::Parallelism::default(),
            &mut moved,
        )
        .with_context(context)
    })
    .await
    .map_err(anyhow::Error::new)??;
    services.metrics.ingest_took(services.now_ms() - started_ms);
    Ok(match result {
        Ok(ingested) => (Some(Arc::new(ingested.index)), ingested.report),
        Err(report) => (None, *report),
    })
}
