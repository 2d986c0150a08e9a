//! Logins to the web app. A session is a random 256-bit token in an
//! HttpOnly cookie, stored as its SHA-256 with the tenant it logged in, a
//! CSRF token every form must carry, and an absolute expiry; the store is the
//! truth, so any node serves any session.

use rand::RngCore;

use super::{AppError, Services, now_ms, tenants};
use crate::store::{TenantId, WebSessionRecord};

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub tenant: TenantId,
    pub tenant_slug: String,
    /// Carried by every form of the session and checked on every POST.
    pub csrf: String,
    pub expires_ms: i64,
}

fn random_hex() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

/// Checks the tenant's password and opens a session of `lifetime_ms`;
/// returns the cookie's token and the session.
pub async fn login(
    services: &Services,
    slug: &str,
    password: &str,
    lifetime_ms: i64,
) -> Result<(String, WebSession), AppError> {
    let tenant = tenants::authenticate_password(services, slug.trim(), password).await?;
    let token = random_hex();
    let now = now_ms();
    let record = WebSessionRecord {
        token_hash: tenants::hash_token(&token),
        tenant: tenant.id.clone(),
        tenant_slug: tenant.slug.to_string(),
        csrf: random_hex(),
        created_ms: now,
        expires_ms: now + lifetime_ms,
    };
    services.store.insert_web_session(&record).await?;
    Ok((token, session(record)))
}

fn session(record: WebSessionRecord) -> WebSession {
    WebSession {
        tenant: record.tenant,
        tenant_slug: record.tenant_slug,
        csrf: record.csrf,
        expires_ms: record.expires_ms,
    }
}

/// The session of a cookie's token; `Unauthorized` if unknown or expired.
pub async fn current(services: &Services, token: &str) -> Result<WebSession, AppError> {
    services
        .store
        .web_session(&tenants::hash_token(token), now_ms())
        .await?
        .map(session)
        .ok_or(AppError::Unauthorized)
}

pub async fn logout(services: &Services, token: &str) -> Result<(), AppError> {
    Ok(services
        .store
        .delete_web_session(&tenants::hash_token(token))
        .await?)
}

/// Compares a submitted CSRF token with the session's in constant time.
pub fn csrf_matches(session: &WebSession, submitted: &str) -> bool {
    let (a, b) = (session.csrf.as_bytes(), submitted.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
