//! A new version of a table from the upload form.

use axum::extract::multipart::Field;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use callmeta_app::usecases::tables::{self, Channel};
use callmeta_app::usecases::{AppError, uploads, web_sessions};

use super::tables::tables_page;
use super::{error_page, forbidden};
use crate::WebState;
use crate::session::{self, LoggedIn, Peer};

/// The form's upload: the file is streamed into the upload policy's spool
/// (refused with 413 as soon as it passes `[limits] max_file_bytes`, from its
/// declared length or while it arrives, before anything is stored).
pub(crate) async fn upload(
    State(state): State<WebState>,
    LoggedIn(s): LoggedIn,
    peer: Peer,
    Path(name): Path<String>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && let Err(e) = uploads::check_declared_size(&state.services, n.saturating_sub(crate::FORM_OVERHEAD))
    {
        return upload_refused(&state, &s, e).await;
    }
    let form = match read_form(&state, &mut multipart).await {
        Ok(form) => form,
        Err(FormError::Refused(e)) => return upload_refused(&state, &s, e).await,
        Err(FormError::Failed(e)) => return error_page(e),
        Err(FormError::Unreadable(why)) => return tables_page(&state, &s, None, Some(why)).await,
    };
    if !web_sessions::csrf_matches(&s, &form.csrf) {
        return forbidden("This form is no longer valid. Reload the page and try again.");
    }
    let Some((filename, upload)) = form.file.filter(|(_, u)| !u.is_empty()) else {
        return tables_page(&state, &s, None, Some("Choose a CSV file to upload.".into())).await;
    };
    new_version(&state, &s, &session::actor(&s, &peer), &name, filename, upload).await
}

/// What the form brought: its CSRF token, and its file (the name it was
/// sent under; the bytes received into the spool).
struct UploadForm {
    csrf: String,
    file: Option<(Option<String>, uploads::Received)>,
}

/// Why the form could not be taken in, by the page each calls for.
enum FormError {
    /// The upload policy refused the file (too large).
    Refused(AppError),
    /// Receiving into the spool failed.
    Failed(AppError),
    /// The form could not be read, or was cut off.
    Unreadable(String),
}

async fn read_form(state: &WebState, multipart: &mut Multipart) -> Result<UploadForm, FormError> {
    let mut form = UploadForm {
        csrf: String::new(),
        file: None,
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(form),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(FormError::Refused(too_large(state)));
            }
            Err(e) => {
                return Err(FormError::Unreadable(format!(
                    "The upload could not be read: {e}"
                )));
            }
        };
        let field_name = field.name().unwrap_or("").to_string();
        if field_name == "file" {
            let filename = field.file_name().map(str::to_string);
            form.file = Some((filename, receive_file(state, field).await?));
        } else {
            match field.bytes().await {
                Ok(bytes) if field_name == "csrf" => {
                    form.csrf = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned()
                }
                Ok(_) => {}
                Err(e) => return Err(FormError::Unreadable(format!("The upload was cut off: {e}"))),
            }
        }
    }
}

/// Streams the file field into the spool, through the upload policy.
async fn receive_file(state: &WebState, mut field: Field<'_>) -> Result<uploads::Received, FormError> {
    let mut incoming = uploads::Incoming::start(&state.services)
        .await
        .map_err(FormError::Failed)?;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => incoming.write(&chunk).await.map_err(FormError::Refused)?,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(FormError::Refused(too_large(state)));
            }
            Err(e) => return Err(FormError::Unreadable(format!("The upload was cut off: {e}"))),
        }
    }
    incoming.finish().await.map_err(FormError::Failed)
}

/// The form's body was cut at the route's limit, just past the file limit.
fn too_large(state: &WebState) -> AppError {
    let limit = state.services.limits.max_file_bytes;
    AppError::TooLarge(format!("the upload is over the limit of {limit} bytes"))
}

/// The received file becomes the table's new version, or the page says why not.
async fn new_version(
    state: &WebState,
    s: &web_sessions::WebSession,
    actor: &callmeta_app::usecases::audit::Actor,
    name: &str,
    filename: Option<String>,
    upload: uploads::Received,
) -> Response {
    let table = match tables::parse_table_name(name) {
        Ok(t) => t,
        Err(e) => return error_page(e),
    };
    match tables::upload_reference_table(
        &state.services,
        &s.tenant,
        &table,
        upload,
        Channel::Web,
        filename,
        None,
        actor,
    )
    .await
    {
        Ok(outcome) if outcome.unchanged => Redirect::to("/tables?notice=unchanged").into_response(),
        Ok(outcome) if outcome.activated => Redirect::to("/tables?notice=uploaded").into_response(),
        Ok(outcome) => {
            let why = match &outcome.version.report.not_activated {
                Some(held) => format!(
                    "The upload was recorded but not activated; the previous version stays active. {held}"
                ),
                None => {
                    let why = outcome.version.report.error.clone().unwrap_or_default();
                    format!("The upload was rejected; the previous version stays active. {why}")
                }
            };
            tables_page(state, s, None, Some(why)).await
        }
        Err(e @ (AppError::Invalid { .. } | AppError::NotFound(_))) => {
            tables_page(state, s, None, Some(e.to_string())).await
        }
        Err(e @ (AppError::TooLarge(_) | AppError::Busy { .. })) => upload_refused(state, s, e).await,
        Err(e) => error_page(e),
    }
}

/// The tables page with why an upload was refused, under the status the
/// refusal calls for: 413 (too large) or 503 with `Retry-After` (busy).
async fn upload_refused(state: &WebState, s: &web_sessions::WebSession, e: AppError) -> Response {
    let (status, retry_after) = match &e {
        AppError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
        AppError::Busy { retry_after_secs, .. } => (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_after_secs)),
        _ => return error_page(e),
    };
    let mut response = tables_page(state, s, None, Some(format!("The upload was refused: {e}"))).await;
    *response.status_mut() = status;
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
    }
    response
}
