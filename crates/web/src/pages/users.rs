//! Users (admins only): the tenant's users with their logins and roles; add
//! one, disable or enable one.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use callmeta_app::store::Role;
use callmeta_app::usecases::users::{self as uc, UserChange, UserView};
use callmeta_app::usecases::{AppError, tenants, web_sessions};
use serde::Deserialize;

use super::{error_page, forbidden, render};
use crate::WebState;
use crate::session::{self, LoggedIn, Peer, Who};

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    tenant: Option<Who>,
    csrf: String,
    /// The tenant's own login, its first admin.
    own_login: String,
    users: Vec<UserView>,
    roles: Vec<&'static str>,
    notice: Option<String>,
    error: Option<String>,
}

async fn users_page(
    state: &WebState,
    s: &web_sessions::WebSession,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let tenant = match tenants::tenant_by_slug(&state.services, &s.tenant_slug).await {
        Ok(t) => t,
        Err(e) => return error_page(e),
    };
    let users = match uc::list_users(&state.services, &tenant).await {
        Ok(list) => list,
        Err(e) => return error_page(e),
    };
    let failed = error.is_some();
    let mut response = render(UsersPage {
        tenant: Some(Who::of(s)),
        csrf: s.csrf.clone(),
        own_login: s.tenant_slug.clone(),
        users,
        roles: Role::ALL.map(Role::as_str).to_vec(),
        notice,
        error,
    });
    if failed {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct UsersQuery {
    notice: Option<String>,
}

pub(crate) async fn users(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    Query(q): Query<UsersQuery>,
) -> Response {
    // Notices come from our own redirects; only known ones are shown.
    let notice = match q.notice.as_deref() {
        Some("added") => Some("User added.".to_string()),
        Some("disabled") => Some("User disabled: its sessions have ended.".to_string()),
        Some("enabled") => Some("User enabled.".to_string()),
        _ => None,
    };
    users_page(&state, &s, notice, None).await
}

#[derive(Deserialize)]
pub(crate) struct NewUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

pub(crate) async fn add_user(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Form(form): Form<NewUserForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let tenant = match tenants::tenant_by_slug(&state.services, &s.tenant_slug).await {
        Ok(t) => t,
        Err(e) => return error_page(e),
    };
    let actor = session::actor(&s, &peer);
    match uc::create_user(
        &state.services,
        &tenant,
        &form.name,
        &form.role,
        &form.password,
        &actor,
    )
    .await
    {
        Ok(_) => Redirect::to("/users?notice=added").into_response(),
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_))) => {
            users_page(&state, &s, None, Some(e.to_string())).await
        }
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn set_disabled(
    state: &WebState,
    s: &web_sessions::WebSession,
    peer: &Peer,
    name: &str,
    disabled: bool,
) -> Response {
    let tenant = match tenants::tenant_by_slug(&state.services, &s.tenant_slug).await {
        Ok(t) => t,
        Err(e) => return error_page(e),
    };
    let change = UserChange {
        disabled: Some(disabled),
        ..Default::default()
    };
    match uc::update_user(&state.services, &tenant, name, change, &session::actor(s, peer)).await {
        Ok(_) if disabled => Redirect::to("/users?notice=disabled").into_response(),
        Ok(_) => Redirect::to("/users?notice=enabled").into_response(),
        Err(e) => error_page(e),
    }
}

pub(crate) async fn disable_user(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    set_disabled(&state, &s, &peer, &name, true).await
}

pub(crate) async fn enable_user(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    set_disabled(&state, &s, &peer, &name, false).await
}
