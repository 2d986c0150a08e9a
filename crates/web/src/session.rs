//! The session cookie, the logged-in extractor and the CSRF check.

use axum::extract::{FromRequestParts, MatchedPath, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use callmeta_app::store::Role;
use callmeta_app::usecases::tokens::Action;
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

/// A logged-in request whose role allows what its page does ([`action`]);
/// without a valid session the page answers with a redirect to the login
/// form, which comes back here afterwards, and with a role that does not
/// allow it, 403.
pub(crate) struct LoggedIn(pub WebSession);

/// What each page does, for the session's role: the one place a page is
/// named for access control (what a role allows is the use cases'
/// `Role::allows`). `None`: any logged-in session (logging out). A page not
/// named here is for admins only.
fn action(method: &Method, route: &str) -> Option<Action> {
    let read = method == Method::GET || method == Method::HEAD;
    Some(match route {
        "/logout" => return None,
        "/calls" | "/calls/export" | "/calls/{unique_id}" | "/calls/{unique_id}/audio" if read => {
            Action::ReadCalls
        }
        "/calls/{unique_id}/delete" => Action::Erase,
        "/tables" if read => Action::ReadTables,
        "/tables/{name}/upload" => Action::UploadTables,
        "/tables" | "/tables/{name}/settings" | "/tables/{name}/versions/{id}/activate" => {
            Action::ConfigureTables
        }
        "/audit" => Action::ReadAudit,
        "/users" | "/users/{name}/disable" | "/users/{name}/enable" => Action::ManageUsers,
        _ => Action::ManageWebhooks,
    })
}

/// Who is logged in, as the pages show it: the login name, and what the
/// navigation offers its role.
pub(crate) struct Who {
    pub login: String,
    role: Role,
}

impl Who {
    pub(crate) fn of(s: &WebSession) -> Self {
        Self {
            login: s.login_name(),
            role: s.role,
        }
    }

    pub(crate) fn reads_calls(&self) -> bool {
        self.role.allows(Action::ReadCalls)
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the tables page offers its upload form.
    pub(crate) fn uploads(&self) -> bool {
        self.role.allows(Action::UploadTables)
    }

    /// Whether pages offer the forms that change tables (settings,
    /// rollback, a new table).
    pub(crate) fn configures(&self) -> bool {
        self.role.allows(Action::ConfigureTables)
    }

    /// Whether a call's page offers to erase it.
    pub(crate) fn erases(&self) -> bool {
        self.role.allows(Action::Erase)
    }
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.login)
    }
}

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
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or_default();
        match web_sessions::current(&state.services, &token).await {
            Ok(session) => match action(&parts.method, route) {
                Some(action) if !session.role.allows(action) => {
                    // An uploader's first page after logging in: its tables.
                    if route == "/calls" && parts.method == Method::GET {
                        return Err(Redirect::to("/tables").into_response());
                    }
                    Err(crate::pages::error_page(
                        callmeta_app::usecases::AppError::Forbidden(format!(
                            "the role {} may not do this",
                            session.role.as_str()
                        )),
                    ))
                }
                _ => Ok(LoggedIn(session)),
            },
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
/// name (`alice@acme`, or the slug), its address, channel `web`.
pub(crate) fn actor(s: &WebSession, peer: &Peer) -> callmeta_app::usecases::audit::Actor {
    use callmeta_app::usecases::audit::{Actor, Channel};
    Actor::new(s.login_name(), peer.0, Channel::Web)
}
