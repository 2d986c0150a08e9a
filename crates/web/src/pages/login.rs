//! The login form, logging in (throttled, refused from another site) and out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use callmeta_app::usecases::{AppError, web_sessions};
use serde::Deserialize;

use super::{error_page, forbidden, render};
use crate::WebState;
use crate::session::{self, LoggedIn, Who};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    tenant: Option<Who>,
    csrf: String,
    next: String,
    error: Option<String>,
    slug: String,
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// Only a path of this site is a place to go back to: it starts with one
/// `/` not followed by `/` or `\`, and holds only visible ASCII other than
/// `\`. Browsers drop tabs and line breaks from a URL and read `\` as `/`,
/// so `/<TAB>/host` or `/\host` would lead to another site.
fn safe_next(next: Option<&str>) -> String {
    let is_path = |n: &str| {
        let bytes = n.as_bytes();
        bytes.first() == Some(&b'/')
            && !matches!(bytes.get(1), Some(b'/' | b'\\'))
            && bytes.iter().all(|&b| b.is_ascii_graphic() && b != b'\\')
    };
    match next {
        Some(n) if is_path(n) => n.to_string(),
        _ => "/calls".to_string(),
    }
}

pub(crate) async fn login_page(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Some(token) = session::token(&headers)
        && web_sessions::current(&state.services, &token).await.is_ok()
    {
        return Redirect::to(&next).into_response();
    }
    render(LoginPage {
        tenant: None,
        csrf: String::new(),
        next,
        error: None,
        slug: String::new(),
    })
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    tenant: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// Whether a request was posted from another site: browsers send `Origin`
/// with every POST, and it must name this host (as the client reached it,
/// or as a proxy in front says it did).
fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false; // not a browser, or a browser sending no Origin
    };
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    let ours = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    !matches!(origin_host, Some(h) if Some(h) == ours("host") || Some(h) == ours("x-forwarded-host"))
}

/// A login form posted from another site is refused: it would sign the
/// visitor in to an account of the other site's choosing (login CSRF).
pub(crate) async fn login(
    State(state): State<WebState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if cross_site(&headers) {
        return (
            StatusCode::FORBIDDEN,
            Html("Log in from callmeta's own login page.".to_string()),
        )
            .into_response();
    }
    let next = safe_next(form.next.as_deref());
    let ms = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000);
    let lifetime = web_sessions::Lifetime {
        absolute_ms: ms(state.settings.session_secs),
        idle_ms: ms(state.settings.idle_secs),
    };
    // The address the connection came from (a proxy's, behind one).
    let from = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(ConnectInfo(a))| {
        a.ip()
    });
    match web_sessions::login(&state.services, &form.tenant, &form.password, from, lifetime).await {
        Ok((token, _)) => {
            let cookie =
                session::set_cookie(&token, state.settings.session_secs, state.settings.secure_cookie);
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        Err(AppError::Unauthorized) => {
            let mut response = render(LoginPage {
                tenant: None,
                csrf: String::new(),
                next,
                error: Some("Unknown login or wrong password.".into()),
                slug: form.tenant,
            });
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
        Err(AppError::Throttled { retry_after_secs }) => {
            let mut response = render(LoginPage {
                tenant: None,
                csrf: String::new(),
                next,
                error: Some(format!(
                    "Too many failed logins for this login from your address: try again in {retry_after_secs} s."
                )),
                slug: form.tenant,
            });
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(value) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn logout(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    if let Some(token) = session::token(&headers)
        && let Err(e) = web_sessions::logout(&state.services, &token).await
    {
        return error_page(e);
    }
    ([(header::SET_COOKIE, session::clear_cookie())], Redirect::to("/")).into_response()
}
