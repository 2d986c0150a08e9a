//! A tenant's users (their own logins and roles) and their SSH keys. A
//! user disabled or given another role changes its web sessions in the same
//! transaction, so that no page is served under the old rights.

use callmeta_app::store::{Role, StoreError, TenantId, UserRecord};
use sqlx::any::AnyRow;

use crate::SqlStore;
use crate::error::Context;
use crate::rows::Columns;

const USER_COLUMNS: &str = "tenant_id, name, role, password_hash, disabled, created_ms, updated_ms";

fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    let role = row.text("role")?;
    Ok(UserRecord {
        tenant: TenantId(row.text("tenant_id")?),
        name: row.text("name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown user role {role:?}")))?,
        password_hash: row.text("password_hash")?,
        disabled: row.int("disabled")? != 0,
        created_ms: row.int("created_ms")?,
        updated_ms: row.int("updated_ms")?,
    })
}

impl SqlStore {
    pub(crate) async fn insert_user_row(&self, user: &UserRecord) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&user.tenant.0)
            .bind(&user.name)
            .bind(user.role.as_str())
            .bind(&user.password_hash)
            .bind(i64::from(user.disabled))
            .bind(user.created_ms)
            .bind(user.updated_ms)
            .execute(&self.pool)
            .await
            .doing("adding a user")?;
        Ok(())
    }

    pub(crate) async fn user_rows(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY name");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&tenant.0)
            .fetch_all(&self.pool)
            .await
            .doing("listing users")?
            .iter()
            .map(user_from_row)
            .collect()
    }

    pub(crate) async fn user_row(&self, tenant: &TenantId, name: &str) -> Result<UserRecord, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND name = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&tenant.0)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .doing("reading a user")?
            .ok_or(StoreError::NotFound)?;
        user_from_row(&row)
    }

    pub(crate) async fn update_user_row(&self, user: &UserRecord) -> Result<(), StoreError> {
        let doing = "changing a user";
        let mut tx = self
            .pool
            .begin_with(self.backend.begin_write())
            .await
            .doing(doing)?;
        let updated = sqlx::query(
            "UPDATE users SET role = $1, password_hash = $2, disabled = $3, updated_ms = $4 \
             WHERE tenant_id = $5 AND name = $6",
        )
        .bind(user.role.as_str())
        .bind(&user.password_hash)
        .bind(i64::from(user.disabled))
        .bind(user.updated_ms)
        .bind(&user.tenant.0)
        .bind(&user.name)
        .execute(&mut *tx)
        .await
        .doing(doing)?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        if user.disabled {
            sqlx::query("DELETE FROM web_sessions WHERE tenant_id = $1 AND user_name = $2")
                .bind(&user.tenant.0)
                .bind(&user.name)
                .execute(&mut *tx)
                .await
                .doing(doing)?;
        } else {
            sqlx::query("UPDATE web_sessions SET role = $1 WHERE tenant_id = $2 AND user_name = $3")
                .bind(user.role.as_str())
                .bind(&user.tenant.0)
                .bind(&user.name)
                .execute(&mut *tx)
                .await
                .doing(doing)?;
        }
        tx.commit().await.doing(doing)?;
        Ok(())
    }

    pub(crate) async fn add_user_key_row(
        &self,
        tenant: &TenantId,
        user: &str,
        public_key: &str,
        comment: &str,
        created_ms: i64,
    ) -> Result<(), StoreError> {
        // A key identifies one login of the tenant: adding it again for
        // another login is a conflict, not a silent no-op.
        let added = sqlx::query(
            "INSERT INTO tenant_keys (tenant_id, public_key, comment, created_ms, user_name) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, public_key) DO NOTHING",
        )
        .bind(&tenant.0)
        .bind(public_key)
        .bind(comment)
        .bind(created_ms)
        .bind(user)
        .execute(&self.pool)
        .await
        .doing("adding an SSH key")?
        .rows_affected();
        if added == 0
            && !self
                .user_key_rows(tenant, user)
                .await?
                .iter()
                .any(|k| k == public_key)
        {
            return Err(StoreError::Conflict(
                "adding an SSH key: another login of the tenant already has this key".into(),
            ));
        }
        Ok(())
    }

    pub(crate) async fn user_key_rows(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT public_key FROM tenant_keys WHERE tenant_id = $1 AND user_name = $2 ORDER BY created_ms",
        )
        .bind(&tenant.0)
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .doing("reading SSH keys")?;
        rows.iter().map(|r| r.text("public_key")).collect()
    }
}
