//! The [`Store`] implementation: every statement written once, for both
//! databases. Methods are grouped by table, in the trait's order.

use async_trait::async_trait;
use callmeta_app::store::*;
use callmeta_core::csv::TableOptions;
use callmeta_core::domain::{TableName, TenantSlug};
use sqlx::AssertSqlSafe;

use crate::SqlStore;
use crate::calls::{CALL_COLUMNS, PendingCall};
use crate::error::{Context, is_unique_violation};
use crate::rows::*;

/// Makes `version` its table's active version, records the activation in
/// the history and, on PostgreSQL, tells the other nodes (delivered when the
/// transaction commits). The one way a version becomes active, for a new
/// upload and a rollback alike.
async fn activate_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: crate::dialect::Backend,
    tenant: &TenantId,
    version: &VersionRecord,
    channel: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    let doing = "activating a version";
    let updated = sqlx::query(
        "UPDATE ref_tables SET active_version = $1, options = $2, updated_ms = $3 \
         WHERE tenant_id = $4 AND name = $5",
    )
    .bind(&version.id)
    .bind(to_json(&version.options))
    .bind(at_ms)
    .bind(&tenant.0)
    .bind(version.table.as_str())
    .execute(&mut **tx)
    .await
    .doing(doing)?;
    affected_one(updated.rows_affected())?;
    sqlx::query(
        // `seq` after the table's others: the UPDATE above holds the table's
        // row (PostgreSQL) or the database (SQLite) until the commit, so two
        // activations of one table never read the same highest number.
        "INSERT INTO activations (tenant_id, table_name, version_id, activated_ms, channel, seq) \
         VALUES ($1, $2, $3, $4, $5, \
         (SELECT COALESCE(MAX(seq), 0) + 1 FROM activations WHERE tenant_id = $1 AND table_name = $2))",
    )
    .bind(&tenant.0)
    .bind(version.table.as_str())
    .bind(&version.id)
    .bind(at_ms)
    .bind(channel)
    .execute(&mut **tx)
    .await
    .doing(doing)?;
    if let Some(notify) = backend.notify() {
        sqlx::query(notify)
            .bind(crate::dialect::VERSIONS_CHANNEL)
            .bind(format!("{}/{}", tenant.0, version.table))
            .execute(&mut **tx)
            .await
            .doing(doing)?;
    }
    Ok(())
}

const TABLE_COLUMNS: &str = "name, options, active_version, created_ms, updated_ms";

fn affected_one(rows: u64) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

#[async_trait]
impl Store for SqlStore {
    // Tenants and their credentials.

    async fn create_tenant(&self, tenant: &Tenant, token_hash: &str) -> Result<(), StoreError> {
        let doing = "creating a tenant";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
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
            other => other.doing(doing)?,
        };
        // The first token is the tenant's admin token; its id is the
        // tenant's (as migration 0018 gave existing tenants).
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, tenant_id, name, role, created_ms) \
             VALUES ($1, $2, $3, 'initial', 'admin', $4)",
        )
        .bind(&tenant.id.0)
        .bind(token_hash)
        .bind(&tenant.id.0)
        .bind(tenant.created_ms)
        .execute(&mut *tx)
        .await
        .doing(doing)?;
        tx.commit().await.doing(doing)
    }

    async fn tenant_by_slug(&self, slug: &TenantSlug) -> Result<Tenant, StoreError> {
        let row = sqlx::query("SELECT id, slug, password_hash, created_ms FROM tenants WHERE slug = $1")
            .bind(slug.as_str())
            .fetch_optional(&self.pool)
            .await
            .doing("reading a tenant")?
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
        .await
        .doing("reading a token's tenant")?
        .ok_or(StoreError::NotFound)?;
        tenant_from_row(&row)
    }

    // Reference tables and their versions.

    async fn put_table(
        &self,
        tenant: &TenantId,
        name: &TableName,
        options: &TableOptions,
        now_ms: i64,
    ) -> Result<TableRecord, StoreError> {
        let doing = "writing a table";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        let existing =
            sqlx::query("SELECT active_version FROM ref_tables WHERE tenant_id = $1 AND name = $2")
                .bind(&tenant.0)
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await
                .doing(doing)?;
        match existing {
            None => {
                sqlx::query(
                    "INSERT INTO ref_tables (tenant_id, name, options, active_version, created_ms, updated_ms) \
                     VALUES ($1, $2, $3, NULL, $4, $4)",
                )
                .bind(&tenant.0)
                .bind(name.as_str())
                .bind(to_json(options))
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .doing(doing)?;
            }
            Some(row) => {
                if row.opt_text("active_version")?.is_some() {
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
                .await
                .doing(doing)?;
            }
        }
        tx.commit().await.doing(doing)?;
        self.table(tenant, name).await
    }

    async fn table(&self, tenant: &TenantId, name: &TableName) -> Result<TableRecord, StoreError> {
        let sql = format!("SELECT {TABLE_COLUMNS} FROM ref_tables WHERE tenant_id = $1 AND name = $2");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&tenant.0)
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .doing("reading a table")?
            .ok_or(StoreError::NotFound)?;
        table_from_row(&row)
    }

    async fn tables_with_versions(
        &self,
        tenant: &TenantId,
        name: Option<&TableName>,
    ) -> Result<Vec<(TableRecord, Vec<VersionRecord>)>, StoreError> {
        let doing = "reading tables";
        // One snapshot for both reads: a version is never listed before its
        // table points at it.
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_snapshot())
            .await
            .doing(doing)?;
        let only = if name.is_some() { " AND name = $2" } else { "" };
        let sql = format!("SELECT {TABLE_COLUMNS} FROM ref_tables WHERE tenant_id = $1{only} ORDER BY name");
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(&tenant.0);
        if let Some(name) = name {
            q = q.bind(name.as_str());
        }
        let tables = q
            .fetch_all(&mut *tx)
            .await
            .doing(doing)?
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
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(&tenant.0);
        if let Some(name) = name {
            q = q.bind(name.as_str());
        }
        let versions = q
            .fetch_all(&mut *tx)
            .await
            .doing(doing)?
            .iter()
            .map(version_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await.doing(doing)?;
        Ok(group_versions(tables, versions))
    }

    async fn table_states(&self) -> Result<Vec<TableState>, StoreError> {
        let sql = format!("SELECT tenant_id, {TABLE_COLUMNS} FROM ref_tables ORDER BY tenant_id, name");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .doing("reading every table")?;
        rows.iter()
            .map(|row| {
                let table = table_from_row(row)?;
                Ok(TableState {
                    tenant: TenantId(row.text("tenant_id")?),
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
        jobs: &[Job],
    ) -> Result<(), StoreError> {
        let doing = "recording a version";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        sqlx::query(
            "INSERT INTO versions (id, tenant_id, table_name, created_ms, channel, filename, sha256, bytes, \
             blob_key, accepted, rows, options, report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&version.id)
        .bind(&tenant.0)
        .bind(version.table.as_str())
        .bind(version.created_ms)
        .bind(&version.channel)
        .bind(&version.filename)
        .bind(&version.sha256)
        .bind(version.bytes.min(i64::MAX as u64) as i64)
        .bind(&version.blob_key)
        .bind(i64::from(version.accepted))
        .bind(version.rows.min(i64::MAX as u64) as i64)
        .bind(to_json(&version.options))
        .bind(to_json(&version.report))
        .execute(&mut *tx)
        .await
        .doing(doing)?;
        // Its ingest job, if any, is done with it.
        sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(&version.id)
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        if activate {
            activate_in(
                &mut tx,
                self.backend,
                tenant,
                version,
                &version.channel,
                version.created_ms,
            )
            .await?;
        }
        crate::webhooks::insert_jobs_in(&mut tx, self.backend, jobs).await?;
        tx.commit().await.doing(doing)
    }

    async fn activate_version(
        &self,
        tenant: &TenantId,
        version: &VersionRecord,
        channel: &str,
        now_ms: i64,
        jobs: &[Job],
    ) -> Result<(), StoreError> {
        let doing = "activating a version";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        activate_in(&mut tx, self.backend, tenant, version, channel, now_ms).await?;
        crate::webhooks::insert_jobs_in(&mut tx, self.backend, jobs).await?;
        tx.commit().await.doing(doing)
    }

    async fn activations(
        &self,
        tenant: &TenantId,
        name: &TableName,
        limit: u32,
    ) -> Result<Vec<ActivationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT version_id, activated_ms, channel FROM activations WHERE tenant_id = $1 AND table_name = $2 \
             ORDER BY activated_ms DESC LIMIT $3",
        )
        .bind(&tenant.0)
        .bind(name.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("reading activations")?;
        rows.iter()
            .map(|row| {
                Ok(ActivationRecord {
                    version: row.text("version_id")?,
                    activated_ms: row.int("activated_ms")?,
                    channel: row.text("channel")?,
                })
            })
            .collect()
    }

    async fn version(&self, tenant: &TenantId, id: &str) -> Result<VersionRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM versions WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .doing("reading a version")?
            .ok_or(StoreError::NotFound)?;
        version_from_row(&row)
    }

    async fn rejected_originals(&self, tenant: &TenantId) -> Result<Vec<StoredOriginal>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, blob_key, bytes FROM versions WHERE tenant_id = $1 AND accepted = 0 AND blob_key <> '' \
             ORDER BY created_ms DESC, id DESC",
        )
        .bind(&tenant.0)
        .fetch_all(&self.pool)
        .await
        .doing("reading rejected uploads")?;
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
            .await
            .doing("forgetting an upload's original")?;
        Ok(())
    }

    // Calls.

    async fn insert_call(
        &self,
        tenant: &TenantId,
        call: &CallRecord,
        jobs: &[Job],
    ) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("the call writer has stopped".into());
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = PendingCall {
            tenant: tenant.clone(),
            call: call.clone(),
            jobs: jobs.to_vec(),
            reply,
        };
        self.calls.send(pending).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn call(&self, tenant: &TenantId, unique_id: &str) -> Result<CallRecord, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&tenant.0)
            .bind(unique_id)
            .fetch_optional(&self.pool)
            .await
            .doing("reading a call")?
            .ok_or(StoreError::NotFound)?;
        call_from_row(&row)
    }

    async fn call_by_external_id(
        &self,
        tenant: &TenantId,
        external_id: &str,
    ) -> Result<CallRecord, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE tenant_id = $1 AND external_id = $2");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&tenant.0)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await
            .doing("reading a call")?
            .ok_or(StoreError::NotFound)?;
        call_from_row(&row)
    }

    async fn list_calls(&self, tenant: &TenantId, query: &CallQuery) -> Result<CallPage, StoreError> {
        crate::calls::list(&self.pool, self.backend, tenant, query).await
    }

    async fn call_facets(
        &self,
        tenant: &TenantId,
        query: &CallQuery,
        key: &str,
        sample: u32,
    ) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        crate::calls::facets(&self.pool, self.backend, tenant, query, key, sample).await
    }

    async fn call_key_names(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
        crate::calls::key_names(&self.pool, self.backend, tenant).await
    }

    async fn update_call(
        &self,
        tenant: &TenantId,
        call: &CallRecord,
        jobs: &[Job],
    ) -> Result<(), StoreError> {
        let doing = "updating a call";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        let merged = callmeta_core::enrich::merged_metadata(&call.metadata, &call.enrichment);
        let sql = format!(
            "UPDATE calls SET timestamp_ms = $1, metadata = $2, enrichment = $3, merged = {}, \
             audio_key = CASE WHEN audio_pruned_ms IS NULL THEN $5 ELSE NULL END, \
             updated_ms = $6 WHERE tenant_id = $7 AND id = $8",
            self.backend.json_param(4)
        );
        let updated = sqlx::query(AssertSqlSafe(sql))
            .bind(call.timestamp_ms)
            .bind(to_json(&call.metadata))
            .bind(to_json(&call.enrichment))
            .bind(to_json(&merged))
            .bind(&call.audio_key)
            .bind(call.updated_ms)
            .bind(&tenant.0)
            .bind(&call.unique_id)
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        crate::webhooks::insert_jobs_in(&mut tx, self.backend, jobs).await?;
        tx.commit().await.doing(doing)
    }

    // SSH keys.

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
        .await
        .doing("adding an SSH key")?;
        Ok(())
    }

    async fn tenant_keys(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT public_key FROM tenant_keys WHERE tenant_id = $1 AND user_name = '' ORDER BY created_ms",
        )
        .bind(&tenant.0)
        .fetch_all(&self.pool)
        .await
        .doing("reading SSH keys")?;
        rows.iter().map(|r| r.text("public_key")).collect()
    }

    // SIPREC settings and the operator's SBC networks.

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
        .await
        .doing("writing SIPREC settings")?;
        Ok(())
    }

    async fn siprec_settings(&self, tenant: &TenantId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT settings FROM siprec_settings WHERE tenant_id = $1")
            .bind(&tenant.0)
            .fetch_optional(&self.pool)
            .await
            .doing("reading SIPREC settings")?;
        row.map(|r| r.text("settings")).transpose()
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
        .await
        .doing("registering an SBC network")?;
        Ok(inserted.rows_affected() > 0)
    }

    async fn remove_sip_source(&self, tenant: &TenantId, network: &str) -> Result<bool, StoreError> {
        let removed = sqlx::query("DELETE FROM sip_sources WHERE tenant_id = $1 AND network = $2")
            .bind(&tenant.0)
            .bind(network)
            .execute(&self.pool)
            .await
            .doing("removing an SBC network")?;
        Ok(removed.rows_affected() > 0)
    }

    async fn sip_sources(&self) -> Result<Vec<SipSource>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.tenant_id, t.slug, s.network FROM sip_sources s JOIN tenants t ON t.id = s.tenant_id \
             ORDER BY t.slug, s.network",
        )
        .fetch_all(&self.pool)
        .await
        .doing("reading SBC networks")?;
        rows.iter()
            .map(|r| {
                Ok(SipSource {
                    tenant: TenantId(r.text("tenant_id")?),
                    slug: r.text("slug")?,
                    network: r.text("network")?,
                })
            })
            .collect()
    }

    // Back-fills.

    async fn insert_backfill(&self, backfill: &BackfillRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO backfills (id, tenant_id, created_ms, updated_ms, finished_ms, dry_run, filter, report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&backfill.id)
        .bind(&backfill.tenant.0)
        .bind(backfill.created_ms)
        .bind(backfill.updated_ms)
        .bind(backfill.finished_ms)
        .bind(i64::from(backfill.dry_run))
        .bind(to_json(&backfill.filter))
        .bind(to_json(&backfill.report))
        .execute(&self.pool)
        .await
        .doing("recording a back-fill")?;
        Ok(())
    }

    async fn update_backfill(&self, backfill: &BackfillRecord) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE backfills SET updated_ms = $1, finished_ms = $2, report = $3 WHERE tenant_id = $4 AND id = $5",
        )
        .bind(backfill.updated_ms)
        .bind(backfill.finished_ms)
        .bind(to_json(&backfill.report))
        .bind(&backfill.tenant.0)
        .bind(&backfill.id)
        .execute(&self.pool)
        .await
        .doing("updating a back-fill")?;
        affected_one(updated.rows_affected())
    }

    async fn backfill(&self, tenant: &TenantId, id: &str) -> Result<BackfillRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM backfills WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .doing("reading a back-fill")?
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
        .await
        .doing("reading back-fills")?;
        rows.iter().map(backfill_from_row).collect()
    }

    // Leased background jobs.

    async fn insert_job(&self, job: &Job) -> Result<(), StoreError> {
        self.insert_job_rows(std::slice::from_ref(job)).await
    }

    async fn renew_jobs(&self, owner: &str, ids: &[String], lease_until_ms: i64) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "UPDATE jobs SET lease_until = $1 WHERE owner = $2 AND id IN ({})",
            self.backend.json_array_strings(3)
        );
        let updated = sqlx::query(AssertSqlSafe(sql))
            .bind(lease_until_ms)
            .bind(owner)
            .bind(to_json(&ids))
            .execute(&self.pool)
            .await
            .doing("renewing job leases")?;
        Ok(updated.rows_affected())
    }

    async fn claim_stale_job(
        &self,
        kind: JobKind,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Job>, StoreError> {
        let sql = format!(
            "UPDATE jobs SET owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM jobs WHERE kind = $3 AND lease_until < $4 ORDER BY created_ms LIMIT 1{}) \
             AND lease_until < $4 RETURNING *",
            self.backend.skip_locked()
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease_until_ms)
            .bind(kind.as_str())
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await
            .doing("claiming a job")?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn take_job(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(
            "UPDATE jobs SET owner = $1, lease_until = $2 WHERE id = $3 AND (owner = $1 OR lease_until < $4) RETURNING *",
        )
        .bind(owner)
        .bind(lease_until_ms)
        .bind(id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .doing("taking a job")?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn update_job(&self, id: &str, owner: &str, payload: &serde_json::Value) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE jobs SET payload = $1 WHERE id = $2 AND owner = $3")
            .bind(to_json(payload))
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await
            .doing("recording a job's progress")?;
        affected_one(updated.rows_affected())
    }

    async fn delete_job(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .doing("deleting a job")?;
        Ok(())
    }

    async fn version_match_counts(
        &self,
        tenant: &TenantId,
        table: &TableName,
        version: &str,
    ) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query(self.backend.version_match_counts())
            .bind(&tenant.0)
            .bind(table.as_str())
            .bind(version)
            .fetch_one(&self.pool)
            .await
            .doing("counting a version's matches")?;
        Ok((
            row.int("results")?.max(0) as u64,
            row.int("matched")?.max(0) as u64,
        ))
    }

    // Web app sessions.

    async fn insert_web_session(&self, session: &WebSessionRecord) -> Result<(), StoreError> {
        let doing = "recording a web session";
        sqlx::query("DELETE FROM web_sessions WHERE expires_ms <= $1 OR last_seen_ms + idle_ms <= $1")
            .bind(session.created_ms)
            .execute(&self.pool)
            .await
            .doing(doing)?;
        sqlx::query(
            "INSERT INTO web_sessions (token_hash, tenant_id, tenant_slug, csrf, created_ms, expires_ms, \
             last_seen_ms, idle_ms, user_name, role) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&session.token_hash)
        .bind(&session.tenant.0)
        .bind(&session.tenant_slug)
        .bind(&session.csrf)
        .bind(session.created_ms)
        .bind(session.expires_ms)
        .bind(session.last_seen_ms)
        .bind(session.idle_ms)
        .bind(&session.user_name)
        .bind(session.role.as_str())
        .execute(&self.pool)
        .await
        .doing(doing)?;
        Ok(())
    }

    async fn web_session(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<WebSessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM web_sessions WHERE token_hash = $1 AND expires_ms > $2 AND last_seen_ms + idle_ms > $2",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .doing("reading a web session")?;
        row.as_ref().map(web_session_from_row).transpose()
    }

    async fn touch_web_session(&self, token_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE web_sessions SET last_seen_ms = $1 WHERE token_hash = $2 AND last_seen_ms < $1")
            .bind(now_ms)
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .doing("recording a web session's use")?;
        Ok(())
    }

    async fn delete_web_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .doing("deleting a web session")?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .doing("checking the database")?;
        Ok(())
    }

    fn version_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.changes.as_ref().map(|c| c.versions.clone())
    }

    // Tokens (`tokens.rs`).

    async fn insert_token(&self, token: &TokenRecord, token_hash: &str) -> Result<(), StoreError> {
        self.insert_token_row(token, token_hash).await
    }

    async fn tokens(&self, tenant: &TenantId) -> Result<Vec<TokenRecord>, StoreError> {
        self.token_rows(tenant).await
    }

    async fn delete_token(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        self.delete_token_row(tenant, id).await
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<(Tenant, TokenRecord), StoreError> {
        self.token_row_by_hash(token_hash).await
    }

    async fn touch_token(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.touch_token_row(id, now_ms).await
    }

    fn token_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.changes.as_ref().map(|c| c.tokens.clone())
    }

    async fn job_counts(&self) -> Result<Vec<(JobKind, u64)>, StoreError> {
        self.job_count_rows().await
    }

    // Webhooks (`webhooks`).

    async fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        self.insert_webhook_row(webhook).await
    }

    async fn webhooks(&self, tenant: &TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
        self.webhook_rows(tenant).await
    }

    async fn webhook(&self, tenant: &TenantId, id: &str) -> Result<WebhookRecord, StoreError> {
        self.webhook_row(tenant, id).await
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        self.delete_webhook_row(tenant, id).await
    }

    async fn count_jobs(&self, tenant: &TenantId, kind: JobKind, at_most: u64) -> Result<u64, StoreError> {
        self.count_job_rows(tenant, kind, at_most).await
    }

    async fn insert_jobs(&self, jobs: &[Job]) -> Result<(), StoreError> {
        self.insert_job_rows(jobs).await
    }

    async fn claim_stale_jobs(
        &self,
        kind: JobKind,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.claim_job_rows(kind, owner, now_ms, lease_until_ms, limit)
            .await
    }

    async fn finish_deliveries(&self, owner: &str, finished: &[FinishedDelivery]) -> Result<(), StoreError> {
        self.finish_delivery_rows(owner, finished).await
    }

    async fn insert_delivery_attempt(&self, attempt: &DeliveryAttempt) -> Result<(), StoreError> {
        self.insert_attempt_row(attempt).await
    }

    async fn delivery_attempts(
        &self,
        tenant: &TenantId,
        endpoint: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        self.attempt_rows(tenant, endpoint, limit).await
    }

    async fn prune_delivery_attempts(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.prune_attempt_rows(before_ms).await
    }

    // Audit log.

    async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.insert_audit_row(entry).await
    }

    async fn audit_entries(&self, tenant: &TenantId, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.audit_rows(tenant, query).await
    }

    async fn prune_audit(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.prune_audit_rows(before_ms).await
    }

    // Erasure and retention (`retention`).

    async fn erase_call(&self, tenant: &TenantId, unique_id: &str, jobs: &[Job]) -> Result<bool, StoreError> {
        self.erase_call_rows(tenant, unique_id, jobs).await
    }

    async fn delete_table(&self, tenant: &TenantId, name: &TableName) -> Result<(), StoreError> {
        self.delete_table_rows(tenant, name).await
    }

    async fn delete_version(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        self.delete_version_row(tenant, id).await
    }

    async fn retention_policy(&self, tenant: &TenantId) -> Result<Option<RetentionPolicy>, StoreError> {
        self.retention_policy_row(tenant).await
    }

    async fn put_retention_policy(
        &self,
        tenant: &TenantId,
        policy: &RetentionPolicy,
        job: &Job,
    ) -> Result<(), StoreError> {
        self.put_retention_policy_row(tenant, policy, job).await
    }

    async fn aged_calls(
        &self,
        tenant: &TenantId,
        before_ms: i64,
        with_audio: bool,
        limit: u32,
    ) -> Result<Vec<AgedCall>, StoreError> {
        self.aged_call_rows(tenant, before_ms, with_audio, limit).await
    }

    async fn mark_audio_pruned(
        &self,
        tenant: &TenantId,
        unique_id: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.mark_audio_pruned_row(tenant, unique_id, at_ms).await
    }

    async fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.job_row(id).await
    }

    async fn reschedule_job(
        &self,
        id: &str,
        owner: &str,
        payload: &serde_json::Value,
        next_ms: i64,
    ) -> Result<(), StoreError> {
        self.reschedule_job_row(id, owner, payload, next_ms).await
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.insert_user_row(user).await
    }

    async fn users(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError> {
        self.user_rows(tenant).await
    }

    async fn user(&self, tenant: &TenantId, name: &str) -> Result<UserRecord, StoreError> {
        self.user_row(tenant, name).await
    }

    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.update_user_row(user).await
    }

    async fn add_user_key(
        &self,
        tenant: &TenantId,
        user: &str,
        public_key: &str,
        comment: &str,
        created_ms: i64,
    ) -> Result<(), StoreError> {
        self.add_user_key_row(tenant, user, public_key, comment, created_ms)
            .await
    }

    async fn user_keys(&self, tenant: &TenantId, user: &str) -> Result<Vec<String>, StoreError> {
        self.user_key_rows(tenant, user).await
    }

    async fn activation_at(
        &self,
        tenant: &TenantId,
        name: &TableName,
        at_ms: i64,
    ) -> Result<Option<(ActivationRecord, bool)>, StoreError> {
        let row = sqlx::query(
            "SELECT a.version_id, a.activated_ms, a.channel, \
             (SELECT COUNT(*) FROM versions v WHERE v.tenant_id = a.tenant_id AND v.id = a.version_id) AS kept \
             FROM activations a WHERE a.tenant_id = $1 AND a.table_name = $2 AND a.activated_ms <= $3 \
             ORDER BY a.activated_ms DESC, a.seq DESC LIMIT 1",
        )
        .bind(&tenant.0)
        .bind(name.as_str())
        .bind(at_ms)
        .fetch_optional(&self.pool)
        .await
        .doing("reading the activation at a time")?;
        row.map(|row| {
            Ok((
                ActivationRecord {
                    version: row.text("version_id")?,
                    activated_ms: row.int("activated_ms")?,
                    channel: row.text("channel")?,
                },
                row.int("kept")? > 0,
            ))
        })
        .transpose()
    }

    // The daily export push (`exports`).

    async fn export_push_settings(&self, tenant: &TenantId) -> Result<Option<ExportPushRecord>, StoreError> {
        self.export_push_settings_row(tenant).await
    }

    async fn put_export_push_settings(&self, record: &ExportPushRecord) -> Result<(), StoreError> {
        self.put_export_push_settings_row(record).await
    }

    async fn delete_export_push(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        self.delete_export_push_rows(tenant).await
    }

    async fn upsert_job(&self, job: &Job) -> Result<bool, StoreError> {
        self.upsert_job_row(job).await
    }

    async fn put_export_run(&self, run: &ExportRun) -> Result<(), StoreError> {
        self.put_export_run_row(run).await
    }

    async fn export_runs(&self, tenant: &TenantId, limit: u32) -> Result<Vec<ExportRun>, StoreError> {
        self.export_run_rows(tenant, limit).await
    }

    async fn export_run(&self, tenant: &TenantId, day: &str) -> Result<Option<ExportRun>, StoreError> {
        self.export_run_row(tenant, day).await
    }
}
