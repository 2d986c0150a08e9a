//! The body of a recording request (INVITE, re-INVITE, UPDATE): its SDP
//! offer and its metadata, wherever they sit among the MIME parts.

use crate::metadata::{self, Metadata, MetadataError};
use crate::multipart::{self, MultipartError, Part};
use crate::sdp::{self, SdpError, SessionDescription};
use crate::sip::Message;

/// Why a request body could not be used, with the SIP status it deserves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("multipart body: {0}")]
    Multipart(#[from] MultipartError),
    #[error("SDP: {0}")]
    Sdp(#[from] SdpError),
    #[error("recording metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("unsupported body type {0:?}: expected SDP and/or recording metadata")]
    UnsupportedContentType(String),
}

impl BodyError {
    /// 488 for an SDP we cannot use, 415 for a body type we do not know,
    /// 400 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::Sdp(_) => 488,
            BodyError::UnsupportedContentType(_) => 415,
            BodyError::Multipart(_) | BodyError::Metadata(_) => 400,
        }
    }
}

/// What a recording request carries.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingBody {
    /// Every MIME part (one for a non-multipart body, none for no body).
    pub parts: Vec<Part>,
    /// The SDP offer, if the body has one (a metadata-only UPDATE has not).
    pub sdp: Option<SessionDescription>,
    /// The metadata: the XML part, or else Cisco participant headers.
    pub metadata: Option<Metadata>,
}

enum Kind {
    Sdp,
    Metadata,
    Multipart,
    Other,
}

fn classify(part: &Part) -> Kind {
    match part.content_type() {
        Some(ct) if ct.is_sdp() => Kind::Sdp,
        Some(ct) if ct.is_recording_metadata() => Kind::Metadata,
        Some(ct) if ct.is_multipart() => Kind::Multipart,
        // Some clients label metadata `application/xml` but keep the
        // recording-session disposition.
        Some(ct)
            if ct.subtype.ends_with("xml") && part.disposition().as_deref() == Some("recording-session") =>
        {
            Kind::Metadata
        }
        Some(_) => Kind::Other,
        None => {
            let head = String::from_utf8_lossy(&part.body[..part.body.len().min(64)]);
            let head = head.trim_start();
            if head.starts_with("v=") {
                Kind::Sdp
            } else if head.starts_with('<') {
                Kind::Metadata
            } else {
                Kind::Other
            }
        }
    }
}

/// Splits the body of a request and parses its SDP and metadata parts.
pub fn parse_body(message: &Message) -> Result<RecordingBody, BodyError> {
    let mut parts = Vec::new();
    if !message.body().iter().all(u8::is_ascii_whitespace) {
        for part in multipart::split(message.content_type().as_ref(), message.body())? {
            // One level of nesting (multipart/related inside multipart/mixed).
            if let Kind::Multipart = classify(&part) {
                parts.extend(multipart::split(part.content_type().as_ref(), &part.body)?);
            } else {
                parts.push(part);
            }
        }
    }
    let mut sdp = None;
    let mut metadata = None;
    let mut other = None;
    for part in &parts {
        match classify(part) {
            Kind::Sdp if sdp.is_none() => sdp = Some(sdp::parse(&part.body)?),
            Kind::Metadata if metadata.is_none() => metadata = Some(metadata::parse(&part.body)?),
            Kind::Other if other.is_none() => {
                other = Some(
                    part.content_type()
                        .map_or_else(|| "(none)".to_string(), |ct| ct.essence()),
                )
            }
            _ => {}
        }
    }
    if sdp.is_none()
        && metadata.is_none()
        && let Some(kind) = other
    {
        return Err(BodyError::UnsupportedContentType(kind));
    }
    if metadata.is_none() {
        metadata = metadata::from_cisco_headers(message);
    }
    Ok(RecordingBody { parts, sdp, metadata })
}
