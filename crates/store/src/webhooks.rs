//! Webhook endpoints, their delivery attempts and the outbox of deliveries
//! (rows of `jobs`, kind `webhook`). The `Store` trait's webhook methods in
//! `store` call these.

use callmeta_app::store::{
    DeliveryAttempt, FinishedDelivery, Job, JobKind, StoreError, TenantId, WebhookRecord,
};
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::dialect::Backend;
use crate::error::Context;
use crate::rows::{Columns, from_json, job_from_row, to_json};

fn webhook_from_row(row: &AnyRow) -> Result<WebhookRecord, StoreError> {
    Ok(WebhookRecord {
        id: row.text("id")?,
        tenant: TenantId(row.text("tenant_id")?),
        url: row.text("url")?,
        events: from_json("webhook events", &row.text("events")?)?,
        secret: row.text("secret")?,
        created_ms: row.int("created_ms")?,
    })
}

fn attempt_from_row(row: &AnyRow) -> Result<DeliveryAttempt, StoreError> {
    Ok(DeliveryAttempt {
        id: row.text("id")?,
        tenant: TenantId(row.text("tenant_id")?),
        endpoint: row.text("endpoint_id")?,
        event_id: row.text("event_id")?,
        event: row.text("event")?,
        attempt: row.int("attempt")?,
        attempted_ms: row.int("attempted_ms")?,
        status_code: row.opt_int("status_code")?,
        latency_ms: row.int("latency_ms")?,
        error: row.opt_text("error")?,
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn insert_attempt(attempt: &DeliveryAttempt) -> AnyQuery<'_> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event, attempt, \
         attempted_ms, status_code, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&attempt.id)
    .bind(&attempt.tenant.0)
    .bind(&attempt.endpoint)
    .bind(&attempt.event_id)
    .bind(&attempt.event)
    .bind(attempt.attempt)
    .bind(attempt.attempted_ms)
    .bind(attempt.status_code)
    .bind(attempt.latency_ms)
    .bind(&attempt.error)
}

/// Gives a job back, due again at `due_ms` (no owner), if `owner` holds it.
fn release_job<'q>(id: &'q str, owner: &'q str, payload: &serde_json::Value, due_ms: i64) -> AnyQuery<'q> {
    sqlx::query("UPDATE jobs SET payload = $1, owner = '', lease_until = $2 WHERE id = $3 AND owner = $4")
        .bind(to_json(payload))
        .bind(due_ms)
        .bind(id)
        .bind(owner)
}

impl SqlStore {
    pub(crate) async fn insert_webhook_row(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, events, secret, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&webhook.id)
        .bind(&webhook.tenant.0)
        .bind(&webhook.url)
        .bind(to_json(&webhook.events))
        .bind(&webhook.secret)
        .bind(webhook.created_ms)
        .execute(&self.pool)
        .await
        .doing("recording a webhook endpoint")?;
        Ok(())
    }

    pub(crate) async fn webhook_rows(&self, tenant: &TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_ms, id")
                .bind(&tenant.0)
                .fetch_all(&self.pool)
                .await
                .doing("reading webhook endpoints")?;
        rows.iter().map(webhook_from_row).collect()
    }

    pub(crate) async fn webhook_row(&self, tenant: &TenantId, id: &str) -> Result<WebhookRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .doing("reading a webhook endpoint")?
            .ok_or(StoreError::NotFound)?;
        webhook_from_row(&row)
    }

    pub(crate) async fn delete_webhook_row(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let doing = "deleting a webhook endpoint";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(id)
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2")
            .bind(&tenant.0)
            .bind(id)
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        // Its pending deliveries (jobs) go too: they would never be sent.
        let pending = format!(
            "DELETE FROM jobs WHERE tenant_id = $1 AND kind = $2 AND {} = $3",
            self.backend.json_member("payload", "endpoint")
        );
        sqlx::query(sqlx::AssertSqlSafe(pending))
            .bind(&tenant.0)
            .bind(JobKind::Webhook.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        tx.commit().await.doing(doing)?;
        Ok(deleted.rows_affected() > 0)
    }

    pub(crate) async fn count_job_rows(
        &self,
        tenant: &TenantId,
        kind: JobKind,
        at_most: u64,
    ) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM \
             (SELECT 1 FROM jobs WHERE tenant_id = $1 AND kind = $2 LIMIT $3) AS counted",
        )
        .bind(&tenant.0)
        .bind(kind.as_str())
        .bind(i64::try_from(at_most).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await
        .doing("counting jobs")?;
        Ok(row.int("n")?.max(0) as u64)
    }

    /// Records jobs, several in one transaction (all or none). The one
    /// statement that writes a job (`Store::insert_job` comes here too).
    pub(crate) async fn insert_job_rows(&self, jobs: &[Job]) -> Result<(), StoreError> {
        let doing = "recording a job";
        fn insert(job: &Job) -> AnyQuery<'_> {
            sqlx::query(
                "INSERT INTO jobs (id, kind, tenant_id, created_ms, payload, owner, lease_until, attempts) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&job.id)
            .bind(job.kind.as_str())
            .bind(&job.tenant.0)
            .bind(job.created_ms)
            .bind(to_json(&job.payload))
            .bind(&job.owner)
            .bind(job.lease_until_ms)
            .bind(job.attempts)
        }
        match jobs {
            [] => Ok(()),
            [job] => {
                insert(job).execute(&self.pool).await.doing(doing)?;
                Ok(())
            }
            jobs => {
                let mut tx = self
                    .pool
                    .begin_with(self.backend.begin_write())
                    .await
                    .doing(doing)?;
                for job in jobs {
                    insert(job).execute(&mut *tx).await.doing(doing)?;
                }
                tx.commit().await.doing(doing)
            }
        }
    }

    pub(crate) async fn insert_attempt_row(&self, attempt: &DeliveryAttempt) -> Result<(), StoreError> {
        insert_attempt(attempt)
            .execute(&self.pool)
            .await
            .doing("recording a delivery attempt")?;
        Ok(())
    }

    pub(crate) async fn claim_job_rows(
        &self,
        kind: JobKind,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "UPDATE jobs SET owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM jobs WHERE kind = $3 AND lease_until < $4 \
             ORDER BY created_ms LIMIT $5{}) AND lease_until < $4 RETURNING *",
            self.backend.skip_locked()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(lease_until_ms)
            .bind(kind.as_str())
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .doing("claiming jobs")?;
        rows.iter().map(job_from_row).collect()
    }

    pub(crate) async fn finish_delivery_rows(
        &self,
        owner: &str,
        finished: &[FinishedDelivery],
    ) -> Result<(), StoreError> {
        if finished.is_empty() {
            return Ok(());
        }
        let doing = "recording deliveries' outcomes";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        for done in finished {
            insert_attempt(&done.attempt)
                .execute(&mut *tx)
                .await
                .doing(doing)?;
            match &done.retry {
                None => {
                    sqlx::query("DELETE FROM jobs WHERE id = $1")
                        .bind(&done.job)
                        .execute(&mut *tx)
                        .await
                        .doing(doing)?;
                }
                Some((payload, due_ms)) => {
                    release_job(&done.job, owner, payload, *due_ms)
                        .execute(&mut *tx)
                        .await
                        .doing(doing)?;
                }
            }
        }
        tx.commit().await.doing(doing)
    }

    pub(crate) async fn attempt_rows(
        &self,
        tenant: &TenantId,
        endpoint: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 \
             ORDER BY attempted_ms DESC, id DESC LIMIT $3",
        )
        .bind(&tenant.0)
        .bind(endpoint)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("reading delivery attempts")?;
        rows.iter().map(attempt_from_row).collect()
    }

    pub(crate) async fn prune_attempt_rows(&self, before_ms: i64) -> Result<u64, StoreError> {
        let deleted = sqlx::query("DELETE FROM webhook_deliveries WHERE attempted_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .doing("pruning delivery attempts")?;
        Ok(deleted.rows_affected())
    }
}

/// Writes jobs in the caller's transaction, all in one statement (the rows
/// travel as one JSON array): the outbox rows of a change commit with it.
pub(crate) async fn insert_jobs_in(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    jobs: &[Job],
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = jobs
        .iter()
        .map(|job| {
            serde_json::json!([
                job.id,
                job.kind.as_str(),
                job.tenant.0,
                job.created_ms,
                to_json(&job.payload),
                job.owner,
                job.lease_until_ms,
                job.attempts,
            ])
        })
        .collect();
    let sql = format!(
        "INSERT INTO jobs (id, kind, tenant_id, created_ms, payload, owner, lease_until, attempts) \
         SELECT g.value->>0, g.value->>1, g.value->>2, {}, g.value->>4, g.value->>5, {}, {} FROM {}",
        backend.json_row_int(3),
        backend.json_row_int(6),
        backend.json_row_int(7),
        backend.json_rows(1),
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(conn)
        .await
        .doing("recording jobs")?;
    Ok(())
}
