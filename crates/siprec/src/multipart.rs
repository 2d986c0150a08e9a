//! Splitting a SIP body into its MIME parts (RFC 2046 §5.1).
//!
//! Recording clients send `multipart/mixed` (sometimes `multipart/related`)
//! with the SDP and the metadata in either order, extra parts (Cisco's
//! `application/gtd`), quoted or bare boundaries, CRLF or bare LF, and a
//! preamble or epilogue now and then. A body that is not multipart is one
//! part whose headers are the message's Content-Type.

use crate::sip::{Header, MediaType, canonical_name};

/// The most parts one body may hold.
pub const MAX_PARTS: usize = 64;

/// Why a multipart body could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("multipart body without a boundary parameter")]
    MissingBoundary,
    #[error("invalid boundary parameter {0:?}")]
    BadBoundary(String),
    #[error("boundary {0:?} not found in the body")]
    BoundaryNotFound(String),
    #[error("more than {MAX_PARTS} parts")]
    TooManyParts,
}

/// One body part: its headers and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

impl Part {
    /// The first value of a part header (case-insensitive, compact forms too).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| canonical_name(&h.name).eq_ignore_ascii_case(canonical_name(name)))
            .map(|h| h.value.as_str())
    }

    /// The part's Content-Type. A part without one is `text/plain` by the
    /// MIME rules; `None` here means absent or malformed.
    pub fn content_type(&self) -> Option<MediaType> {
        self.header("Content-Type").and_then(MediaType::parse)
    }

    /// The disposition type of Content-Disposition (`recording-session`,
    /// `session`, `signal`), lower case, without parameters.
    pub fn disposition(&self) -> Option<String> {
        let value = self.header("Content-Disposition")?;
        let kind = value.split(';').next()?.trim().to_ascii_lowercase();
        (!kind.is_empty()).then_some(kind)
    }
}

/// Splits `body` according to its Content-Type. A multipart type needs a
/// boundary that occurs in the body; any other type (or none) gives one part.
pub fn split(content_type: Option<&MediaType>, body: &[u8]) -> Result<Vec<Part>, MultipartError> {
    let Some(ct) = content_type.filter(|ct| ct.is_multipart()) else {
        let headers = content_type
            .map(|ct| {
                let mut value = ct.essence();
                for p in &ct.params {
                    match &p.value {
                        Some(v) => value.push_str(&format!(";{}=\"{}\"", p.name, v.replace('"', ""))),
                        None => value.push_str(&format!(";{}", p.name)),
                    }
                }
                vec![Header {
                    name: "Content-Type".into(),
                    value,
                }]
            })
            .unwrap_or_default();
        return Ok(vec![Part {
            headers,
            body: body.to_vec(),
        }]);
    };
    let boundary = ct.param("boundary").ok_or(MultipartError::MissingBoundary)?;
    // RFC 2046: 1 to 70 characters; we allow a little more for sloppy peers
    // but never an empty or line-breaking one.
    if boundary.is_empty() || boundary.len() > 200 || boundary.contains(['\r', '\n']) {
        return Err(MultipartError::BadBoundary(boundary.chars().take(80).collect()));
    }
    split_with_boundary(body, boundary.as_bytes())
}

/// The start offsets of every line of `body`.
fn line_starts(body: &[u8]) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(
        body.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1),
    )
}

/// Splits with an explicit boundary (without the leading `--`).
pub fn split_with_boundary(body: &[u8], boundary: &[u8]) -> Result<Vec<Part>, MultipartError> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    // (start of delimiter line, start of the next line, is closing)
    let mut marks: Vec<(usize, usize, bool)> = Vec::new();
    for start in line_starts(body) {
        let line_end = body[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |p| start + p);
        let line = &body[start..line_end];
        let Some(rest) = line.strip_prefix(delimiter.as_slice()) else {
            continue;
        };
        let (closing, rest) = match rest.strip_prefix(b"--") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        // Only transport padding may follow the boundary on its line.
        if rest.iter().all(|b| b.is_ascii_whitespace()) {
            marks.push((start, (line_end + 1).min(body.len()), closing));
            if closing {
                break;
            }
        }
    }
    if marks.is_empty() {
        return Err(MultipartError::BoundaryNotFound(
            String::from_utf8_lossy(boundary).chars().take(80).collect(),
        ));
    }
    let mut parts = Vec::new();
    for (i, &(_, content_start, closing)) in marks.iter().enumerate() {
        if closing {
            break;
        }
        // The line end before the next delimiter belongs to the delimiter. An
        // unterminated last part runs to the end of the body.
        let content_end = match marks.get(i + 1) {
            Some(&(next, _, _)) => strip_line_end(body, content_start, next),
            None => body.len(),
        };
        if parts.len() >= MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        parts.push(parse_part(&body[content_start..content_end.max(content_start)]));
    }
    Ok(parts)
}

fn strip_line_end(body: &[u8], start: usize, mut end: usize) -> usize {
    if end > start && body[end - 1] == b'\n' {
        end -= 1;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

/// A part's headers up to the first blank line, then its body. A part that
/// does not start with a header line has no headers.
fn parse_part(raw: &[u8]) -> Part {
    let mut headers: Vec<Header> = Vec::new();
    let mut pos = 0;
    loop {
        if pos >= raw.len() {
            break;
        }
        let line_end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |p| pos + p);
        let next = (line_end + 1).min(raw.len());
        let line = &raw[pos..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            pos = next;
            break;
        }
        let text = String::from_utf8_lossy(line);
        if text.starts_with([' ', '\t']) && !headers.is_empty() {
            if let Some(last) = headers.last_mut() {
                last.value.push(' ');
                last.value.push_str(text.trim());
            }
        } else {
            match text.split_once(':') {
                Some((name, value)) if is_header_name(name) => headers.push(Header {
                    name: canonical_name(name.trim()).to_string(),
                    value: value.trim().to_string(),
                }),
                _ if headers.is_empty() => {
                    return Part {
                        headers,
                        body: raw.to_vec(),
                    };
                }
                // A non-header line after headers without the blank line:
                // the content starts here.
                _ => break,
            }
        }
        pos = next;
    }
    Part {
        headers,
        body: raw[pos.min(raw.len())..].to_vec(),
    }
}

fn is_header_name(name: &str) -> bool {
    let name = name.trim_end();
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}
