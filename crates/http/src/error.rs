//! The one place where errors become HTTP replies: `{"errors": [{"id", "title",
//! "detail"}]}` with the matching status code.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use callmeta_app::usecases::AppError;
use callmeta_app::usecases::calls::CallQueryError;
use callmeta_core::call_metadata::MetadataValueError;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorItem {
    /// A stable machine-readable code, e.g. `not_found`, `invalid`, `rejected`.
    pub id: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// The request field concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub errors: Vec<ErrorItem>,
}

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub item: ErrorItem,
    /// Seconds for a `Retry-After` header (a busy server).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        id: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            item: ErrorItem {
                id,
                title,
                detail: detail.into(),
                field: None,
            },
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", "Invalid request", detail)
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.item.field = Some(field.into());
        self
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                format!("{what} not found"),
            ),
            AppError::Invalid { field, message } => {
                let mut err = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    "Invalid value",
                    message,
                );
                err.item.field = field;
                err
            }
            AppError::Unauthorized => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "a valid API token is required: send `Authorization: Token <token>`",
            ),
            AppError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", m),
            AppError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", m),
            AppError::TooLarge(m) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "Payload too large", m)
            }
            AppError::Busy {
                message,
                retry_after_secs,
            } => {
                let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "Server busy", message);
                err.retry_after = Some(retry_after_secs);
                err
            }
            AppError::OverLimit { field, message } => {
                let mut err = ApiError::bad_request(message);
                err.item.field = field;
                err
            }
            AppError::Throttled { retry_after_secs } => {
                let mut err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "throttled",
                    "Too many requests",
                    format!("too many failed attempts; try again in {retry_after_secs} s"),
                );
                err.retry_after = Some(retry_after_secs);
                err
            }
            AppError::Pruned(m) => ApiError::new(
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
                "pruned",
                "Removed by retention",
                m,
            ),
            AppError::Unexpected(e) => {
                tracing::error!(error = ?e, "unexpected error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "an unexpected error happened; it has been logged",
                )
            }
        }
    }
}

impl From<MetadataValueError> for ApiError {
    fn from(e: MetadataValueError) -> Self {
        let field = format!("metadata.{}", e.key);
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "Invalid value",
            e.to_string(),
        )
        .with_field(field)
    }
}

impl From<CallQueryError> for ApiError {
    fn from(e: CallQueryError) -> Self {
        let field = e.field().to_string();
        ApiError::bad_request(e.to_string()).with_field(field)
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad_request(format!("invalid path: {}", e.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad_request(format!("invalid query: {}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                errors: vec![self.item],
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}
