//! Reading records back from rows, the same for both databases: the
//! schema holds text and 64-bit integers only, so four column shapes cover
//! every record.

use callmeta_app::store::*;
use callmeta_core::domain::{TableName, TenantSlug};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::db_error;

fn read<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column)
        .map_err(|e| db_error(&format!("reading column {column}"), e))
}

pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
}

impl Columns for AnyRow {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        read(self, column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        read(self, column)
    }
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        read(self, column)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        read(self, column)
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising these plain structs and maps cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
    let slug = row.text("slug")?;
    Ok(Tenant {
        id: TenantId(row.text("id")?),
        slug: TenantSlug::parse(&slug).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        password_hash: row.text("password_hash")?,
        created_ms: row.int("created_ms")?,
    })
}

pub(crate) fn table_from_row(row: &AnyRow) -> Result<TableRecord, StoreError> {
    let name = row.text("name")?;
    let options = row.text("options")?;
    Ok(TableRecord {
        name: TableName::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        options: from_json("table options", &options)?,
        active_version: row.opt_text("active_version")?,
        created_ms: row.int("created_ms")?,
        updated_ms: row.int("updated_ms")?,
    })
}

pub(crate) fn version_from_row(row: &AnyRow) -> Result<VersionRecord, StoreError> {
    let table = row.text("table_name")?;
    let options = row.text("options")?;
    let report = row.text("report")?;
    let bytes = row.int("bytes")?;
    let rows = row.int("rows")?;
    let accepted = row.int("accepted")?;
    Ok(VersionRecord {
        id: row.text("id")?,
        table: TableName::parse(&table).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_ms: row.int("created_ms")?,
        channel: row.text("channel")?,
        filename: row.opt_text("filename")?,
        sha256: row.text("sha256")?,
        bytes: bytes as u64,
        blob_key: row.text("blob_key")?,
        accepted: accepted != 0,
        rows: rows as u64,
        options: from_json("version options", &options)?,
        report: from_json("version report", &report)?,
    })
}

pub(crate) fn backfill_from_row(row: &AnyRow) -> Result<BackfillRecord, StoreError> {
    let filter = row.text("filter")?;
    let report = row.text("report")?;
    Ok(BackfillRecord {
        id: row.text("id")?,
        tenant: TenantId(row.text("tenant_id")?),
        created_ms: row.int("created_ms")?,
        updated_ms: row.int("updated_ms")?,
        finished_ms: row.opt_int("finished_ms")?,
        dry_run: row.int("dry_run")? != 0,
        filter: from_json("back-fill filter", &filter)?,
        report: from_json("back-fill report", &report)?,
    })
}

pub(crate) fn job_from_row(row: &AnyRow) -> Result<Job, StoreError> {
    let kind = row.text("kind")?;
    let payload = row.text("payload")?;
    Ok(Job {
        id: row.text("id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("job kind {kind:?}")))?,
        tenant: TenantId(row.text("tenant_id")?),
        created_ms: row.int("created_ms")?,
        payload: from_json("job payload", &payload)?,
        owner: row.text("owner")?,
        lease_until_ms: row.int("lease_until")?,
        attempts: row.int("attempts")?,
    })
}

pub(crate) fn web_session_from_row(row: &AnyRow) -> Result<WebSessionRecord, StoreError> {
    Ok(WebSessionRecord {
        token_hash: row.text("token_hash")?,
        tenant: TenantId(row.text("tenant_id")?),
        tenant_slug: row.text("tenant_slug")?,
        csrf: row.text("csrf")?,
        created_ms: row.int("created_ms")?,
        expires_ms: row.int("expires_ms")?,
        last_seen_ms: row.int("last_seen_ms")?,
        idle_ms: row.int("idle_ms")?,
        user_name: row.text("user_name")?,
        role: {
            let role = row.text("role")?;
            Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown session role {role:?}")))?
        },
    })
}

pub(crate) fn call_from_row(row: &AnyRow) -> Result<CallRecord, StoreError> {
    let source = row.text("source")?;
    let metadata = row.text("metadata")?;
    let enrichment = row.text("enrichment")?;
    Ok(CallRecord {
        unique_id: row.text("id")?,
        timestamp_ms: row.int("timestamp_ms")?,
        source: CallSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("call source {source:?}")))?,
        external_id: row.opt_text("external_id")?,
        metadata: from_json("call metadata", &metadata)?,
        enrichment: from_json("call enrichment", &enrichment)?,
        audio_key: row.opt_text("audio_key")?,
        audio_pruned_ms: row.opt_int("audio_pruned_ms")?,
        created_ms: row.int("created_ms")?,
        updated_ms: row.int("updated_ms")?,
    })
}

/// Puts each version under its table (versions keep their order).
pub(crate) fn group_versions(
    tables: Vec<TableRecord>,
    versions: Vec<VersionRecord>,
) -> Vec<(TableRecord, Vec<VersionRecord>)> {
    let mut by_table: std::collections::HashMap<TableName, Vec<VersionRecord>> =
        std::collections::HashMap::new();
    for v in versions {
        by_table.entry(v.table.clone()).or_default().push(v);
    }
    tables
        .into_iter()
        .map(|t| {
            let versions = by_table.remove(&t.name).unwrap_or_default();
            (t, versions)
        })
        .collect()
}
