//! `GET /metrics` (the Prometheus text format, no token) and the layer that
//! counts every HTTP request by its matched route template, method and
//! status, with its latency.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use callmeta_app::usecases::Services;

/// A router serving `GET /metrics`: merged into the HTTP listener's unless
/// `[metrics] enabled = false`, and alone on `--metrics ADDR`.
pub fn metrics_router(services: Arc<Services>) -> Router {
    Router::new().route("/metrics", get(render)).with_state(services)
}

async fn render(State(services): State<Arc<Services>>) -> Response {
    let text = callmeta_app::metrics::render(&services).await;
    (
        [(header::CONTENT_TYPE, callmeta_app::metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// Counts every request `router` answers (`callmeta_http_requests`,
/// `callmeta_http_request_duration_seconds`). Routes are labelled by their
/// template (`/api/v1/calls/{unique_id}`), a path no route matched by
/// `unmatched`, and methods outside the standard ones by `other`, so that
/// no client can make up new series.
pub fn count_requests(router: Router, services: Arc<Services>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(services, count))
}

async fn count(State(services): State<Arc<Services>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = match *request.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let response = next.run(request).await;
    services.metrics.http_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
