//! Request extractors that fail with our error shape: the tenant behind a token,
//! JSON bodies whose errors name the line, column and field, and path and
//! query parameters (axum's own extractors would answer in plain text).

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::AppState;
use callmeta_app::store::{Role, Tenant};
use callmeta_app::usecases::audit::{Actor, Channel};
use callmeta_app::usecases::tokens::{self, Action};

/// The tenant authenticated by `Authorization: Token T` (or `Bearer T`),
/// whose token's role allows what the route does ([`action`]), and who is
/// asking, for the audit log: the token's name, the peer address of the
/// connection (a proxy's, behind one), channel `api`.
pub(crate) struct Auth {
    pub tenant: Tenant,
    pub actor: Actor,
    /// The token's role, for a handler whose body decides what it does
    /// (a back-fill that changes calls or only previews).
    pub role: Role,
}

/// What each API route does, for the token's role: the one place a route
/// is named for access control (what a role allows is the use cases'
/// `Role::allows`). A route not named here is for `admin` tokens only.
fn action(method: &Method, route: &str) -> Action {
    let route = route.strip_prefix("/api/v1").unwrap_or(route);
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        "/calls/{unique_id}" | "/tables/{name}" if method == Method::DELETE => Action::Erase,
        "/retention" if read => Action::ReadSettings,
        "/retention" => Action::ManageRetention,
        "/calls" if method == Method::POST => Action::CreateCalls,
        "/calls"
        | "/calls/facets"
        | "/calls/export"
        | "/calls/{unique_id}"
        | "/calls/{unique_id}/audio"
        | "/backfills"
        | "/backfills/{id}"
            if read =>
        {
            Action::ReadCalls
        }
        "/tables" | "/tables/{name}" if read => Action::ReadTables,
        "/tables/{name}/data" if method == Method::PUT => Action::UploadTables,
        "/tables/{name}" | "/tables/{name}/versions/{id}/activate" => Action::ConfigureTables,
        // A preview; the handler asks for `ConfigureTables` when it changes calls.
        "/backfill" => Action::DryRunBackfill,
        "/siprec" if read => Action::ReadSettings,
        "/siprec" => Action::ChangeSettings,
        // The audit log is an admin's: it names every token and login.
        "/audit" => Action::ReadAudit,
        "/users" | "/users/{name}" => Action::ManageUsers,
        "/webhooks" | "/webhooks/{id}" | "/webhooks/{id}/deliveries" => Action::ManageWebhooks,
        _ => Action::ManageTokens,
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = header
            .strip_prefix("Token ")
            .or_else(|| header.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if token.is_empty() {
            return Err(callmeta_app::usecases::AppError::Unauthorized.into());
        }
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or_default();
        let principal = tokens::authenticate(&state.services, token, action(&parts.method, route)).await?;
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        Ok(Auth {
            actor: Actor::new(principal.token.name.clone(), source, Channel::Api),
            role: principal.token.role,
            tenant: principal.tenant,
        })
    }
}

/// A JSON body; a malformed body or an unknown field gets a 400/422 saying where.
pub(crate) struct ApiJson<T>(pub T);

pub(crate) const MAX_JSON_BYTES: usize = 2 * 1024 * 1024;

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "Payload too large",
                    format!("the JSON body is over the limit of {MAX_JSON_BYTES} bytes"),
                )
            } else {
                ApiError::bad_request(format!("could not read the body: {e}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is a JSON object; serde would also read a struct from an
    // array of its fields in order (`[]` being all defaults).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "Invalid value",
            "the body must be a JSON object, not an array",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let located = format!("{inner}");
        let (status, id, title) = if inner.is_data() {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid", "Invalid value")
        } else {
            (StatusCode::BAD_REQUEST, "invalid_json", "Invalid JSON")
        };
        let detail = if path.is_empty() || path == "." {
            located
        } else {
            format!("{path}: {located}")
        };
        let err = ApiError::new(status, id, title, detail);
        if path.is_empty() || path == "." {
            err
        } else {
            err.with_field(path)
        }
    })
}

/// Path parameters; a malformed one (not UTF-8 once decoded) gets a 400.
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

/// Query parameters; a query that does not decode gets a 400.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}
