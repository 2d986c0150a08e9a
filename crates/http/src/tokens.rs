//! API tokens: create one (its secret shown once), list them (never a
//! secret), delete one. Only an `admin` token may (the route's action is
//! `ManageTokens`, checked with the token in `extract`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, Auth};
use crate::AppState;
use callmeta_app::store::TokenRecord;
use callmeta_app::usecases::calls::format_timestamp;
use callmeta_app::usecases::tokens as uc;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    /// What the token is for (1 to 100 characters, no control characters).
    #[schema(schema_with = crate::openapi::token_name)]
    pub name: String,
    #[schema(schema_with = crate::openapi::token_role)]
    pub role: String,
    /// Days until it expires (1 to 3650); absent or null: it does not expire.
    /// A JSON number: `30` and `30.0` alike (JSON Schema's integer).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::expires_in_days, required = false)]
    pub expires_in_days: Option<serde_json::Number>,
}

/// An API token, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenView {
    pub id: String,
    pub name: String,
    #[schema(schema_with = crate::openapi::token_role)]
    pub role: &'static str,
    #[schema(schema_with = crate::openapi::date_time)]
    pub created: String,
    /// When it was last used (to the minute or so); null if never.
    #[schema(schema_with = crate::openapi::optional_date_time)]
    pub last_used: Option<String>,
    /// When it stops working; null if never.
    #[schema(schema_with = crate::openapi::optional_date_time)]
    pub expires: Option<String>,
}

/// A token just created, with its secret: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedTokenView {
    pub id: String,
    pub name: String,
    #[schema(schema_with = crate::openapi::token_role)]
    pub role: &'static str,
    #[schema(schema_with = crate::openapi::date_time)]
    pub created: String,
    #[schema(schema_with = crate::openapi::optional_date_time)]
    pub last_used: Option<String>,
    #[schema(schema_with = crate::openapi::optional_date_time)]
    pub expires: Option<String>,
    /// The secret, to send as `Authorization: Token <token>`. It is not
    /// stored and cannot be shown again.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenList {
    pub data: Vec<TokenView>,
}

/// A JSON number that is a whole number (`30`, `30.0`), as an `i64`.
fn whole_days(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

fn view(t: &TokenRecord) -> TokenView {
    TokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.as_str(),
        created: format_timestamp(t.created_ms),
        last_used: t.last_used_ms.map(format_timestamp),
        expires: t.expires_ms.map(format_timestamp),
    }
}

/// Creates an API token. The secret is in the answer and nowhere else.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, body = CreatedTokenView, links(
            ("DeleteToken" = (operation_id = "delete_token", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token's role may not manage tokens", body = ErrorBody),
        (status = 413, description = "The body is over the JSON limit", body = ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it", body = ErrorBody),
    ),
    security(("token" = [])))]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<Response, ApiError> {
    let days = match &body.expires_in_days {
        None => None,
        Some(n) => Some(whole_days(n).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "Invalid value",
                format!("expires_in_days must be a whole number of days, not {n}"),
            )
            .with_field("expires_in_days")
        })?),
    };
    let created = uc::create_token(&state.services, &tenant.id, &body.name, &body.role, days, &actor).await?;
    let v = view(&created.record);
    let body = CreatedTokenView {
        id: v.id,
        name: v.name,
        role: v.role,
        created: v.created,
        last_used: v.last_used,
        expires: v.expires,
        token: created.secret,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The tenant's API tokens, oldest first, without their secrets.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody),
              (status = 403, description = "The token's role may not manage tokens", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = uc::list_tokens(&state.services, &tenant.id).await?;
    Ok(Json(TokenList {
        data: tokens.iter().map(view).collect(),
    }))
}

/// Deletes an API token: refused from then on, by every node within a second.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", operation_id = "delete_token",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"),
              (status = 400, description = "The path is not valid UTF-8", body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 403, description = "The token's role may not manage tokens", body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn delete_token(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    uc::revoke_token(&state.services, &tenant.id, &id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
