//! Tenants and their credentials. API tokens (their use and roles are in
//! `tokens`) are 256 random bits shown once and stored as their SHA-256 (a token is not a password: it has full entropy, so a
//! fast hash is enough and lets every request be checked cheaply). Passwords are
//! hashed with argon2id.

use std::net::IpAddr;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use callmeta_core::domain::TenantSlug;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::users::{self, Identity};
use super::{AppError, Services, audit, new_id};
use crate::store::{StoreError, Tenant, TenantId};

#[derive(Debug, Serialize)]
pub struct CreatedTenant {
    pub tenant: String,
    pub tenant_id: String,
    pub api_token: String,
    pub ftp_user: String,
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new API token's secret: 256 random bits, in hex after `cm_`.
pub(crate) fn new_secret() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!("cm_{}", hex::encode(raw))
}

#[tracing::instrument(skip_all, fields(slug = slug))]
pub async fn create_tenant(
    services: &Services,
    slug: &str,
    password: &str,
) -> Result<CreatedTenant, AppError> {
    let slug = TenantSlug::parse(slug).map_err(|e| AppError::invalid("slug", e.to_string()))?;
    if password.chars().count() < 8 {
        return Err(AppError::invalid(
            "password",
            "the password must have at least 8 characters",
        ));
    }
    let password = password.to_string();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(anyhow::Error::new)??;
    let token = new_secret();
    let tenant = Tenant {
        id: TenantId(new_id()),
        slug: slug.clone(),
        password_hash,
        created_ms: services.now_ms(),
    };
    services.store.create_tenant(&tenant, &hash_token(&token)).await?;
    Ok(CreatedTenant {
        tenant: slug.to_string(),
        tenant_id: tenant.id.0,
        api_token: token,
        ftp_user: slug.to_string(),
    })
}

fn hash_password(password: &str) -> Result<String, AppError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("encoding salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?
        .to_string())
}

/// A login (web app, FTP, SFTP) from `from`: the tenant's own (its slug
/// and password, the tenant's first admin) or one of its users'
/// (`NAME@TENANT`, see [`super::users`]). Throttled per (login, address) by
/// [`super::logins`]: `Throttled` while the pair must wait, `Unauthorized`
/// for an unknown tenant or user, a disabled user or a wrong password. A
/// checked login to an existing tenant is written to its audit log
/// (succeeded, or failed within the log's bound: see [`super::audit`]),
/// under the login name and `channel`.
#[tracing::instrument(skip_all, fields(user = login, %from))]
pub async fn log_in(
    services: &Services,
    login: &str,
    password: &str,
    from: IpAddr,
    channel: audit::Channel,
) -> Result<Identity, AppError> {
    if let Err(wait) = services.logins.check(login, from) {
        tracing::warn!(user = login, %from, "login refused: too many failures");
        return Err(AppError::Throttled {
            retry_after_secs: wait.as_secs_f64().ceil() as u64,
        });
    }
    let (user, slug) = users::parse_login(login);
    let name = users::login_name(slug, user.as_deref());
    let actor = audit::Actor::new(name, Some(from), channel);
    match authenticate_password(services, slug, user.as_deref(), password).await? {
        Ok(identity) => {
            services.logins.succeeded(login, from);
            audit::login_succeeded(services, &identity.tenant.id, &actor).await;
            Ok(identity)
        }
        Err(known) => {
            services.logins.failed(login, from);
            tracing::info!(user = login, %from, "login failed");
            if let Some(tenant) = known {
                audit::login_failed(services, &tenant, &actor).await;
            }
            Err(AppError::Unauthorized)
        }
    }
}

/// Checks a login's password, unthrottled: adapters call [`log_in`].
/// `Ok(Err(Some(id)))`: a wrong password (or an unknown or disabled user)
/// of an existing tenant; `Ok(Err(None))`: no such tenant.
///
/// An unknown tenant or user costs the same hash as a known one (checked
/// against a hash of no one's password), so that the time of the answer
/// does not say which tenants and users exist.
async fn authenticate_password(
    services: &Services,
    slug: &str,
    user: Option<&str>,
    password: &str,
) -> Result<Result<Identity, Option<TenantId>>, AppError> {
    let tenant = match TenantSlug::parse(slug) {
        Ok(slug) => match services.store.tenant_by_slug(&slug).await {
            Ok(t) => Some(t),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) => None,
    };
    let identity = match (&tenant, user) {
        (None, _) => None,
        (Some(tenant), None) => Some((
            Identity::tenant_login(tenant.clone()),
            tenant.password_hash.clone(),
        )),
        (Some(tenant), Some(name)) => match services.store.user(&tenant.id, name).await {
            Ok(u) if !u.disabled => Some((
                Identity {
                    tenant: tenant.clone(),
                    user: Some(u.name),
                    role: u.role,
                },
                u.password_hash,
            )),
            Ok(_) | Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let hash = identity.as_ref().map(|(_, hash)| hash.clone());
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || {
        let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
        PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(anyhow::Error::new)?;
    Ok(match identity {
        Some((identity, _)) if ok => Ok(identity),
        _ => Err(tenant.map(|t| t.id)),
    })
}

/// Hashes a password with argon2id, off the async threads.
pub(crate) async fn hash_password_blocking(password: &str) -> Result<String, AppError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(anyhow::Error::new)?
}

/// An argon2id hash, with the parameters of real ones, of a random password
/// nobody knows: what an unknown tenant's login is checked against.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        hash_password(&hex::encode(raw)).unwrap_or_default()
    })
}

/// A tenant by its slug; `NotFound` names the slug.
#[tracing::instrument(skip_all, fields(slug = slug))]
pub async fn tenant_by_slug(services: &Services, slug: &str) -> Result<Tenant, AppError> {
    let parsed = TenantSlug::parse(slug).map_err(|_| AppError::NotFound(format!("tenant {slug:?}")))?;
    match services.store.tenant_by_slug(&parsed).await {
        Ok(t) => Ok(t),
        Err(StoreError::NotFound) => Err(AppError::NotFound(format!("tenant {slug:?}"))),
        Err(e) => Err(e.into()),
    }
}
