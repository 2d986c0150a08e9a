//! The audit log (`audit_log`): entries appended and read by pages, newest
//! first, by their `seq`; nothing updates one. The one delete is the
//! retention prune, which the tables' triggers let through only for
//! entries older than the bound it declares in `audit_prune`, in its own
//! transaction.

use callmeta_app::store::{AuditEntry, AuditPage, AuditQuery, StoreError, TenantId};
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::error::Context;
use crate::rows::{Columns, from_json, to_json};

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: row.int("seq")?,
        tenant: TenantId(row.text("tenant_id")?),
        at_ms: row.int("at_ms")?,
        actor: row.text("actor")?,
        source: row.opt_text("source")?,
        channel: row.text("channel")?,
        action: row.text("action")?,
        object: row.text("object")?,
        detail: from_json("an audit entry's detail", &row.text("detail")?)?,
    })
}

impl SqlStore {
    pub(crate) async fn insert_audit_row(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, at_ms, actor, source, channel, action, object, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&entry.tenant.0)
        .bind(entry.at_ms)
        .bind(&entry.actor)
        .bind(&entry.source)
        .bind(&entry.channel)
        .bind(&entry.action)
        .bind(&entry.object)
        .bind(to_json(&entry.detail))
        .execute(&self.pool)
        .await
        .doing("writing an audit entry")?;
        Ok(())
    }

    pub(crate) async fn audit_rows(
        &self,
        tenant: &TenantId,
        query: &AuditQuery,
    ) -> Result<AuditPage, StoreError> {
        // Only the conditions asked for are written, each with its own
        // parameter: no `$n IS NULL` whose type PostgreSQL cannot infer.
        let mut sql = String::from(
            "SELECT seq, tenant_id, at_ms, actor, source, channel, action, object, detail \
             FROM audit_log WHERE tenant_id = $1",
        );
        let mut n = 1;
        let mut next = |sql: &mut String, condition: &str| {
            n += 1;
            sql.push_str(&condition.replace("$?", &format!("${n}")));
        };
        if query.before.is_some() {
            next(&mut sql, " AND seq < $?");
        }
        if query.actor.is_some() {
            next(&mut sql, " AND actor = $?");
        }
        if query.action.is_some() {
            next(&mut sql, " AND action = $?");
        }
        let prefix_chars = query.object_prefix.as_ref().map(|p| p.chars().count() as i64);
        if query.object_prefix.is_some() {
            // By characters on both databases; a range on the text would
            // depend on PostgreSQL's collation.
            next(&mut sql, " AND substr(object, 1, CAST($? AS INTEGER)) = ");
            next(&mut sql, "$?");
        }
        next(&mut sql, " ORDER BY seq DESC LIMIT $?");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&tenant.0);
        if let Some(before) = query.before {
            q = q.bind(before);
        }
        if let Some(actor) = &query.actor {
            q = q.bind(actor.clone());
        }
        if let Some(action) = &query.action {
            q = q.bind(action.clone());
        }
        if let (Some(prefix), Some(chars)) = (&query.object_prefix, prefix_chars) {
            q = q.bind(chars).bind(prefix.clone());
        }
        let limit = i64::from(query.limit.max(1));
        let rows = q
            .bind(limit + 1)
            .fetch_all(&self.pool)
            .await
            .doing("reading the audit log")?;
        let mut entries = rows.iter().map(entry_from_row).collect::<Result<Vec<_>, _>>()?;
        let more = entries.len() as i64 > limit;
        entries.truncate(limit as usize);
        let next = if more { entries.last().map(|e| e.seq) } else { None };
        Ok(AuditPage { entries, next })
    }

    pub(crate) async fn prune_audit_rows(&self, before_ms: i64) -> Result<u64, StoreError> {
        let doing = "pruning the audit log";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        sqlx::query("INSERT INTO audit_prune (before_ms) VALUES ($1)")
            .bind(before_ms)
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        let deleted = sqlx::query("DELETE FROM audit_log WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await
            .doing(doing)?
            .rows_affected();
        sqlx::query("DELETE FROM audit_prune")
            .execute(&mut *tx)
            .await
            .doing(doing)?;
        tx.commit().await.doing(doing)?;
        Ok(deleted)
    }
}
