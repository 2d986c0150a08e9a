//! The embedded store: one SQLite file in WAL mode. Readers never block the
//! writer; `synchronous = FULL` makes a committed call survive a power cut,
//! which is what "durable before acknowledged" means.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use callmeta_core::domain::{TableName, TenantSlug};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::rows::*;
use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Call inserts go through one writer task that commits them in groups:
    /// with `synchronous = FULL` every commit costs an fsync, so one commit
    /// for all the calls that arrived meanwhile is what makes thousands of
    /// durable creations per second possible. Each call is still answered
    /// only after the commit that holds it.
    calls: tokio::sync::mpsc::Sender<PendingCall>,
}

struct PendingCall {
    tenant: TenantId,
    call: CallRecord,
    reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// The most calls committed together.
const MAX_GROUP: usize = 512;

async fn call_writer(pool: SqlitePool, mut rx: tokio::sync::mpsc::Receiver<PendingCall>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let results = write_group(&pool, &group).await;
        match results {
            Ok(results) => {
                for (pending, result) in group.drain(..).zip(results) {
                    let _ = pending.reply.send(result);
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, calls = group.len(), "committing a group of calls failed");
                for pending in group.drain(..) {
                    let _ = pending.reply.send(Err(StoreError::Corrupt(format!(
                        "committing the call: {message}"
                    ))));
                }
            }
        }
    }
}

/// One transaction for the group. A failing INSERT (a duplicate external
/// id) rolls back only its own statement in SQLite, so it is answered on its
/// own while the others commit.
async fn write_group(
    pool: &SqlitePool,
    group: &[PendingCall],
) -> Result<Vec<Result<(), StoreError>>, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(group.len());
    for PendingCall { tenant, call, .. } in group {
        let merged = callmeta_core::enrich::merged_metadata(&call.metadata, &call.enrichment);
        let result = sqlx::query(
            "INSERT INTO calls (id, tenant_id, timestamp_ms, source, external_id, metadata, enrichment, merged, \
             audio_key, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&call.unique_id)
        .bind(&tenant.0)
        .bind(call.timestamp_ms)
        .bind(call.source.as_str())
        .bind(&call.external_id)
        .bind(to_json(&call.metadata))
        .bind(to_json(&call.enrichment))
        .bind(to_json(&merged))
        .bind(&call.audio_key)
        .bind(call.created_ms)
        .bind(call.updated_ms)
        .execute(&mut *tx)
        .await;
        results.push(match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a call with external_id {:?} already exists",
                call.external_id.as_deref().unwrap_or("")
            ))),
            Err(e) => Err(StoreError::Database(e)),
        });
    }
    tx.commit().await?;
    Ok(results)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Another process (the CLI) may write while the server runs.
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options).await
    }

    /// Opens a database from a `sqlite:` URL.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options).await
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(e.into()))?;
        let (calls, rx) = tokio::sync::mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(call_writer(pool.clone(), rx));
        Ok(Self { pool, calls })
    }
}

const CALL_COLUMNS: &str =
    "id, timestamp_ms, source, external_id, metadata, enrichment, audio_key, created_ms, updated_ms";

#[async_trait]
impl Store for SqliteStore {
    async fn add_tenant_key(
        &self,
        tenant: &TenantId,
        public_key: &str,
        comment: &str,
        created_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tenant_keys (tenant_id, public_key, comment, created_ms) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant_id, public_key) DO NOTHING",
        )
        .bind(&tenant.0)
        .bind(public_key)
        .bind(comment)
        .bind(created_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn tenant_keys(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT public_key FROM tenant_keys WHERE tenant_id = ? ORDER BY created_ms")
            .bind(&tenant.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    async fn put_siprec_settings(
        &self,
        tenant: &TenantId,
        settings: &str,
        updated_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO siprec_settings (tenant_id, settings, updated_ms) VALUES (?, ?, ?) \
             ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings, updated_ms = excluded.updated_ms",
        )
        .bind(&tenant.0)
        .bind(settings)
        .bind(updated_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn siprec_settings(&self, tenant: &TenantId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT settings FROM siprec_settings WHERE tenant_id = ?")
            .bind(&tenant.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    async fn add_sip_source(
        &self,
        tenant: &TenantId,
        network: &str,
        created_ms: i64,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO sip_sources (tenant_id, network, created_ms) VALUES (?, ?, ?) \
             ON CONFLICT (tenant_id, network) DO NOTHING",
        )
        .bind(&tenant.0)
        .bind(network)
        .bind(created_ms)
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() > 0)
    }

    async fn remove_sip_source(&self, tenant: &TenantId, network: &str) -> Result<bool, StoreError> {
        let removed = sqlx::query("DELETE FROM sip_sources WHERE tenant_id = ? AND network = ?")
            .bind(&tenant.0)
            .bind(network)
            .execute(&self.pool)
            .await?;
        Ok(removed.rows_affected() > 0)
    }

    async fn sip_sources(&self) -> Result<Vec<SipSource>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.tenant_id, t.slug, s.network FROM sip_sources s JOIN tenants t ON t.id = s.tenant_id \
             ORDER BY t.slug, s.network",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SipSource {
                    tenant: TenantId(r.try_get(0)?),
                    slug: r.try_get(1)?,
                    network: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn insert_backfill(&self, backfill: &BackfillRecord) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO backfills (id, tenant_id, created_ms, updated_ms, finished_ms, dry_run, filter, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&backfill.id)
            .bind(&backfill.tenant.0)
            .bind(backfill.created_ms)
            .bind(backfill.updated_ms)
            .bind(backfill.finished_ms)
            .bind(i64::from(backfill.dry_run))
            .bind(to_json(&backfill.filter))
            .bind(to_json(&backfill.report))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn update_backfill(&self, backfill: &BackfillRecord) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE backfills SET updated_ms = ?, finished_ms = ?, report = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(backfill.updated_ms)
        .bind(backfill.finished_ms)
        .bind(to_json(&backfill.report))
        .bind(&backfill.tenant.0)
        .bind(&backfill.id)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn backfill(&self, tenant: &TenantId, id: &str) -> Result<BackfillRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM backfills WHERE tenant_id = ? AND id = ?")
            .bind(&tenant.0)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        backfill_from_row(&row)
    }

    async fn backfills(&self, tenant: &TenantId, limit: u32) -> Result<Vec<BackfillRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM backfills WHERE tenant_id = ? ORDER BY created_ms DESC, id DESC LIMIT ?",
        )
        .bind(&tenant.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(backfill_from_row).collect()
    }

    async fn insert_job(&self, job: &Job) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO jobs (id, kind, tenant_id, created_ms, payload, owner, lease_until, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&job.id)
            .bind(job.kind.as_str())
            .bind(&job.tenant.0)
            .bind(job.created_ms)
            .bind(to_json(&job.payload))
            .bind(&job.owner)
            .bind(job.lease_until_ms)
            .bind(job.attempts)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn renew_jobs(&self, owner: &str, ids: &[String], lease_until_ms: i64) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let updated = sqlx::query(
            "UPDATE jobs SET lease_until = ? WHERE owner = ? AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(lease_until_ms)
        .bind(owner)
        .bind(to_json(&ids))
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected())
    }

    async fn claim_stale_job(
        &self,
        kind: JobKind,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query("UPDATE jobs SET owner = ?, lease_until = ?, attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE kind = ? AND lease_until < ? ORDER BY created_ms LIMIT 1) AND lease_until < ? RETURNING *")
            .bind(owner)
            .bind(lease_until_ms)
            .bind(kind.as_str())
            .bind(now_ms)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn take_job(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query("UPDATE jobs SET owner = ?, lease_until = ? WHERE id = ? AND (owner = ? OR lease_until < ?) RETURNING *")
            .bind(owner)
            .bind(lease_until_ms)
            .bind(id)
            .bind(owner)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn update_job(&self, id: &str, owner: &str, payload: &serde_json::Value) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE jobs SET payload = ? WHERE id = ? AND owner = ?")
            .bind(to_json(payload))
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn delete_job(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn version_match_counts(
        &self,
        tenant: &TenantId,
        table: &TableName,
        version: &str,
    ) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS results, COALESCE(SUM(json_extract(e.value, '$.status') = 'matched'), 0) AS matched FROM calls c, json_each(c.enrichment) e WHERE c.tenant_id = ? AND json_extract(e.value, '$.table') = ? AND json_extract(e.value, '$.version') = ?",
        )
        .bind(&tenant.0)
        .bind(table.as_str())
        .bind(version)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.int("results")? as u64, row.int("matched")? as u64))
    }

    async fn insert_web_session(&self, session: &WebSessionRecord) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE expires_ms <= ? OR last_seen_ms + idle_ms <= ?")
            .bind(session.created_ms)
            .bind(session.created_ms)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO web_sessions (token_hash, tenant_id, tenant_slug, csrf, created_ms, expires_ms, last_seen_ms, idle_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.token_hash)
        .bind(&session.tenant.0)
        .bind(&session.tenant_slug)
        .bind(&session.csrf)
        .bind(session.created_ms)
        .bind(session.expires_ms)
        .bind(session.last_seen_ms)
        .bind(session.idle_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn web_session(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<WebSessionRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM web_sessions WHERE token_hash = ? AND expires_ms > ? AND last_seen_ms + idle_ms > ?",
        )
        .bind(token_hash)
        .bind(now_ms)
        .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(web_session_from_row).transpose()
    }

    async fn touch_web_session(&self, token_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE web_sessions SET last_seen_ms = ? WHERE token_hash = ? AND last_seen_ms < ?")
            .bind(now_ms)
            .bind(token_hash)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_web_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_tenant(&self, tenant: &Tenant, token_hash: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted =
            sqlx::query("INSERT INTO tenants (id, slug, password_hash, created_ms) VALUES (?, ?, ?, ?)")
                .bind(&tenant.id.0)
                .bind(tenant.slug.as_str())
                .bind(&tenant.password_hash)
                .bind(tenant.created_ms)
                .execute(&mut *tx)
                .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!(
                    "tenant {} already exists",
                    tenant.slug
                )));
            }
            other => other?,
        };
        sqlx::query("INSERT INTO api_tokens (token_hash, tenant_id, created_ms) VALUES (?, ?, ?)")
            .bind(token_hash)
            .bind(&tenant.id.0)
            .bind(tenant.created_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tenant_by_slug(&self, slug: &TenantSlug) -> Result<Tenant, StoreError> {
        let row = sqlx::query("SELECT id, slug, password_hash, created_ms FROM tenants WHERE slug = ?")
            .bind(slug.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        tenant_from_row(&row)
    }

    async fn tenant_by_token(&self, token_hash: &str) -> Result<Tenant, StoreError> {
        let row = sqlx::query(
            "SELECT t.id, t.slug, t.password_hash, t.created_ms FROM tenants t \
             JOIN api_tokens k ON k.tenant_id = t.id WHERE k.token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        tenant_from_row(&row)
    }

    async fn put_table(
        &self,
        tenant: &TenantId,
        name: &TableName,
        options: &TableOptions,
        now_ms: i64,
    ) -> Result<TableRecord, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let existing = sqlx::query("SELECT active_version FROM ref_tables WHERE tenant_id = ? AND name = ?")
            .bind(&tenant.0)
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        match existing {
            None => {
                sqlx::query(
                    "INSERT INTO ref_tables (tenant_id, name, options, active_version, created_ms, updated_ms) \
                     VALUES (?, ?, ?, NULL, ?, ?)",
                )
                .bind(&tenant.0)
                .bind(name.as_str())
                .bind(to_json(options))
                .bind(now_ms)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            Some(row) => {
                let active: Option<String> = row.try_get("active_version")?;
                if active.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "table {name} has an active version: its options change with a new version"
                    )));
                }
                sqlx::query(
                    "UPDATE ref_tables SET options = ?, updated_ms = ? WHERE tenant_id = ? AND name = ?",
                )
                .bind(to_json(options))
                .bind(now_ms)
                .bind(&tenant.0)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.table(tenant, name).await
    }

    async fn table(&self, tenant: &TenantId, name: &TableName) -> Result<TableRecord, StoreError> {
        let row = sqlx::query(
            "SELECT name, options, active_version, created_ms, updated_ms FROM ref_tables \
             WHERE tenant_id = ? AND name = ?",
        )
        .bind(&tenant.0)
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        table_from_row(&row)
    }

    async fn tables_with_versions(
        &self,
        tenant: &TenantId,
        name: Option<&TableName>,
    ) -> Result<Vec<(TableRecord, Vec<VersionRecord>)>, StoreError> {
        // One read transaction: one snapshot for both reads.
        let mut tx = self.pool.begin().await?;
        let only = if name.is_some() { " AND name = ?" } else { "" };
        let sql = format!(
            "SELECT name, options, active_version, created_ms, updated_ms FROM ref_tables \
             WHERE tenant_id = ?{only} ORDER BY name"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&tenant.0);
        if let Some(name) = name {
            q = q.bind(name.as_str());
        }
        let tables = q
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(table_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let only = if name.is_some() { " AND table_name = ?" } else { "" };
        let sql =
            format!("SELECT * FROM versions WHERE tenant_id = ?{only} ORDER BY created_ms DESC, id DESC");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&tenant.0);
        if let Some(name) = name {
            q = q.bind(name.as_str());
        }
        let versions = q
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(version_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(group_versions(tables, versions))
    }

    async fn table_states(&self) -> Result<Vec<TableState>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, name, options, active_version, created_ms, updated_ms FROM ref_tables \
             ORDER BY tenant_id, name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let table = table_from_row(row)?;
                Ok(TableState {
                    tenant: TenantId(row.try_get("tenant_id")?),
                    name: table.name,
                    options: table.options,
                    active_version: table.active_version,
                })
            })
            .collect()
    }

    async fn insert_version(
        &self,
        tenant: &TenantId,
        version: &VersionRecord,
        activate: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO versions (id, tenant_id, table_name, created_ms, channel, filename, sha256, bytes, \
             blob_key, accepted, rows, options, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&version.id)
        .bind(&tenant.0)
        .bind(version.table.as_str())
        .bind(version.created_ms)
        .bind(&version.channel)
        .bind(&version.filename)
        .bind(&version.sha256)
        .bind(version.bytes as i64)
        .bind(&version.blob_key)
        .bind(version.accepted as i64)
        .bind(version.rows as i64)
        .bind(to_json(&version.options))
        .bind(to_json(&version.report))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(&version.id)
            .execute(&mut *tx)
            .await?;
        if activate {
            let updated = sqlx::query(
                "UPDATE ref_tables SET active_version = ?, options = ?, updated_ms = ? \
                 WHERE tenant_id = ? AND name = ?",
            )
            .bind(&version.id)
            .bind(to_json(&version.options))
            .bind(version.created_ms)
            .bind(&tenant.0)
            .bind(version.table.as_str())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::NotFound);
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn version(&self, tenant: &TenantId, id: &str) -> Result<VersionRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM versions WHERE tenant_id = ? AND id = ?")
            .bind(&tenant.0)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        version_from_row(&row)
    }

    async fn delete_call(&self, tenant: &TenantId, unique_id: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM calls WHERE tenant_id = ? AND id = ?")
            .bind(&tenant.0)
            .bind(unique_id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn rejected_originals(&self, tenant: &TenantId) -> Result<Vec<StoredOriginal>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, blob_key, bytes FROM versions WHERE tenant_id = ? AND accepted = 0 AND blob_key <> '' \
             ORDER BY created_ms DESC, id DESC",
        )
        .bind(&tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredOriginal {
                    version: row.text("id")?,
                    blob_key: row.text("blob_key")?,
                    bytes: row.int("bytes")?.max(0) as u64,
                })
            })
            .collect()
    }

    async fn forget_original(&self, tenant: &TenantId, version: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE versions SET blob_key = '' WHERE tenant_id = ? AND id = ?")
            .bind(&tenant.0)
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_call(&self, tenant: &TenantId, call: &CallRecord) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = PendingCall {
            tenant: tenant.clone(),
            call: call.clone(),
            reply,
        };
        if self.calls.send(pending).await.is_err() {
            return Err(StoreError::Corrupt("the call writer has stopped".into()));
        }
        answer
            .await
            .map_err(|_| StoreError::Corrupt("the call writer has stopped".into()))?
    }

    async fn call(&self, tenant: &TenantId, unique_id: &str) -> Result<CallRecord, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = ? AND id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&tenant.0)
            .bind(unique_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        call_from_row(&row)
    }

    async fn call_by_external_id(
        &self,
        tenant: &TenantId,
        external_id: &str,
    ) -> Result<CallRecord, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = ? AND external_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&tenant.0)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        call_from_row(&row)
    }

    async fn list_calls(
        &self,
        tenant: &TenantId,
        query: &CallQuery,
    ) -> Result<(u64, Vec<CallRecord>), StoreError> {
        // The filter text is built from fixed fragments only; every value is bound.
        let mut filter = String::from("tenant_id = ?");
        if query.from_ms.is_some() {
            filter.push_str(" AND timestamp_ms >= ?");
        }
        if query.to_ms.is_some() {
            filter.push_str(" AND timestamp_ms <= ?");
        }
        for _ in &query.metadata {
            filter.push_str(
                " AND EXISTS (SELECT 1 FROM json_each(calls.merged) j WHERE j.key = ? AND j.value = ?)",
            );
        }
        if query.after.is_some() {
            filter.push_str(" AND (timestamp_ms < ? OR (timestamp_ms = ? AND id < ?))");
        }
        macro_rules! bind_filter {
            ($q:expr) => {{
                let mut q = $q.bind(&tenant.0);
                if let Some(from) = query.from_ms {
                    q = q.bind(from);
                }
                if let Some(to) = query.to_ms {
                    q = q.bind(to);
                }
                for (k, v) in &query.metadata {
                    q = q.bind(k).bind(v);
                }
                if let Some((ts, id)) = &query.after {
                    q = q.bind(ts).bind(ts).bind(id);
                }
                q
            }};
        }
        let count_sql = format!("SELECT COUNT(*) AS n FROM calls WHERE {filter}");
        let count: i64 = if query.uncounted {
            0
        } else {
            bind_filter!(sqlx::query(sqlx::AssertSqlSafe(count_sql)))
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?
        };
        let list_sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE {filter} ORDER BY timestamp_ms DESC, id DESC LIMIT ? OFFSET ?"
        );
        let rows = bind_filter!(sqlx::query(sqlx::AssertSqlSafe(list_sql)))
            .bind(query.limit as i64)
            .bind(query.offset.min(i64::MAX as u64) as i64)
            .fetch_all(&self.pool)
            .await?;
        let calls = rows.iter().map(call_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok((count as u64, calls))
    }

    async fn update_call(&self, tenant: &TenantId, call: &CallRecord) -> Result<(), StoreError> {
        let merged = callmeta_core::enrich::merged_metadata(&call.metadata, &call.enrichment);
        let updated = sqlx::query(
            "UPDATE calls SET timestamp_ms = ?, metadata = ?, enrichment = ?, merged = ?, audio_key = ?, \
             updated_ms = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(call.timestamp_ms)
        .bind(to_json(&call.metadata))
        .bind(to_json(&call.enrichment))
        .bind(to_json(&merged))
        .bind(&call.audio_key)
        .bind(call.updated_ms)
        .bind(&tenant.0)
        .bind(&call.unique_id)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
