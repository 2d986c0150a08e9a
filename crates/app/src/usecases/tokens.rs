//! API tokens and what their roles allow. A tenant has any number of
//! tokens, each with a name, a [`Role`] and an optional expiry; the secret
//! (256 random bits) is shown once, when the token is created, and stored
//! as its SHA-256 only.
//!
//! What a role may do is decided here and nowhere else: [`Role::allows`]
//! is the whole table, [`authenticate`] checks the token and the action in
//! one call, and the adapters only name the [`Action`] a request is.
//!
//! # Revocation within a second on every node
//!
//! Authenticating a request must not cost a database read each time, yet a
//! deleted or expired token must be refused everywhere within a second. The
//! [`TokenCache`] keeps a token for at most [`CACHE_TTL_MS`] (one second on
//! the application's clock), and:
//! - a deletion on this node removes the token from this node's cache at
//!   once;
//! - on PostgreSQL, a deletion is also announced in its transaction
//!   (`Store::token_changes`, NOTIFY), and every node drops its whole cache
//!   when the announcement arrives (or when the listening connection was
//!   lost, since one may have been missed); the one-second bound then holds
//!   even if a node's clock is slow to move;
//! - an expiry is checked against the clock on every cached hit, not only
//!   when the token is read from the store.
//!
//! So a busy client costs one read per token per second, and `last_used` is
//! written at most once a minute per token ([`LAST_USED_EVERY_MS`]).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::audit::{self, Actor, actions};
use super::{AppError, Services, new_id};
use crate::store::{StoreError, Tenant, TenantId, TokenRecord};

pub use crate::store::Role;

/// How long an authenticated token is trusted without reading the store.
pub const CACHE_TTL_MS: i64 = 1_000;
/// How stale a token's `last_used` may get before a use writes it again.
pub const LAST_USED_EVERY_MS: i64 = 60_000;
/// The longest expiry a token may be given.
pub const MAX_EXPIRES_IN_DAYS: u32 = 3_650;
const MAX_NAME_CHARS: usize = 100;
const DAY_MS: i64 = 86_400_000;

/// What a request does, as far as roles are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read calls, their audio, their list.
    ReadCalls,
    /// Create a call.
    CreateCalls,
    /// Read the tables, their versions and reports, and back-fills.
    ReadTables,
    /// Upload a new version of a table.
    UploadTables,
    /// Change a table's settings, roll back a version, start a back-fill.
    ConfigureTables,
    /// Read the tenant's settings (SIPREC key mapping).
    ReadSettings,
    /// Change the tenant's settings.
    ChangeSettings,
    /// Create, list and delete API tokens.
    ManageTokens,
    /// Read the audit log (every token's and login's doings).
    ReadAudit,
    /// Erase a call or delete a table, with what they stored.
    Erase,
    /// Change the tenant's retention policy.
    ManageRetention,
    /// Create, list, change and disable users.
    ManageUsers,
    /// Add, test and remove webhook endpoints, read their deliveries.
    ManageWebhooks,
    /// Preview what a back-fill would change, changing nothing.
    DryRunBackfill,
}

impl Role {
    /// The whole role table: `admin` may do anything; an `analyst` reads
    /// (calls, tables, settings) and previews back-fills, but neither
    /// uploads nor changes anything;
    /// an `uploader` sends calls and table versions and reads the tables
    /// (to see an upload's report), but reads no call.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Analyst => matches!(action, ReadCalls | ReadTables | ReadSettings | DryRunBackfill),
            Role::Uploader => matches!(action, CreateCalls | UploadTables | ReadTables),
        }
    }
}

/// Who a request comes from: the tenant and the token it used.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: Tenant,
    pub token: TokenRecord,
}

/// A token just created: the only time its secret is seen.
#[derive(Debug)]
pub struct CreatedToken {
    pub record: TokenRecord,
    pub secret: String,
}

/// Recently authenticated tokens, keyed by the SHA-256 of their secret,
/// each with the time it was read from the store (on the application's
/// clock). See the module's documentation for why it is safe.
pub struct TokenCache {
    /// Read by every request, written once a second per token: a read
    /// lock on the hot path.
    entries: RwLock<HashMap<String, (Principal, i64)>>,
    /// Moves when another node deleted a token (`Store::token_changes`).
    changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// The value of `changes` the entries were cached under.
    seen: AtomicU64,
}

impl TokenCache {
    pub fn new(changes: Option<tokio::sync::watch::Receiver<u64>>) -> Self {
        Self {
            entries: RwLock::default(),
            seen: AtomicU64::new(changes.as_ref().map_or(0, |c| *c.borrow())),
            changes,
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, (Principal, i64)>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, hash: &str, now_ms: i64) -> Option<Principal> {
        if let Some(changes) = &self.changes {
            let now_seen = *changes.borrow();
            if self.seen.swap(now_seen, Ordering::AcqRel) != now_seen {
                self.write().clear();
                return None;
            }
        }
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let (principal, at) = map.get(hash)?;
        let fresh = (0..CACHE_TTL_MS).contains(&(now_ms - at));
        (fresh && !expired(&principal.token, now_ms)).then(|| principal.clone())
    }

    fn put(&self, hash: String, principal: Principal, now_ms: i64) {
        let mut map = self.write();
        if map.len() > 10_000 {
            map.retain(|_, (_, at)| now_ms - *at < CACHE_TTL_MS);
        }
        map.insert(hash, (principal, now_ms));
    }

    fn forget(&self, id: &str) {
        self.write().retain(|_, (p, _)| p.token.id != id);
    }
}

fn expired(token: &TokenRecord, now_ms: i64) -> bool {
    token.expires_ms.is_some_and(|end| now_ms >= end)
}

/// The tenant behind a token's secret, if the token exists, has not expired
/// and its role allows `action`: `Unauthorized` for an unknown, deleted or
/// expired token, `Forbidden` for a role that does not allow the action.
#[tracing::instrument(skip_all, fields(tenant = tracing::field::Empty, token = tracing::field::Empty))]
pub async fn authenticate(services: &Services, secret: &str, action: Action) -> Result<Principal, AppError> {
    let principal = principal(services, secret).await?;
    let span = tracing::Span::current();
    span.record("tenant", tracing::field::display(&principal.tenant.id));
    span.record("token", principal.token.id.as_str());
    if !principal.token.role.allows(action) {
        return Err(AppError::Forbidden(format!(
            "a token with the role {} may not do this",
            principal.token.role.as_str()
        )));
    }
    Ok(principal)
}

async fn principal(services: &Services, secret: &str) -> Result<Principal, AppError> {
    let hash = super::tenants::hash_token(secret);
    let now = services.now_ms();
    if let Some(p) = services.tokens.get(&hash, now) {
        return Ok(p);
    }
    let (tenant, mut token) = match services.store.token_by_hash(&hash).await {
        Ok(found) => found,
        Err(StoreError::NotFound) => return Err(AppError::Unauthorized),
        Err(e) => return Err(e.into()),
    };
    if expired(&token, now) {
        return Err(AppError::Unauthorized);
    }
    if token.last_used_ms.is_none_or(|at| now - at >= LAST_USED_EVERY_MS) {
        // A failed write costs the request nothing: the next use retries.
        match services.store.touch_token(&token.id, now).await {
            Ok(()) => token.last_used_ms = Some(now),
            Err(e) => tracing::warn!(error = %e, "could not record the token's use"),
        }
    }
    let p = Principal { tenant, token };
    services.tokens.put(hash, p.clone(), now);
    Ok(p)
}

/// A new token for the tenant: `name` (1 to 100 characters, no control
/// characters), `role` (`admin`, `analyst`, `uploader`), and an expiry in
/// days from now (1 to 3650; none: it does not expire).
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn create_token(
    services: &Services,
    tenant: &TenantId,
    name: &str,
    role: &str,
    expires_in_days: Option<i64>,
    actor: &Actor,
) -> Result<CreatedToken, AppError> {
    // Counted before trimming, as the API document states it.
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::invalid(
            "name",
            format!("the name must have at most {MAX_NAME_CHARS} characters"),
        ));
    }
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid("name", "the name must not be blank"));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "the name must not contain control characters",
        ));
    }
    let role = Role::parse(role)
        .ok_or_else(|| AppError::invalid("role", "the role must be one of admin, analyst, uploader"))?;
    let now = services.now_ms();
    let expires_ms = match expires_in_days {
        None => None,
        Some(days) if (1..=i64::from(MAX_EXPIRES_IN_DAYS)).contains(&days) => Some(now + days * DAY_MS),
        Some(_) => {
            return Err(AppError::invalid(
                "expires_in_days",
                format!("expires_in_days must be between 1 and {MAX_EXPIRES_IN_DAYS}"),
            ));
        }
    };
    let secret = super::tenants::new_secret();
    let record = TokenRecord {
        id: new_id(),
        tenant: tenant.clone(),
        name: name.to_string(),
        role,
        created_ms: now,
        expires_ms,
        last_used_ms: None,
    };
    services
        .store
        .insert_token(&record, &super::tenants::hash_token(&secret))
        .await?;
    tracing::info!(token = %record.id, role = role.as_str(), "API token created");
    let detail = serde_json::json!({
        "name": &record.name,
        "role": role.as_str(),
        "expires": record.expires_ms.map(super::calls::format_timestamp),
    });
    audit::record(
        services,
        tenant,
        actor,
        actions::TOKEN_CREATE,
        token_object(&record.id),
        detail,
    )
    .await;
    Ok(CreatedToken { record, secret })
}

/// The tenant's tokens, oldest first (never their secrets).
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn list_tokens(services: &Services, tenant: &TenantId) -> Result<Vec<TokenRecord>, AppError> {
    Ok(services.store.tokens(tenant).await?)
}

/// Deletes one of the tenant's tokens: refused by this node at once, by
/// every other within a second (see the module's documentation).
#[tracing::instrument(skip_all, fields(tenant = %tenant, token = id))]
pub async fn revoke_token(
    services: &Services,
    tenant: &TenantId,
    id: &str,
    actor: &Actor,
) -> Result<(), AppError> {
    // Its name, for the audit log (a deleted token's id alone says little).
    let name = services
        .store
        .tokens(tenant)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.name);
    if !services.store.delete_token(tenant, id).await? {
        return Err(AppError::NotFound(format!("token {id:?}")));
    }
    services.tokens.forget(id);
    tracing::info!("API token revoked");
    let detail = serde_json::json!({"name": name});
    audit::record(
        services,
        tenant,
        actor,
        actions::TOKEN_DELETE,
        token_object(id),
        detail,
    )
    .await;
    Ok(())
}

fn token_object(id: &str) -> String {
    format!("tokens/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_table() {
        use Action::*;
        let all = [
            ReadCalls,
            CreateCalls,
            ReadTables,
            UploadTables,
            ConfigureTables,
            ReadSettings,
            ChangeSettings,
            ManageTokens,
            ReadAudit,
            Erase,
            ManageRetention,
            ManageUsers,
            ManageWebhooks,
            DryRunBackfill,
        ];
        let table: Vec<String> = Role::ALL
            .iter()
            .map(|role| {
                let allowed: Vec<String> = all
                    .iter()
                    .filter(|a| role.allows(**a))
                    .map(|a| format!("{a:?}"))
                    .collect();
                format!("{}: {}", role.as_str(), allowed.join(" "))
            })
            .collect();
        assert_eq!(
            table,
            [
                "admin: ReadCalls CreateCalls ReadTables UploadTables ConfigureTables ReadSettings ChangeSettings ManageTokens \
                 ReadAudit Erase ManageRetention ManageUsers ManageWebhooks DryRunBackfill",
                "analyst: ReadCalls ReadTables ReadSettings DryRunBackfill",
                "uploader: CreateCalls ReadTables UploadTables",
            ]
        );
    }
}
