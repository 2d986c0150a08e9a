//! The session cookie, the logged-in extractor and the CSRF check.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use callmeta_app::usecases::web_sessions::{self, WebSession};

use crate::WebState;

pub(crate) const COOKIE: &str = "callmeta_session";

/// The token in the request's session cookie, if any.
pub(crate) fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

pub(crate) fn set_cookie(token: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// A logged-in request; without a valid session the page answers with a
/// redirect to the login form, which comes back here afterwards.
pub(crate) struct LoggedIn(pub WebSession);

impl FromRequestParts<WebState> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Self::Rejection> {
        let back = parts
            .extensions
            .get::<OriginalUri>()
            .map(|u| u.0.to_string())
            .unwrap_or_else(|| parts.uri.to_string());
        let to_login = || {
            let next = if back.starts_with('/') && !back.starts_with("//") {
                back.clone()
            } else {
                "/calls".to_string()
            };
            let login = format!("/?next={}", encode(&next));
            // A request of htmx (a list refreshing itself) would follow a
            // redirect and swap the login form into the page: tell htmx to
            // load the login page instead.
            if parts.headers.contains_key("hx-request") {
                return (axum::http::StatusCode::UNAUTHORIZED, [("hx-redirect", login)]).into_response();
            }
            Redirect::to(&login).into_response()
        };
        let Some(token) = token(&parts.headers) else {
            return Err(to_login());
        };
        match web_sessions::current(&state.services, &token).await {
            Ok(session) => Ok(LoggedIn(session)),
            Err(callmeta_app::usecases::AppError::Unauthorized) => Err(to_login()),
            Err(e) => Err(crate::pages::error_page(e)),
        }
    }
}

/// Percent-encodes a query value.
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The peer address of the request's connection (a proxy's, behind one),
/// for the audit log.
pub(crate) struct Peer(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Who a logged-in request is, for the audit log: the session's login
/// name, its address, channel `web`.
pub(crate) fn actor(s: &WebSession, peer: &Peer) -> callmeta_app::usecases::audit::Actor {
    use callmeta_app::usecases::audit::{Actor, Channel};
    Actor::new(s.tenant_slug.clone(), peer.0, Channel::Web)
}
