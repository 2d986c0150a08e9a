//! Erasure (a call, a table) and retention (the tenant's policy, the calls
//! and versions past it, the recurring job that applies it). The `Store`
//! trait's methods of that block in `store` call these.

use callmeta_app::store::{AgedCall, Job, JobKind, RetentionPolicy, StoreError, TenantId};
use callmeta_core::domain::TableName;
use sqlx::AssertSqlSafe;

use crate::SqlStore;
use crate::error::Context;
use crate::rows::{Columns, job_from_row, to_json};

/// A stored number of days or versions (never negative: the use case
/// checks them), as the policy holds it.
fn days(value: Option<i64>) -> Option<u32> {
    value.map(|v| v.clamp(0, i64::from(u32::MAX)) as u32)
}

impl SqlStore {
    pub(crate) async fn erase_call_rows(
        &self,
        tenant: &TenantId,
        unique_id: &str,
        jobs: &[Job],
    ) -> Result<bool, StoreError> {
        let doing = "erasing a call";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        // The index of calls follows by the calls' delete triggers (0012).
        let deleted = sqlx::query("DELETE FROM calls WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(unique_id)
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        sqlx::query("DELETE FROM jobs WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(unique_id)
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        // Webhook deliveries about the call still waiting would send its
        // data after it was erased: they go with it (one a node is sending
        // at this moment may still arrive).
        let deliveries = format!(
            "DELETE FROM jobs WHERE tenant_id = $1 AND kind = $2 AND {} = $3",
            self.backend.json_member("payload", "call")
        );
        sqlx::query(AssertSqlSafe(deliveries))
            .bind(&tenant.0)
            .bind(JobKind::Webhook.as_str())
            .bind(unique_id)
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        let erased = deleted.rows_affected() > 0;
        if erased {
            // The erasure's own event, after the deletes that would drop it.
            crate::webhooks::insert_jobs_in(&mut tx, self.backend, jobs).await?;
        }
        tx.commit().await.doing(doing)?;
        Ok(erased)
    }

    pub(crate) async fn delete_table_rows(
        &self,
        tenant: &TenantId,
        name: &TableName,
    ) -> Result<(), StoreError> {
        let doing = "deleting a table";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        let deleted = sqlx::query("DELETE FROM ref_tables WHERE tenant_id = $1 AND name = $2")
            .bind(&tenant.0)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        for statement in [
            "DELETE FROM versions WHERE tenant_id = $1 AND table_name = $2",
            "DELETE FROM activations WHERE tenant_id = $1 AND table_name = $2",
        ] {
            sqlx::query(statement)
                .bind(&tenant.0)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await
                .doing(doing)?;
        }
        // An upload of the table still being ingested would record a
        // version of a table that is gone.
        let sql = format!(
            "DELETE FROM jobs WHERE tenant_id = $1 AND kind = 'ingest' AND {} = $2",
            self.backend.json_member("payload", "table")
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&tenant.0)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        // The other nodes reload their tables at once, as on an activation,
        // and find this one gone.
        if let Some(notify) = self.backend.notify() {
            sqlx::query(notify)
                .bind(crate::dialect::VERSIONS_CHANNEL)
                .bind(format!("{}/{}", tenant.0, name))
                .execute(&mut *tx)
                .await
                .doing(doing)?;
        }
        tx.commit().await.doing(doing)
    }

    pub(crate) async fn delete_version_row(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        // The active version is kept by the statement itself, whatever the
        // caller read before.
        let deleted = sqlx::query(
            "DELETE FROM versions WHERE tenant_id = $1 AND id = $2 AND NOT EXISTS \
             (SELECT 1 FROM ref_tables t WHERE t.tenant_id = $1 AND t.active_version = $2)",
        )
        .bind(&tenant.0)
        .bind(id)
        .execute(&self.pool)
        .await
        .doing("deleting a version")?;
        Ok(deleted.rows_affected() > 0)
    }

    pub(crate) async fn retention_policy_row(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<RetentionPolicy>, StoreError> {
        let row = sqlx::query(
            "SELECT audio_days, calls_days, rejected_uploads_days, versions_kept, updated_ms \
             FROM retention_policies WHERE tenant_id = $1",
        )
        .bind(&tenant.0)
        .fetch_optional(&self.pool)
        .await
        .doing("reading a retention policy")?;
        row.map(|row| {
            Ok(RetentionPolicy {
                audio_days: days(row.opt_int("audio_days")?),
                calls_days: days(row.opt_int("calls_days")?),
                rejected_uploads_days: days(row.opt_int("rejected_uploads_days")?),
                versions_kept: days(row.opt_int("versions_kept")?),
                updated_ms: row.int("updated_ms")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn put_retention_policy_row(
        &self,
        tenant: &TenantId,
        policy: &RetentionPolicy,
        job: &Job,
    ) -> Result<(), StoreError> {
        let doing = "writing a retention policy";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        sqlx::query(
            "INSERT INTO retention_policies (tenant_id, audio_days, calls_days, rejected_uploads_days, \
             versions_kept, updated_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id) DO UPDATE SET audio_days = excluded.audio_days, \
             calls_days = excluded.calls_days, rejected_uploads_days = excluded.rejected_uploads_days, \
             versions_kept = excluded.versions_kept, updated_ms = excluded.updated_ms",
        )
        .bind(&tenant.0)
        .bind(policy.audio_days.map(i64::from))
        .bind(policy.calls_days.map(i64::from))
        .bind(policy.rejected_uploads_days.map(i64::from))
        .bind(policy.versions_kept.map(i64::from))
        .bind(policy.updated_ms)
        .execute(&mut *tx)
        .await
        .doing(doing)?;
        sqlx::query(
            "INSERT INTO jobs (id, kind, tenant_id, created_ms, payload, owner, lease_until, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until WHERE jobs.owner = ''",
        )
        .bind(&job.id)
        .bind(job.kind.as_str())
        .bind(&job.tenant.0)
        .bind(job.created_ms)
        .bind(to_json(&job.payload))
        .bind(&job.owner)
        .bind(job.lease_until_ms)
        .bind(job.attempts)
        .execute(&mut *tx)
        .await
        .doing(doing)?;
        tx.commit().await.doing(doing)
    }

    pub(crate) async fn aged_call_rows(
        &self,
        tenant: &TenantId,
        before_ms: i64,
        with_audio: bool,
        limit: u32,
    ) -> Result<Vec<AgedCall>, StoreError> {
        // With audio: the partial index `calls_with_audio` (0020) holds
        // exactly these calls, so pruned ones are never read again.
        let only_audio = if with_audio {
            " AND audio_key IS NOT NULL"
        } else {
            ""
        };
        let sql = format!(
            "SELECT id, audio_key FROM calls WHERE tenant_id = $1 AND timestamp_ms < $2{only_audio} \
             ORDER BY timestamp_ms LIMIT $3"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&tenant.0)
            .bind(before_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .doing("reading calls past retention")?;
        rows.iter()
            .map(|row| {
                Ok(AgedCall {
                    unique_id: row.text("id")?,
                    audio_key: row.opt_text("audio_key")?,
                })
            })
            .collect()
    }

    pub(crate) async fn mark_audio_pruned_row(
        &self,
        tenant: &TenantId,
        unique_id: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        // Neither `merged` nor `enrichment` changes: the index of calls
        // stays as it is.
        sqlx::query(
            "UPDATE calls SET audio_key = NULL, audio_pruned_ms = $1, updated_ms = $1 \
             WHERE tenant_id = $2 AND id = $3",
        )
        .bind(at_ms)
        .bind(&tenant.0)
        .bind(unique_id)
        .execute(&self.pool)
        .await
        .doing("recording pruned audio")?;
        Ok(())
    }

    pub(crate) async fn job_row(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .doing("reading a job")?;
        row.as_ref().map(job_from_row).transpose()
    }

    pub(crate) async fn reschedule_job_row(
        &self,
        id: &str,
        owner: &str,
        payload: &serde_json::Value,
        next_ms: i64,
    ) -> Result<(), StoreError> {
        // No node holds it until then: its lease is the time of its next run.
        let updated = sqlx::query(
            "UPDATE jobs SET payload = $1, lease_until = $2, owner = '' WHERE id = $3 AND owner = $4",
        )
        .bind(to_json(payload))
        .bind(next_ms)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .doing("rescheduling a job")?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
