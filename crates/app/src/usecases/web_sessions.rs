//! Logins to the web app. A session is a random 256-bit token in an
//! HttpOnly cookie, stored as its SHA-256 with the tenant it logged in, a
//! CSRF token every form must carry, an absolute end and an idle lifetime;
//! the store is the truth, so any node serves any session.

use std::net::IpAddr;

use rand::RngCore;

use super::{AppError, Services, tenants};
use crate::store::{Role, TenantId, WebSessionRecord};

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub tenant: TenantId,
    pub tenant_slug: String,
    /// The user it logged in as; `None` for the tenant's own login.
    pub user: Option<String>,
    /// What it may do (changed at once when an admin changes the user).
    pub role: Role,
    /// Carried by every form of the session and checked on every POST.
    pub csrf: String,
    pub expires_ms: i64,
}

fn random_hex() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// From the login on, however busy the session is.
    pub absolute_ms: i64,
    /// Without a request.
    pub idle_ms: i64,
}

/// The longest a session's last use goes unrecorded: a page view writes to
/// the store at most this often, so the idle end is this precise.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Checks the login's password (the tenant's own or a user's `NAME@TENANT`;
/// throttled per login and address, like FTP and SFTP logins) and opens a
/// session; returns the cookie's token and the session.
#[tracing::instrument(skip_all, fields(user = slug, %from))]
pub async fn login(
    services: &Services,
    slug: &str,
    password: &str,
    from: IpAddr,
    lifetime: Lifetime,
) -> Result<(String, WebSession), AppError> {
    let identity = tenants::log_in(services, slug.trim(), password, from, super::audit::Channel::Web).await?;
    let tenant = identity.tenant;
    let token = random_hex();
    let now = services.now_ms();
    let record = WebSessionRecord {
        token_hash: tenants::hash_token(&token),
        tenant: tenant.id.clone(),
        tenant_slug: tenant.slug.to_string(),
        csrf: random_hex(),
        created_ms: now,
        expires_ms: now.saturating_add(lifetime.absolute_ms),
        last_seen_ms: now,
        idle_ms: lifetime.idle_ms.max(1),
        user_name: identity.user.unwrap_or_default(),
        role: identity.role,
    };
    services.store.insert_web_session(&record).await?;
    Ok((token, session(record)))
}

fn session(record: WebSessionRecord) -> WebSession {
    WebSession {
        tenant: record.tenant,
        tenant_slug: record.tenant_slug,
        user: Some(record.user_name).filter(|u| !u.is_empty()),
        role: record.role,
        csrf: record.csrf,
        expires_ms: record.expires_ms,
    }
}

/// The session of a cookie's token, now used; `Unauthorized` if unknown,
/// past its absolute end or idle too long.
#[tracing::instrument(skip_all, fields(tenant = tracing::field::Empty))]
pub async fn current(services: &Services, token: &str) -> Result<WebSession, AppError> {
    let hash = tenants::hash_token(token);
    let now = services.now_ms();
    let record = services
        .store
        .web_session(&hash, now)
        .await?
        .ok_or(AppError::Unauthorized)?;
    tracing::Span::current().record("tenant", tracing::field::display(&record.tenant));
    // Recording every request would make each page view a write; a quarter
    // of the idle lifetime (at most a minute) keeps the idle end honest.
    if now - record.last_seen_ms >= (record.idle_ms / 4).min(TOUCH_EVERY_MS) {
        services.store.touch_web_session(&hash, now).await?;
    }
    Ok(session(record))
}

#[tracing::instrument(skip_all)]
pub async fn logout(services: &Services, token: &str) -> Result<(), AppError> {
    Ok(services
        .store
        .delete_web_session(&tenants::hash_token(token))
        .await?)
}

impl WebSession {
    /// The name it logged in with (`alice@acme`, or the slug).
    pub fn login_name(&self) -> String {
        super::users::login_name(&self.tenant_slug, self.user.as_deref())
    }
}

/// Compares a submitted CSRF token with the session's in constant time.
pub fn csrf_matches(session: &WebSession, submitted: &str) -> bool {
    let (a, b) = (session.csrf.as_bytes(), submitted.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
