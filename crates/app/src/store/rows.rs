//! Reading records back from database rows, shared by every backend: each
//! backend's row type says how to read text and integers, and the mapping
//! from columns to records is written once.

use callmeta_core::domain::{TableName, TenantSlug};
use sqlx::Row;

use super::*;

/// The four column shapes the schemas use.
pub(crate) trait StoreRow: Row {
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
}

impl StoreRow for sqlx::sqlite::SqliteRow {
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }
}

impl StoreRow for sqlx::postgres::PgRow {
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }
}

pub(crate) fn tenant_from_row(row: &impl StoreRow) -> Result<Tenant, StoreError> {
    let slug = row.text("slug")?;
    Ok(Tenant {
        id: TenantId(row.text("id")?),
        slug: TenantSlug::parse(&slug).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        password_hash: row.text("password_hash")?,
        created_ms: row.int("created_ms")?,
    })
}

pub(crate) fn table_from_row(row: &impl StoreRow) -> Result<TableRecord, StoreError> {
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

pub(crate) fn version_from_row(row: &impl StoreRow) -> Result<VersionRecord, StoreError> {
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

pub(crate) fn backfill_from_row(row: &impl StoreRow) -> Result<BackfillRecord, StoreError> {
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

pub(crate) fn job_from_row(row: &impl StoreRow) -> Result<Job, StoreError> {
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

pub(crate) fn web_session_from_row(row: &impl StoreRow) -> Result<WebSessionRecord, StoreError> {
    Ok(WebSessionRecord {
        token_hash: row.text("token_hash")?,
        tenant: TenantId(row.text("tenant_id")?),
        tenant_slug: row.text("tenant_slug")?,
        csrf: row.text("csrf")?,
        created_ms: row.int("created_ms")?,
        expires_ms: row.int("expires_ms")?,
        last_seen_ms: row.int("last_seen_ms")?,
        idle_ms: row.int("idle_ms")?,
    })
}

pub(crate) fn call_from_row(row: &impl StoreRow) -> Result<CallRecord, StoreError> {
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
        created_ms: row.int("created_ms")?,
        updated_ms: row.int("updated_ms")?,
    })
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
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
