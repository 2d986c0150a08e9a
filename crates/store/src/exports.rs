//! The daily export push: a tenant's settings, the runs of each day, and
//! the upsert of a job (a day's push asked for again, a schedule replaced).
//! The `Store` trait's export methods in `store` call these.

use callmeta_app::store::{ExportPushRecord, ExportRun, Job, JobKind, StoreError, TenantId};
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::error::Context;
use crate::rows::{Columns, from_json, to_json};

fn run_from_row(row: &AnyRow) -> Result<ExportRun, StoreError> {
    Ok(ExportRun {
        tenant: TenantId(row.text("tenant_id")?),
        day: row.text("day")?,
        file_name: row.text("file_name")?,
        destination: row.text("destination")?,
        status: row.text("status")?,
        calls: row.int("calls")?,
        bytes: row.int("bytes")?,
        attempts: row.int("attempts")?,
        error: row.opt_text("error")?,
        requested_ms: row.int("requested_ms")?,
        updated_ms: row.int("updated_ms")?,
        next_attempt_ms: row.opt_int("next_attempt_ms")?,
    })
}

impl SqlStore {
    pub(crate) async fn export_push_settings_row(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<ExportPushRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM export_push_settings WHERE tenant_id = $1")
            .bind(&tenant.0)
            .fetch_optional(&self.pool)
            .await
            .doing("reading export push settings")?;
        row.map(|row| {
            Ok(ExportPushRecord {
                tenant: TenantId(row.text("tenant_id")?),
                settings: from_json("export push settings", &row.text("settings")?)?,
                updated_ms: row.int("updated_ms")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn put_export_push_settings_row(
        &self,
        record: &ExportPushRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO export_push_settings (tenant_id, settings, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings, updated_ms = excluded.updated_ms",
        )
        .bind(&record.tenant.0)
        .bind(to_json(&record.settings))
        .bind(record.updated_ms)
        .execute(&self.pool)
        .await
        .doing("writing export push settings")?;
        Ok(())
    }

    pub(crate) async fn delete_export_push_rows(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        let doing = "deleting export push settings";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        let deleted = sqlx::query("DELETE FROM export_push_settings WHERE tenant_id = $1")
            .bind(&tenant.0)
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        sqlx::query("DELETE FROM jobs WHERE tenant_id = $1 AND kind IN ($2, $3)")
            .bind(&tenant.0)
            .bind(JobKind::ExportSchedule.as_str())
            .bind(JobKind::ExportPush.as_str())
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        tx.commit().await.doing(doing)?;
        Ok(deleted.rows_affected() > 0)
    }

    pub(crate) async fn upsert_job_row(&self, job: &Job) -> Result<bool, StoreError> {
        // A job no node holds, or one whose holder stopped, is replaced; a
        // job a node works on is left to it.
        let written = sqlx::query(
            "INSERT INTO jobs (id, kind, tenant_id, created_ms, payload, owner, lease_until, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET payload = excluded.payload, owner = excluded.owner, \
             lease_until = excluded.lease_until, attempts = excluded.attempts \
             WHERE jobs.owner = '' OR jobs.lease_until < excluded.created_ms",
        )
        .bind(&job.id)
        .bind(job.kind.as_str())
        .bind(&job.tenant.0)
        .bind(job.created_ms)
        .bind(to_json(&job.payload))
        .bind(&job.owner)
        .bind(job.lease_until_ms)
        .bind(job.attempts)
        .execute(&self.pool)
        .await
        .doing("recording a job")?;
        Ok(written.rows_affected() > 0)
    }

    pub(crate) async fn put_export_run_row(&self, run: &ExportRun) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO export_runs (tenant_id, day, file_name, destination, status, calls, bytes, \
             attempts, error, requested_ms, updated_ms, next_attempt_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (tenant_id, day) DO UPDATE SET file_name = excluded.file_name, \
             destination = excluded.destination, status = excluded.status, calls = excluded.calls, \
             bytes = excluded.bytes, attempts = excluded.attempts, error = excluded.error, \
             requested_ms = excluded.requested_ms, updated_ms = excluded.updated_ms, \
             next_attempt_ms = excluded.next_attempt_ms",
        )
        .bind(&run.tenant.0)
        .bind(&run.day)
        .bind(&run.file_name)
        .bind(&run.destination)
        .bind(&run.status)
        .bind(run.calls)
        .bind(run.bytes)
        .bind(run.attempts)
        .bind(&run.error)
        .bind(run.requested_ms)
        .bind(run.updated_ms)
        .bind(run.next_attempt_ms)
        .execute(&self.pool)
        .await
        .doing("recording an export run")?;
        Ok(())
    }

    pub(crate) async fn export_run_rows(
        &self,
        tenant: &TenantId,
        limit: u32,
    ) -> Result<Vec<ExportRun>, StoreError> {
        let rows = sqlx::query("SELECT * FROM export_runs WHERE tenant_id = $1 ORDER BY day DESC LIMIT $2")
            .bind(&tenant.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .doing("reading export runs")?;
        rows.iter().map(run_from_row).collect()
    }

    pub(crate) async fn export_run_row(
        &self,
        tenant: &TenantId,
        day: &str,
    ) -> Result<Option<ExportRun>, StoreError> {
        let row = sqlx::query("SELECT * FROM export_runs WHERE tenant_id = $1 AND day = $2")
            .bind(&tenant.0)
            .bind(day)
            .fetch_optional(&self.pool)
            .await
            .doing("reading an export run")?;
        row.as_ref().map(run_from_row).transpose()
    }
}
