//! API tokens: named, with a role and an optional expiry, found by the
//! SHA-256 of their secret. A deletion is announced to every node in its
//! transaction (PostgreSQL's NOTIFY), so that none keeps accepting the token
//! from its cache. Also the job queue depth the metrics show (the one
//! operations query).

use callmeta_app::store::{JobKind, Role, StoreError, Tenant, TenantId, TokenRecord};
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::dialect::TOKENS_CHANNEL;
use crate::error::Context;
use crate::rows::Columns;

const TOKEN_COLUMNS: &str = "k.id, k.tenant_id, k.name, k.role, k.created_ms, k.expires_ms, k.last_used_ms";

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let role = row.text("role")?;
    Ok(TokenRecord {
        id: row.text("id")?,
        tenant: TenantId(row.text("tenant_id")?),
        name: row.text("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown token role {role:?}")))?,
        created_ms: row.int("created_ms")?,
        expires_ms: row.opt_int("expires_ms")?,
        last_used_ms: row.opt_int("last_used_ms")?,
    })
}

impl SqlStore {
    pub(crate) async fn insert_token_row(
        &self,
        token: &TokenRecord,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, tenant_id, name, role, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.id)
        .bind(token_hash)
        .bind(&token.tenant.0)
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(token.created_ms)
        .bind(token.expires_ms)
        .execute(&self.pool)
        .await
        .doing("adding an API token")?;
        Ok(())
    }

    pub(crate) async fn token_rows(&self, tenant: &TenantId) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens k WHERE k.tenant_id = $1 ORDER BY k.created_ms, k.id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&tenant.0)
            .fetch_all(&self.pool)
            .await
            .doing("listing API tokens")?
            .iter()
            .map(token_from_row)
            .collect()
    }

    pub(crate) async fn delete_token_row(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let doing = "deleting an API token";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        let deleted = sqlx::query("DELETE FROM api_tokens WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant.0)
            .bind(id)
            .execute(&mut *tx)
            .await
            .doing(doing)?
            .rows_affected();
        if deleted > 0
            && let Some(notify) = self.backend.notify()
        {
            sqlx::query(notify)
                .bind(TOKENS_CHANNEL)
                .bind(id)
                .execute(&mut *tx)
                .await
                .doing(doing)?;
        }
        tx.commit().await.doing(doing)?;
        Ok(deleted > 0)
    }

    pub(crate) async fn token_row_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<(Tenant, TokenRecord), StoreError> {
        let sql = format!(
            "SELECT t.id AS t_id, t.slug, t.password_hash, t.created_ms AS t_created_ms, {TOKEN_COLUMNS} \
             FROM api_tokens k JOIN tenants t ON t.id = k.tenant_id WHERE k.token_hash = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .doing("reading an API token")?
            .ok_or(StoreError::NotFound)?;
        let token = token_from_row(&row)?;
        Ok((tenant_from_aliased(&row)?, token))
    }

    pub(crate) async fn touch_token_row(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_tokens SET last_used_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await
            .doing("recording an API token's use")?;
        Ok(())
    }
}

impl SqlStore {
    pub(crate) async fn job_count_rows(&self) -> Result<Vec<(JobKind, u64)>, StoreError> {
        let rows = sqlx::query("SELECT kind, COUNT(*) AS n FROM jobs GROUP BY kind")
            .fetch_all(&self.pool)
            .await
            .doing("counting jobs")?;
        let mut counts = Vec::new();
        for row in &rows {
            // A kind this version does not know is another version's.
            if let Some(kind) = JobKind::parse(&row.text("kind")?) {
                counts.push((kind, u64::try_from(row.int("n")?).unwrap_or(0)));
            }
        }
        Ok(counts)
    }
}

/// The tenant of a token row, whose tenant columns are aliased (`t_id`,
/// `t_created_ms`) so as not to clash with the token's own.
fn tenant_from_aliased(row: &AnyRow) -> Result<Tenant, StoreError> {
    let slug = row.text("slug")?;
    Ok(Tenant {
        id: TenantId(row.text("t_id")?),
        slug: callmeta_core::domain::TenantSlug::parse(&slug)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        password_hash: row.text("password_hash")?,
        created_ms: row.int("t_created_ms")?,
    })
}
