//! `/api/v1/webhooks`: a tenant's webhook endpoints and their delivery
//! attempts. The secret is write-only: taken at creation, never shown.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, Auth};
use crate::AppState;
use callmeta_app::store::DeliveryAttempt;
use callmeta_app::usecases::calls::format_timestamp;
use callmeta_app::usecases::webhooks::{self as uc, Endpoint, NewEndpoint};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWebhook {
    /// Where events are posted: an http or https URL. Loopback, private
    /// and link-local destinations are refused unless the operator allows
    /// them.
    #[schema(schema_with = crate::openapi::webhook_url)]
    pub url: String,
    /// The events to receive.
    #[schema(schema_with = crate::openapi::webhook_events)]
    pub events: Vec<String>,
    /// The key of each delivery's `X-Callmeta-Signature` (HMAC-SHA256);
    /// never shown again.
    #[schema(schema_with = crate::openapi::webhook_secret)]
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookView {
    pub id: String,
    pub url: String,
    #[schema(schema_with = crate::openapi::webhook_events)]
    pub events: Vec<String>,
    #[schema(schema_with = crate::openapi::date_time)]
    pub created: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookList {
    pub data: Vec<WebhookView>,
}

/// One attempt to deliver an event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    pub id: String,
    /// The event's id (`X-Callmeta-Delivery`), the same on every attempt.
    pub event_id: String,
    /// The event's name (`ping` for a test event).
    pub event: String,
    /// 1 for the first attempt (0: a note that events were not recorded).
    pub attempt: i64,
    #[schema(schema_with = crate::openapi::date_time)]
    pub time: String,
    /// The endpoint's HTTP status, if it answered.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// Why the attempt failed, if it did.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryList {
    /// The latest attempts, newest first (at most 100).
    pub data: Vec<DeliveryView>,
}

fn view(e: Endpoint) -> WebhookView {
    WebhookView {
        id: e.id,
        url: e.url,
        events: e.events,
        created: format_timestamp(e.created_ms),
    }
}

fn delivery_view(a: DeliveryAttempt) -> DeliveryView {
    DeliveryView {
        id: a.id,
        event_id: a.event_id,
        event: a.event,
        attempt: a.attempt,
        time: format_timestamp(a.attempted_ms),
        status_code: a.status_code,
        latency_ms: a.latency_ms,
        error: a.error,
    }
}

/// Adds an endpoint. Each event it subscribed to is then posted to it,
/// signed with its secret, and retried with backoff for 24 hours until it
/// answers 2xx.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses(
        (status = 201, description = "The endpoint (without its secret)", body = WebhookView, links(
            ("GetDeliveries" = (operation_id = "list_deliveries", parameters(("id" = "$response.body#/id")))),
            ("DeleteWebhook" = (operation_id = "delete_webhook", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "The body is not JSON, or the tenant has as many endpoints as it may", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "The body is over the JSON limit", body = ErrorBody),
        (status = 422, description = "A field is invalid (URL, scheme, refused destination, unknown event, empty secret); `field` names it", body = ErrorBody),
    ),
    security(("token" = [])))]
pub(crate) async fn create_webhook(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<Response, ApiError> {
    let endpoint = uc::create_endpoint(
        &state.services,
        &tenant.id,
        NewEndpoint {
            url: body.url,
            events: body.events,
            secret: body.secret,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(endpoint))).into_response())
}

/// The tenant's endpoints, oldest first.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
) -> Result<Json<WebhookList>, ApiError> {
    let list = uc::list_endpoints(&state.services, &tenant.id).await?;
    Ok(Json(WebhookList {
        data: list.into_iter().map(view).collect(),
    }))
}

/// Removes an endpoint, its delivery list and its pending deliveries.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 204, description = "Removed"),
              (status = 400, description = "The path is not valid UTF-8", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    uc::delete_endpoint(&state.services, &tenant.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint's latest delivery attempts, newest first: time, event,
/// HTTP status, latency, error.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 200, body = DeliveryList),
              (status = 400, description = "The path is not valid UTF-8", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    Auth { tenant, .. }: Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    let attempts = uc::deliveries(&state.services, &tenant.id, &id).await?;
    Ok(Json(DeliveryList {
        data: attempts.into_iter().map(delivery_view).collect(),
    }))
}
