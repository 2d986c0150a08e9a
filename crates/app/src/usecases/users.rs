//! A tenant's users: each its own login and [`Role`], on every channel
//! (web app, FTP, SFTP). The tenant's own login (its slug and password)
//! stays what it was, the tenant's first admin, so that nothing set up
//! before users existed breaks.
//!
//! # Login names
//!
//! A user logs in as `NAME@TENANT` (`alice@acme`); the tenant's own login is
//! the bare slug (`acme`). A name is 1 to 64 characters of lowercase ASCII
//! letters, digits, `.`, `-` and `_`, starting with a letter or a digit; at
//! login it is read in lowercase, whatever the case typed. The audit log names a
//! user by its login name, so `alice@acme` and `acme` are never confused.
//!
//! # What a login may do
//!
//! An [`Identity`] carries its role; adapters name the [`Action`] each
//! request is and ask [`Identity::require`], which answers with the same
//! `Forbidden` (403 on HTTP, 550 on FTP, permission denied on SFTP) on every
//! channel. A disabled user cannot log in anywhere, and its web sessions end
//! in the transaction that disables it; FTP and SFTP sessions, which hold
//! no stored session, ask [`require_now`] on each write.

use serde::Serialize;

use super::audit::{self, Actor};
use super::tokens::Action;
use super::{AppError, Services, tenants};
use crate::store::{Role, StoreError, Tenant, TenantId, UserRecord};

/// Users a tenant may have.
pub const MAX_USERS: usize = 1_000;
const MAX_NAME_CHARS: usize = 64;

/// Who logged in: the tenant, the user (none for the tenant's own login)
/// and the role.
#[derive(Debug, Clone)]
pub struct Identity {
    pub tenant: Tenant,
    pub user: Option<String>,
    pub role: Role,
}

impl Identity {
    /// The tenant's own login: its first admin.
    pub fn tenant_login(tenant: Tenant) -> Self {
        Self {
            tenant,
            user: None,
            role: Role::Admin,
        }
    }

    /// The name it logs in with: `alice@acme`, or `acme` for the tenant's
    /// own login.
    pub fn login_name(&self) -> String {
        login_name(self.tenant.slug.as_str(), self.user.as_deref())
    }

    /// `Forbidden`, saying which role, unless the role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), AppError> {
        require(self.role, action)
    }
}

/// `Forbidden`, saying which role, unless `role` allows `action`.
pub fn require(role: Role, action: Action) -> Result<(), AppError> {
    if role.allows(action) {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "the role {} may not do this",
            role.as_str()
        )))
    }
}

/// `Forbidden` unless the login (`alice@acme`, or a tenant's slug) may do
/// `action` now: a session that outlives its login (FTP, SFTP) asks on each
/// write, so that a user disabled or given another role since it logged in
/// is held to that at once. The tenant's own login is always its admin.
pub async fn require_now(services: &Services, login: &str, action: Action) -> Result<(), AppError> {
    let (user, slug) = parse_login(login);
    let Some(user) = user else {
        return require(Role::Admin, action);
    };
    let gone = || AppError::Forbidden(format!("the login {login} is no longer enabled"));
    let tenant = match tenants::tenant_by_slug(services, slug).await {
        Ok(tenant) => tenant,
        Err(AppError::NotFound(_)) => return Err(gone()),
        Err(e) => return Err(e),
    };
    match services.store.user(&tenant.id, &user).await {
        Ok(record) if !record.disabled => require(record.role, action),
        Ok(_) | Err(StoreError::NotFound) => Err(gone()),
        Err(e) => Err(e.into()),
    }
}

/// `acme` or `alice@acme`.
pub fn login_name(slug: &str, user: Option<&str>) -> String {
    match user {
        Some(user) => format!("{user}@{slug}"),
        None => slug.to_string(),
    }
}

/// A login name split into its user (if any) and tenant slug, both trimmed
/// and the user in lowercase.
pub fn parse_login(login: &str) -> (Option<String>, &str) {
    match login.trim().rsplit_once('@') {
        Some((user, slug)) => (Some(user.trim().to_lowercase()), slug.trim()),
        None => (None, login.trim()),
    }
}

/// A user as shown (never its password).
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub name: String,
    /// What it logs in with on the web app, FTP and SFTP.
    pub login: String,
    pub role: &'static str,
    pub disabled: bool,
    pub created: String,
    pub updated: String,
}

fn view(slug: &str, user: &UserRecord) -> UserView {
    UserView {
        name: user.name.clone(),
        login: login_name(slug, Some(&user.name)),
        role: user.role.as_str(),
        disabled: user.disabled,
        created: super::calls::format_timestamp(user.created_ms),
        updated: super::calls::format_timestamp(user.updated_ms),
    }
}

/// The longest password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Checks a user name (see the module's documentation): as given, since it
/// is what the user will type.
pub fn check_name(name: &str) -> Result<String, AppError> {
    let invalid = |m: &str| Err(AppError::invalid("name", m));
    if name.chars().count() > MAX_NAME_CHARS {
        return invalid("the name must have at most 64 characters");
    }
    let Some(first) = name.chars().next() else {
        return invalid("the name must not be empty");
    };
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return invalid("the name must start with a letter a-z or a digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
    {
        return invalid("the name may only hold letters a-z, digits, '.', '-' and '_'");
    }
    Ok(name.to_string())
}

fn check_password(password: &str) -> Result<(), AppError> {
    if password.chars().count() < 8 {
        return Err(AppError::invalid(
            "password",
            "the password must have at least 8 characters",
        ));
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(AppError::invalid(
            "password",
            format!("the password must have at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

fn parse_role(role: &str) -> Result<Role, AppError> {
    Role::parse(role)
        .ok_or_else(|| AppError::invalid("role", "the role must be one of admin, analyst, uploader"))
}

fn object(name: &str) -> String {
    format!("users/{name}")
}

/// Adds a user to the tenant, with its role and password.
#[tracing::instrument(skip_all, fields(tenant = %tenant.id, user = name))]
pub async fn create_user(
    services: &Services,
    tenant: &Tenant,
    name: &str,
    role: &str,
    password: &str,
    actor: &Actor,
) -> Result<UserView, AppError> {
    let name = check_name(name)?;
    let role = parse_role(role)?;
    check_password(password)?;
    if services.store.users(&tenant.id).await?.len() >= MAX_USERS {
        return Err(AppError::Conflict(format!(
            "the tenant already has {MAX_USERS} users, the most it may have"
        )));
    }
    let password_hash = tenants::hash_password_blocking(password).await?;
    let now = services.now_ms();
    let record = UserRecord {
        tenant: tenant.id.clone(),
        name: name.clone(),
        role,
        password_hash,
        disabled: false,
        created_ms: now,
        updated_ms: now,
    };
    match services.store.insert_user(&record).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(AppError::Conflict(format!("the user {name:?} already exists")));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(role = role.as_str(), "user created");
    let detail = serde_json::json!({"role": role.as_str()});
    audit::record(
        services,
        &tenant.id,
        actor,
        audit::actions::USER_CREATE,
        object(&name),
        detail,
    )
    .await;
    Ok(view(tenant.slug.as_str(), &record))
}

/// The tenant's users, by name.
#[tracing::instrument(skip_all, fields(tenant = %tenant.id))]
pub async fn list_users(services: &Services, tenant: &Tenant) -> Result<Vec<UserView>, AppError> {
    Ok(services
        .store
        .users(&tenant.id)
        .await?
        .iter()
        .map(|u| view(tenant.slug.as_str(), u))
        .collect())
}

/// What to change in a user; `None` leaves it as it is.
#[derive(Debug, Default, Clone)]
pub struct UserChange {
    pub role: Option<String>,
    pub password: Option<String>,
    pub disabled: Option<bool>,
}

/// Changes a user's role, password or disabled flag. Disabling it ends its
/// web sessions at once; a new role applies to them at once.
#[tracing::instrument(skip_all, fields(tenant = %tenant.id, user = name))]
pub async fn update_user(
    services: &Services,
    tenant: &Tenant,
    name: &str,
    change: UserChange,
    actor: &Actor,
) -> Result<UserView, AppError> {
    let mut user = find(services, &tenant.id, name).await?;
    let mut detail = serde_json::Map::new();
    if let Some(role) = &change.role {
        user.role = parse_role(role)?;
        detail.insert("role".into(), role.as_str().into());
    }
    if let Some(password) = &change.password {
        check_password(password)?;
        user.password_hash = tenants::hash_password_blocking(password).await?;
        detail.insert("password".into(), "changed".into());
    }
    if let Some(disabled) = change.disabled {
        user.disabled = disabled;
        detail.insert("disabled".into(), disabled.into());
    }
    user.updated_ms = services.now_ms();
    match services.store.update_user(&user).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(AppError::NotFound(format!("user {name:?}"))),
        Err(e) => return Err(e.into()),
    }
    tracing::info!("user changed");
    audit::record(
        services,
        &tenant.id,
        actor,
        audit::actions::USER_CHANGE,
        object(&user.name),
        serde_json::Value::Object(detail),
    )
    .await;
    Ok(view(tenant.slug.as_str(), &user))
}

async fn find(services: &Services, tenant: &TenantId, name: &str) -> Result<UserRecord, AppError> {
    if check_name(name).is_err() {
        return Err(AppError::NotFound(format!("user {name:?}")));
    }
    match services.store.user(tenant, name).await {
        Ok(user) => Ok(user),
        Err(StoreError::NotFound) => Err(AppError::NotFound(format!("user {name:?}"))),
        Err(e) => Err(e.into()),
    }
}

/// Lets a user (`login` is `NAME@TENANT`; a bare slug is the tenant's own
/// login) log in over SFTP with an SSH key. `public_key` is the
/// `ALGORITHM BASE64` part of an OpenSSH public key line, already checked
/// by the caller (the SFTP adapter knows the key formats).
#[tracing::instrument(skip_all, fields(login = login))]
pub async fn add_public_key(
    services: &Services,
    login: &str,
    public_key: &str,
    comment: &str,
    actor: &Actor,
) -> Result<Identity, AppError> {
    let (user, slug) = parse_login(login);
    let tenant = tenants::tenant_by_slug(services, slug).await?;
    let identity = match user {
        None => Identity::tenant_login(tenant),
        Some(name) => {
            let user = find(services, &tenant.id, &name).await?;
            Identity {
                tenant,
                user: Some(user.name),
                role: user.role,
            }
        }
    };
    let user = identity.user.as_deref().unwrap_or("");
    match services
        .store
        .add_user_key(&identity.tenant.id, user, public_key, comment, services.now_ms())
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(m)) => return Err(AppError::Conflict(m)),
        Err(e) => return Err(e.into()),
    }
    let detail = serde_json::json!({"key": public_key, "comment": comment});
    audit::record(
        services,
        &identity.tenant.id,
        actor,
        audit::actions::KEY_ADD,
        format!("logins/{}", identity.login_name()),
        detail,
    )
    .await;
    Ok(identity)
}

/// The login's identity and its SSH public keys (`ALGORITHM BASE64`), if
/// it exists and may log in (a disabled user has none).
#[tracing::instrument(skip_all, fields(login = login))]
pub async fn public_keys(
    services: &Services,
    login: &str,
) -> Result<Option<(Identity, Vec<String>)>, AppError> {
    let (user, slug) = parse_login(login);
    let Ok(tenant) = tenants::tenant_by_slug(services, slug).await else {
        return Ok(None);
    };
    let identity = match user {
        None => Identity::tenant_login(tenant),
        Some(name) => match find(services, &tenant.id, &name).await {
            Ok(user) if !user.disabled => Identity {
                tenant,
                user: Some(user.name),
                role: user.role,
            },
            Ok(_) | Err(AppError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        },
    };
    let keys = services
        .store
        .user_keys(&identity.tenant.id, identity.user.as_deref().unwrap_or(""))
        .await?;
    Ok(Some((identity, keys)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names() {
        assert_eq!(parse_login("Alice@acme "), (Some("alice".to_string()), "acme"));
        assert_eq!(parse_login(" acme"), (None, "acme"));
        assert_eq!(login_name("acme", Some("alice")), "alice@acme");
        assert_eq!(login_name("acme", None), "acme");
    }

    #[test]
    fn user_names() {
        assert_eq!(check_name("alice.b-1_").unwrap(), "alice.b-1_");
        for bad in [
            "",
            " ",
            " alice",
            "Alice",
            ".alice",
            "al ice",
            "al@ice",
            "élise",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
