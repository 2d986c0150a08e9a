//! The PostgreSQL store, for several nodes on one database. The same
//! records as the SQLite store; the merged metadata of a call is `jsonb`
//! with a GIN index, so `metadata.KEY=VALUE` filters use containment (`@>`).

use std::time::Duration;

use async_trait::async_trait;
use callmeta_core::domain::{TableName, TenantSlug};
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use super::rows::*;
use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The notification channel of version activations.
const VERSIONS_CHANNEL: &str = "callmeta_versions";

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    changes: tokio::sync::watch::Receiver<u64>,
}

/// Forwards activations announced by any node. `PgListener` reconnects by
/// itself after a lost connection; a change may be missed meanwhile, which
/// is why it also bumps the counter then, and why nodes keep polling too.
async fn listen(mut listener: PgListener, tx: tokio::sync::watch::Sender<u64>) {
    loop {
        match listener.try_recv().await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "listening for version activations failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        tx.send_modify(|n| *n += 1);
        if tx.is_closed() {
            return;
        }
    }
}

impl PgStore {
    /// Connects to `postgres://...` and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(e.into()))?;
        let (tx, changes) = tokio::sync::watch::channel(0u64);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(VERSIONS_CHANNEL).await?;
        tokio::spawn(listen(listener, tx));
        Ok(Self { pool, changes })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

const CALL_COLUMNS: &str =
    "id, timestamp_ms, source, external_id, metadata, enrichment, audio_key, created_ms, updated_ms";

#[async_trait]
impl Store for PgStore {
    async fn add_tenant_key(
        &self,
        tenant: &TenantId,
        public_key: &str,
        comment: &str,
        created_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tenant_keys (tenant_id, public_key, comment, created_ms) VALUES ($1, $2, $3, $4) \
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
        let rows = sqlx::query("SELECT public_key FROM tenant_keys WHERE tenant_id = $1 ORDER BY created_ms")
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
            "INSERT INTO siprec_settings (tenant_id, settings, updated_ms) VALUES ($1, $2, $3) \
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
        let row = sqlx::query("SELECT settings FROM siprec_settings WHERE tenant_id = $1")
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
            "INSERT INTO sip_sources (tenant_id, network, created_ms) VALUES ($1, $2, $3) \
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
        let removed = sqlx::query("DELETE FROM sip_sources WHERE tenant_id = $1 AND network = $2")
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
        sqlx::query("INSERT INTO backfills (id, tenant_id, created_ms, updated_ms, finished_ms, dry_run, filter, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
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
        let updated = sqlx::query("UPDATE backfills SET updated_ms = $1, finished_ms = $2, report = $3 WHERE tenant_id = $4 AND id = $5")
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
        let row = sqlx::query("SELECT * FROM backfills WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        backfill_from_row(&row)
    }

    async fn backfills(&self, tenant: &TenantId, limit: u32) -> Result<Vec<BackfillRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM backfills WHERE tenant_id = $1 ORDER BY created_ms DESC, id DESC LIMIT $2",
        )
        .bind(&tenant.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(backfill_from_row).collect()
    }

    async fn insert_job(&self, job: &Job) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO jobs (id, kind, tenant_id, created_ms, payload, owner, lease_until, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
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
        let updated = sqlx::query("UPDATE jobs SET lease_until = $1 WHERE owner = $2 AND id = ANY($3)")
            .bind(lease_until_ms)
            .bind(owner)
            .bind(ids)
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
        let row = sqlx::query("UPDATE jobs SET owner = $1, lease_until = $2, attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE kind = $3 AND lease_until < $4 ORDER BY created_ms LIMIT 1 FOR UPDATE SKIP LOCKED) AND lease_until < $5 RETURNING *")
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
        let row = sqlx::query("UPDATE jobs SET owner = $1, lease_until = $2 WHERE id = $3 AND (owner = $4 OR lease_until < $5) RETURNING *")
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
        let updated = sqlx::query("UPDATE jobs SET payload = $1 WHERE id = $2 AND owner = $3")
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
        sqlx::query("DELETE FROM jobs WHERE id = $1")
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
            "SELECT COUNT(*) AS results, COUNT(*) FILTER (WHERE e->>'status' = 'matched') AS matched FROM calls c, jsonb_array_elements(c.enrichment::jsonb) e WHERE c.tenant_id = $1 AND e->>'table' = $2 AND e->>'version' = $3",
        )
        .bind(&tenant.0)
        .bind(table.as_str())
        .bind(version)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.int("results")? as u64, row.int("matched")? as u64))
    }

    async fn insert_web_session(&self, session: &WebSessionRecord) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE expires_ms <= $1 OR last_seen_ms + idle_ms <= $2")
            .bind(session.created_ms)
            .bind(session.created_ms)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO web_sessions (token_hash, tenant_id, tenant_slug, csrf, created_ms, expires_ms, last_seen_ms, idle_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
        let row = sqlx::query("SELECT * FROM web_sessions WHERE token_hash = $1 AND expires_ms > $2 AND last_seen_ms + idle_ms > $3",
        )
        .bind(token_hash)
        .bind(now_ms)
        .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(web_session_from_row).transpose()
    }

    async fn touch_web_session(&self, token_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE web_sessions SET last_seen_ms = $1 WHERE token_hash = $2 AND last_seen_ms < $3")
            .bind(now_ms)
            .bind(token_hash)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_web_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn version_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    async fn create_tenant(&self, tenant: &Tenant, token_hash: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted =
            sqlx::query("INSERT INTO tenants (id, slug, password_hash, created_ms) VALUES ($1, $2, $3, $4)")
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
        sqlx::query("INSERT INTO api_tokens (token_hash, tenant_id, created_ms) VALUES ($1, $2, $3)")
            .bind(token_hash)
            .bind(&tenant.id.0)
            .bind(tenant.created_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tenant_by_slug(&self, slug: &TenantSlug) -> Result<Tenant, StoreError> {
        let row = sqlx::query("SELECT id, slug, password_hash, created_ms FROM tenants WHERE slug = $1")
            .bind(slug.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        tenant_from_row(&row)
    }

    async fn tenant_by_token(&self, token_hash: &str) -> Result<Tenant, StoreError> {
        let row = sqlx::query(
            "SELECT t.id, t.slug, t.password_hash, t.created_ms FROM tenants t \
             JOIN api_tokens k ON k.tenant_id = t.id WHERE k.token_hash = $1",
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
        let mut tx = self.pool.begin().await?;
        let existing =
            sqlx::query("SELECT active_version FROM ref_tables WHERE tenant_id = $1 AND name = $2")
                .bind(&tenant.0)
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        match existing {
            None => {
                sqlx::query(
                    "INSERT INTO ref_tables (tenant_id, name, options, active_version, created_ms, updated_ms) \
                     VALUES ($1, $2, $3, NULL, $4, $5)",
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
                    "UPDATE ref_tables SET options = $1, updated_ms = $2 WHERE tenant_id = $3 AND name = $4",
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
             WHERE tenant_id = $1 AND name = $2",
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
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let only = if name.is_some() { " AND name = $2" } else { "" };
        let sql = format!(
            "SELECT name, options, active_version, created_ms, updated_ms FROM ref_tables \
             WHERE tenant_id = $1{only} ORDER BY name"
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
        let only = if name.is_some() {
            " AND table_name = $2"
        } else {
            ""
        };
        let sql =
            format!("SELECT * FROM versions WHERE tenant_id = $1{only} ORDER BY created_ms DESC, id DESC");
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO versions (id, tenant_id, table_name, created_ms, channel, filename, sha256, bytes, \
             blob_key, accepted, rows, options, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
        sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(&version.id)
            .execute(&mut *tx)
            .await?;
        if activate {
            let updated = sqlx::query(
                "UPDATE ref_tables SET active_version = $1, options = $2, updated_ms = $3 \
                 WHERE tenant_id = $4 AND name = $5",
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
            // Delivered to every listening node when (and only if) the
            // activation commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(VERSIONS_CHANNEL)
                .bind(format!("{}/{}", tenant.0, version.table))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn version(&self, tenant: &TenantId, id: &str) -> Result<VersionRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM versions WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        version_from_row(&row)
    }

    async fn delete_call(&self, tenant: &TenantId, unique_id: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM calls WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(unique_id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn rejected_originals(&self, tenant: &TenantId) -> Result<Vec<StoredOriginal>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, blob_key, bytes FROM versions WHERE tenant_id = $1 AND accepted = 0 AND blob_key <> '' \
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
        sqlx::query("UPDATE versions SET blob_key = '' WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_call(&self, tenant: &TenantId, call: &CallRecord) -> Result<(), StoreError> {
        let merged = callmeta_core::enrich::merged_metadata(&call.metadata, &call.enrichment);
        let result = sqlx::query(
            "INSERT INTO calls (id, tenant_id, timestamp_ms, source, external_id, metadata, enrichment, merged, \
             audio_key, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11)",
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
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a call with external_id {:?} already exists",
                call.external_id.as_deref().unwrap_or("")
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn call(&self, tenant: &TenantId, unique_id: &str) -> Result<CallRecord, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = $1 AND id = $2");
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
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = $1 AND external_id = $2");
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
        // The filter text is built from fixed fragments only; every value is
        // bound. All metadata filters become one containment test on the
        // GIN-indexed jsonb.
        let mut filter = String::from("tenant_id = $1");
        let mut n = 1;
        if query.from_ms.is_some() {
            n += 1;
            filter.push_str(&format!(" AND timestamp_ms >= ${n}"));
        }
        if query.to_ms.is_some() {
            n += 1;
            filter.push_str(&format!(" AND timestamp_ms <= ${n}"));
        }
        let contains = (!query.metadata.is_empty()).then(|| {
            let object: serde_json::Map<String, serde_json::Value> = query
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::Value::Object(object).to_string()
        });
        // Two filters on one key can never both hold; a JSON object keeps only one.
        let contradictory = query
            .metadata
            .iter()
            .any(|(k, v)| query.metadata.iter().any(|(k2, v2)| k == k2 && v != v2));
        if contradictory {
            return Ok((0, Vec::new()));
        }
        if contains.is_some() {
            n += 1;
            filter.push_str(&format!(" AND merged @> ${n}::jsonb"));
        }
        if query.after.is_some() {
            filter.push_str(&format!(
                " AND (timestamp_ms < ${} OR (timestamp_ms = ${} AND id < ${}))",
                n + 1,
                n + 1,
                n + 2
            ));
            n += 2;
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
                if let Some(contains) = &contains {
                    q = q.bind(contains);
                }
                if let Some((ts, id)) = &query.after {
                    q = q.bind(ts).bind(id);
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
            "SELECT {CALL_COLUMNS} FROM calls WHERE {filter} ORDER BY timestamp_ms DESC, id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
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
            "UPDATE calls SET timestamp_ms = $1, metadata = $2, enrichment = $3, merged = $4::jsonb, audio_key = $5, \
             updated_ms = $6 WHERE tenant_id = $7 AND id = $8",
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
