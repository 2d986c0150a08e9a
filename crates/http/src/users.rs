//! A tenant's users: add one, list them, change one (role, password,
//! disabled). Only an `admin` may (the routes' action is `ManageUsers`,
//! checked with the token in `extract`). Passwords are write-only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, Auth};
use crate::AppState;
use callmeta_app::usecases::users as uc;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    #[schema(schema_with = crate::openapi::user_name)]
    pub name: String,
    #[schema(schema_with = crate::openapi::token_role)]
    pub role: String,
    #[schema(schema_with = crate::openapi::user_password)]
    pub password: String,
}

/// What to change; a field left out stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeUser {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::token_role, required = false)]
    pub role: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::openapi::user_password, required = false)]
    pub password: Option<String>,
    /// `true`: it can no longer log in, and its web sessions end at once.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool, required = false)]
    pub disabled: Option<bool>,
}

/// A field that may be left out but, when given, is not null.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A user, without its password.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserView {
    pub name: String,
    /// What it logs in with on the web app, FTP and SFTP: `NAME@TENANT`.
    pub login: String,
    #[schema(schema_with = crate::openapi::token_role)]
    pub role: &'static str,
    pub disabled: bool,
    #[schema(schema_with = crate::openapi::date_time)]
    pub created: String,
    #[schema(schema_with = crate::openapi::date_time)]
    pub updated: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserList {
    pub data: Vec<UserView>,
}

fn view(u: uc::UserView) -> UserView {
    UserView {
        name: u.name,
        login: u.login,
        role: u.role,
        disabled: u.disabled,
        created: u.created,
        updated: u.updated,
    }
}

/// Adds a user, who logs in as `NAME@TENANT` with its password.
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, body = UserView, links(
            ("ChangeUser" = (operation_id = "change_user", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "A user of that name exists, or the tenant has the most users it may have", body = ErrorBody),
        (status = 413, description = "The body is over the JSON limit", body = ErrorBody),
        (status = 422, description = "A field is invalid; `field` names it", body = ErrorBody),
    ),
    security(("token" = [])))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<Response, ApiError> {
    let user = uc::create_user(
        &state.services,
        &tenant,
        &body.name,
        &body.role,
        &body.password,
        &actor,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(user))).into_response())
}

/// The tenant's users, by name. The tenant's own login (its slug) is its
/// first admin and is not listed.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = UserList), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
) -> Result<Json<UserList>, ApiError> {
    let users = uc::list_users(&state.services, &tenant).await?;
    Ok(Json(UserList {
        data: users.into_iter().map(view).collect(),
    }))
}

/// Changes a user's role, password or disabled flag; applies to its web
/// sessions at once.
#[utoipa::path(patch, path = "/api/v1/users/{name}", tag = "users", operation_id = "change_user",
    params(("name" = String, Path)),
    request_body = ChangeUser,
    responses((status = 200, body = UserView),
              (status = 400, description = "The body is not JSON, or the path is not valid UTF-8", body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 413, description = "The body is over the JSON limit", body = ErrorBody),
              (status = 422, description = "A field is invalid; `field` names it", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn change_user(
    State(state): State<AppState>,
    Auth { tenant, actor, .. }: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ChangeUser>,
) -> Result<Json<UserView>, ApiError> {
    let change = uc::UserChange {
        role: body.role,
        password: body.password,
        disabled: body.disabled,
    };
    let user = uc::update_user(&state.services, &tenant, &name, change, &actor).await?;
    Ok(Json(view(user)))
}
