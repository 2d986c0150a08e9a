//! A tolerant SIP message parser and a response builder.
//!
//! Tolerant of what real recording clients send: compact header names, any
//! header-name case, CRLF or bare LF line ends, folded lines, leading CRLF
//! keep-alives. Strict where being lenient would hide a broken message: a
//! start line that is neither a request nor a response, a header line without
//! a colon, a Content-Length that is not a number or promises more bytes than
//! arrived. Every input gives a value or a [`SipError`]; nothing panics.
//!
//! Datagram transports hand a whole datagram to [`Message::parse`]. Stream
//! transports first ask [`frame_length`] how many bytes the next message
//! needs, then parse exactly that many.

use std::fmt;

/// Size limits applied while parsing, so a hostile peer cannot make us buffer
/// without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The start line and headers, blank line included.
    pub max_header_bytes: usize,
    /// The number of header lines (after unfolding).
    pub max_headers: usize,
    /// The body, as announced by Content-Length or as received.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 256,
            max_body_bytes: 2 * 1024 * 1024,
        }
    }
}

/// Why a message could not be parsed. Each variant maps to a SIP reply with
/// [`SipError::status`] when the message was a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipError {
    #[error("empty message")]
    Empty,
    #[error("malformed start line: {0:?}")]
    BadStartLine(String),
    #[error("malformed header at line {line}: {text:?}")]
    BadHeader { line: usize, text: String },
    #[error("headers exceed {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("more than {limit} header lines")]
    TooManyHeaders { limit: usize },
    #[error("invalid Content-Length {0:?}")]
    BadContentLength(String),
    #[error("two different Content-Length headers ({0} and {1})")]
    ConflictingContentLength(usize, usize),
    #[error("body of {length} bytes exceeds the limit of {limit}")]
    BodyTooLarge { length: usize, limit: usize },
    #[error("truncated message: Content-Length says {expected} body bytes, {available} arrived")]
    Truncated { expected: usize, available: usize },
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("malformed {name} header: {value:?}")]
    BadHeaderValue { name: &'static str, value: String },
}

impl SipError {
    /// The status code a request that failed this way should get.
    pub fn status(&self) -> u16 {
        match self {
            SipError::HeadersTooLarge { .. } | SipError::TooManyHeaders { .. } => 494,
            SipError::BodyTooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// A SIP method. Methods we do not know keep their name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Update,
    Info,
    Prack,
    Register,
    Subscribe,
    Notify,
    Refer,
    Message,
    Other(String),
}

impl Method {
    /// Methods are case-sensitive tokens (RFC 3261 §7.1), so `invite` is an
    /// unknown method, not INVITE.
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method's token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        uri: String,
        version: String,
    },
    Response {
        version: String,
        status: u16,
        reason: String,
    },
}

/// One header line, unfolded. Compact names are expanded to their full name
/// (`i` becomes `Call-ID`); other names keep the case they arrived with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A parsed SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    start: StartLine,
    headers: Vec<Header>,
    body: Vec<u8>,
}

/// What a stream transport should do with its buffer, from [`frame_length`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The first `n` bytes are one complete message (leading CRLFs included).
    Complete(usize),
    /// The first `n` bytes are only CRLF keep-alives (RFC 5626 §4.4.1):
    /// consume them (and answer a double CRLF with a single CRLF).
    KeepAlive(usize),
    /// Not enough bytes yet; read more and ask again.
    NeedMore,
}

const COMPACT: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("f", "From"),
    ("t", "To"),
    ("v", "Via"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("k", "Supported"),
    ("s", "Subject"),
    ("e", "Content-Encoding"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("x", "Session-Expires"),
    ("u", "Allow-Events"),
    ("a", "Accept-Contact"),
    ("j", "Reject-Contact"),
    ("d", "Request-Disposition"),
    ("y", "Identity"),
];

/// The full form of a header name: compact forms expanded, others unchanged.
pub fn canonical_name(name: &str) -> &str {
    if name.len() == 1 {
        for (short, long) in COMPACT {
            if name.eq_ignore_ascii_case(short) {
                return long;
            }
        }
    }
    name
}

fn names_match(a: &str, b: &str) -> bool {
    canonical_name(a).eq_ignore_ascii_case(canonical_name(b))
}

/// Where the header section ends: the index of the byte after the blank
/// line's line end. Leading CRLFs are skipped first.
fn header_end(buf: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let next = i + off + 1;
        match buf.get(next) {
            Some(b'\n') => return Some(next + 1),
            Some(b'\r') if buf.get(next + 1) == Some(&b'\n') => return Some(next + 2),
            _ => i = next,
        }
    }
    None
}

fn skip_leading_crlf(buf: &[u8]) -> usize {
    buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count()
}

/// How many bytes of `buf` the next message on a stream transport needs.
///
/// A missing Content-Length counts as an empty body (RFC 3261 makes it
/// mandatory on streams). Errors mean the stream cannot be resynchronised and
/// should be closed after replying if possible.
pub fn frame_length(buf: &[u8], limits: &Limits) -> Result<Framing, SipError> {
    let lead = skip_leading_crlf(buf);
    if lead == buf.len() {
        return Ok(if lead >= 2 {
            Framing::KeepAlive(lead)
        } else {
            Framing::NeedMore
        });
    }
    let window_end = buf.len().min(lead + limits.max_header_bytes);
    let Some(end) = header_end(&buf[..window_end], lead) else {
        if buf.len() - lead >= limits.max_header_bytes {
            return Err(SipError::HeadersTooLarge {
                limit: limits.max_header_bytes,
            });
        }
        return Ok(Framing::NeedMore);
    };
    let head = String::from_utf8_lossy(&buf[lead..end]);
    let mut length: Option<usize> = None;
    for line in unfold(&head) {
        if let Some((name, value)) = line.split_once(':')
            && names_match(name.trim(), "Content-Length")
        {
            length = Some(one_content_length(length, parse_content_length(value)?)?);
        }
    }
    let length = length.unwrap_or(0);
    if length > limits.max_body_bytes {
        return Err(SipError::BodyTooLarge {
            length,
            limit: limits.max_body_bytes,
        });
    }
    let total = end + length;
    Ok(if buf.len() >= total {
        Framing::Complete(total)
    } else {
        Framing::NeedMore
    })
}

/// A message may repeat Content-Length only with the same value: two
/// different ones would let two parsers split the stream differently.
fn one_content_length(seen: Option<usize>, next: usize) -> Result<usize, SipError> {
    match seen {
        Some(first) if first != next => Err(SipError::ConflictingContentLength(first, next)),
        _ => Ok(next),
    }
}

fn parse_content_length(value: &str) -> Result<usize, SipError> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 12 {
        return Err(SipError::BadContentLength(truncate(v, 64)));
    }
    v.parse().map_err(|_| SipError::BadContentLength(truncate(v, 64)))
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Header lines with continuation lines (starting with space or tab) joined
/// to the line before. The first item is the start line.
fn unfold(head: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in head.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) && lines.len() > 1 {
            if let Some(last) = lines.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            lines.push(line.to_string());
        }
    }
    lines
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

fn parse_start_line(line: &str) -> Result<StartLine, SipError> {
    let bad = || SipError::BadStartLine(truncate(line, 120));
    let mut parts = line.split_whitespace();
    let first = parts.next().ok_or_else(bad)?;
    if first.len() > 4 && first.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/")) {
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        if !(100..=699).contains(&status) {
            return Err(bad());
        }
        let reason = parts.collect::<Vec<_>>().join(" ");
        return Ok(StartLine::Response {
            version: first.to_string(),
            status,
            reason,
        });
    }
    let uri = parts.next().ok_or_else(bad)?;
    let version = parts.next().ok_or_else(bad)?;
    if parts.next().is_some() || !is_token(first) || !version.to_ascii_uppercase().starts_with("SIP/") {
        return Err(bad());
    }
    Ok(StartLine::Request {
        method: Method::from_token(first),
        uri: uri.to_string(),
        version: version.to_string(),
    })
}

impl Message {
    /// Parses one complete message (a datagram, or a frame cut by
    /// [`frame_length`]) with the default [`Limits`].
    pub fn parse(buf: &[u8]) -> Result<Message, SipError> {
        Message::parse_with(buf, &Limits::default())
    }

    /// Parses one complete message with explicit limits.
    ///
    /// The body is the bytes after the blank line, cut to Content-Length
    /// when it is present (extra bytes are ignored, as RFC 3261 §18.3 asks);
    /// without Content-Length it is everything that follows.
    pub fn parse_with(buf: &[u8], limits: &Limits) -> Result<Message, SipError> {
        let lead = skip_leading_crlf(buf);
        if lead == buf.len() {
            return Err(SipError::Empty);
        }
        let window_end = buf.len().min(lead + limits.max_header_bytes);
        let (head_end, body_start) = match header_end(&buf[..window_end], lead) {
            Some(end) => (end, end),
            None if buf.len() - lead >= limits.max_header_bytes => {
                return Err(SipError::HeadersTooLarge {
                    limit: limits.max_header_bytes,
                });
            }
            // No blank line: a message without a body that lost its final
            // empty line; read it as headers only.
            None => (buf.len(), buf.len()),
        };
        let head = String::from_utf8_lossy(&buf[lead..head_end]);
        let mut lines = unfold(&head).into_iter();
        let start_line = lines.next().ok_or(SipError::Empty)?;
        let start = parse_start_line(&start_line)?;
        let mut headers = Vec::new();
        for (index, line) in lines.enumerate() {
            if headers.len() >= limits.max_headers {
                return Err(SipError::TooManyHeaders {
                    limit: limits.max_headers,
                });
            }
            let bad = || SipError::BadHeader {
                line: index + 2,
                text: truncate(&line, 120),
            };
            if line.starts_with([' ', '\t']) {
                return Err(bad());
            }
            let (name, value) = line.split_once(':').ok_or_else(bad)?;
            let name = name.trim_end();
            if !is_token(name) {
                return Err(bad());
            }
            headers.push(Header {
                name: canonical_name(name).to_string(),
                value: value.trim().to_string(),
            });
        }
        let available = buf.len() - body_start;
        let mut content_length = None;
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("Content-Length"))
        {
            content_length = Some(one_content_length(
                content_length,
                parse_content_length(&h.value)?,
            )?);
        }
        let length = content_length.unwrap_or(available);
        if length > limits.max_body_bytes {
            return Err(SipError::BodyTooLarge {
                length,
                limit: limits.max_body_bytes,
            });
        }
        if length > available {
            return Err(SipError::Truncated {
                expected: length,
                available,
            });
        }
        let body = buf[body_start..body_start + length].to_vec();
        Ok(Message { start, headers, body })
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    /// Every header line, in order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The body bytes (exactly Content-Length of them).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI of a request, as sent.
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The user part of the Request-URI (`tenant` in
    /// `sip:tenant@srs.example.com`), used to pick the tenant.
    pub fn request_user(&self) -> Option<&str> {
        self.request_uri().and_then(uri_user)
    }

    /// The first value of a header (compact or full name, any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).next()
    }

    /// The values of every line of a header, in order.
    pub fn header_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |h| names_match(&h.name, name))
            .map(|h| h.value.as_str())
    }

    /// Every value of a list header (`Via`, `Contact`, `Supported`...):
    /// all lines, each split on commas outside quotes and angle brackets.
    pub fn header_values<'a>(&'a self, name: &str) -> Vec<&'a str> {
        self.header_all(name).flat_map(split_list).collect()
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str, SipError> {
        self.header("Call-ID")
            .filter(|v| !v.is_empty())
            .ok_or(SipError::MissingHeader("Call-ID"))
    }

    /// The CSeq (sequence number and method).
    pub fn cseq(&self) -> Result<CSeq, SipError> {
        let value = self.header("CSeq").ok_or(SipError::MissingHeader("CSeq"))?;
        CSeq::parse(value)
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr, SipError> {
        let value = self.header("From").ok_or(SipError::MissingHeader("From"))?;
        NameAddr::parse(value).ok_or_else(|| bad_value("From", value))
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr, SipError> {
        let value = self.header("To").ok_or(SipError::MissingHeader("To"))?;
        NameAddr::parse(value).ok_or_else(|| bad_value("To", value))
    }

    /// Every Via value, topmost first.
    pub fn vias(&self) -> Vec<Via> {
        self.header_values("Via")
            .into_iter()
            .filter_map(Via::parse)
            .collect()
    }

    /// The topmost Via (whose branch identifies the transaction).
    pub fn top_via(&self) -> Result<Via, SipError> {
        let value = self
            .header_values("Via")
            .into_iter()
            .next()
            .ok_or(SipError::MissingHeader("Via"))?;
        Via::parse(value).ok_or_else(|| bad_value("Via", value))
    }

    /// The first Contact.
    pub fn contact(&self) -> Option<NameAddr> {
        self.header_values("Contact")
            .into_iter()
            .next()
            .and_then(NameAddr::parse)
    }

    /// The Content-Type, if present and well formed.
    pub fn content_type(&self) -> Option<MediaType> {
        self.header("Content-Type").and_then(MediaType::parse)
    }

    /// Records on the top Via where the request really came from (RFC 3261
    /// §18.2.1 `received`, RFC 3581 `rport`), so that the responses, which
    /// copy it, say so.
    pub fn mark_received(&mut self, source: std::net::SocketAddr) {
        let Some(header) = self
            .headers
            .iter_mut()
            .find(|h| h.name.eq_ignore_ascii_case("Via"))
        else {
            return;
        };
        let mut values: Vec<String> = split_list(&header.value)
            .into_iter()
            .map(str::to_string)
            .collect();
        let Some(first) = values.first_mut() else {
            return;
        };
        let Some(via) = Via::parse(first) else {
            return;
        };
        let ip = source.ip().to_canonical();
        let host = via
            .sent_by
            .rsplit_once(':')
            .map_or(via.sent_by.as_str(), |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') {
                    h
                } else {
                    via.sent_by.as_str()
                }
            });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mut params: Vec<String> = Vec::new();
        let (head, tail) = first
            .split_once(';')
            .map_or((first.as_str(), ""), |(h, t)| (h, t));
        for param in tail.split(';').filter(|p| !p.trim().is_empty()) {
            let name = param.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("received") {
                continue;
            }
            if name.eq_ignore_ascii_case("rport") {
                params.push(format!("rport={}", source.port()));
            } else {
                params.push(param.trim().to_string());
            }
        }
        if host.parse::<std::net::IpAddr>().map(|h| h.to_canonical()) != Ok(ip) {
            params.push(format!("received={ip}"));
        }
        let mut value = head.trim().to_string();
        for p in params {
            value.push(';');
            value.push_str(&p);
        }
        *first = value;
        header.value = values.join(", ");
    }

    /// Builds a response to this request: Via (all), From, To, Call-ID and
    /// CSeq are copied. Add a To tag with [`ResponseBuilder::to_tag`].
    pub fn response(&self, status: u16) -> ResponseBuilder<'_> {
        ResponseBuilder {
            request: self,
            status,
            reason: None,
            to_tag: None,
            headers: Vec::new(),
            body: None,
        }
    }
}

fn bad_value(name: &'static str, value: &str) -> SipError {
    SipError::BadHeaderValue {
        name,
        value: truncate(value, 120),
    }
}

/// Splits on commas that are outside double quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// The user part of a SIP, SIPS or tel URI (`alice` in
/// `sip:alice;x=1@host;user=phone`, `+331` in `tel:+331;ext=2`). A bare
/// `user@host` (no scheme) is accepted too. Returns `None` when the URI has no
/// user part.
pub fn uri_user(uri: &str) -> Option<&str> {
    let uri = uri.trim().trim_start_matches('<');
    let lower = uri.get(..5).map(str::to_ascii_lowercase).unwrap_or_default();
    let (rest, is_tel) = if lower.starts_with("sips:") {
        (&uri[5..], false)
    } else if lower.starts_with("sip:") {
        (&uri[4..], false)
    } else if lower.starts_with("tel:") {
        (&uri[4..], true)
    } else {
        (uri, false)
    };
    let user = if is_tel {
        rest.split([';', '>', '?']).next()?
    } else {
        let at = rest.find('@')?;
        // Parameters of the user part (`;phone-context=`) are not the user.
        rest[..at].split(';').next()?.split(':').next()?
    };
    let user = user.trim();
    (!user.is_empty()).then_some(user)
}

/// A CSeq header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub number: u32,
    pub method: Method,
}

impl CSeq {
    /// Parses `101 INVITE`.
    pub fn parse(value: &str) -> Result<CSeq, SipError> {
        let mut parts = value.split_whitespace();
        let number = parts.next().and_then(|n| n.parse::<u32>().ok());
        let method = parts.next().filter(|m| is_token(m));
        match (number, method, parts.next()) {
            (Some(number), Some(method), None) => Ok(CSeq {
                number,
                method: Method::from_token(method),
            }),
            _ => Err(bad_value("CSeq", value)),
        }
    }
}

/// A header parameter: `name` or `name=value`, value unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

/// Parses `;a=1;b;c="x;y"` (the leading `;` optional) into parameters.
fn parse_params(s: &str) -> Vec<Param> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches(';').trim_start();
        if rest.is_empty() {
            break;
        }
        let name_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let name = rest[..name_end].trim().to_string();
        rest = &rest[name_end..];
        let mut value = None;
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            if let Some(q) = after.strip_prefix('"') {
                let (v, remaining) = take_quoted(q);
                value = Some(v);
                rest = remaining;
            } else {
                let end = after.find(';').unwrap_or(after.len());
                value = Some(after[..end].trim().to_string());
                rest = &after[end..];
            }
        }
        if !name.is_empty() {
            out.push(Param { name, value });
        }
    }
    out
}

/// Reads a quoted string's content (after its opening quote) up to the
/// closing quote, undoing backslash escapes. An unterminated string runs to
/// the end.
fn take_quoted(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            }
            '"' => return (out, &s[i + 1..]),
            c => out.push(c),
        }
    }
    (out, "")
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .and_then(|p| p.value.as_deref())
}

/// A name-addr or addr-spec with header parameters: the value of From, To,
/// Contact, P-Asserted-Identity, Diversion...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted, if any.
    pub display_name: Option<String>,
    /// The URI without angle brackets.
    pub uri: String,
    /// Header parameters (after the URI), such as `tag`.
    pub params: Vec<Param>,
}

impl NameAddr {
    /// Parses `"Alice" <sip:alice@example.com>;tag=1`, `<sip:a@b>`, or a
    /// bare `sip:a@b;tag=1` (whose parameters are header parameters).
    pub fn parse(value: &str) -> Option<NameAddr> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let (display, after_display) = if let Some(q) = value.strip_prefix('"') {
            let (name, rest) = take_quoted(q);
            (Some(name), rest.trim_start())
        } else {
            match value.find('<') {
                Some(lt) => {
                    let d = value[..lt].trim();
                    ((!d.is_empty()).then(|| d.to_string()), &value[lt..])
                }
                None => (None, value),
            }
        };
        if let Some(inner) = after_display.strip_prefix('<') {
            let gt = inner.find('>')?;
            let uri = inner[..gt].trim().to_string();
            let params = parse_params(&inner[gt + 1..]);
            Some(NameAddr {
                display_name: display.filter(|d| !d.is_empty()),
                uri,
                params,
            })
        } else if display.is_none() {
            let end = after_display.find(';').unwrap_or(after_display.len());
            let uri = after_display[..end].trim().to_string();
            let params = parse_params(&after_display[end..]);
            (!uri.is_empty()).then_some(NameAddr {
                display_name: None,
                uri,
                params,
            })
        } else {
            None
        }
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        find_param(&self.params, "tag")
    }

    /// A header parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }

    /// The URI's user part.
    pub fn user(&self) -> Option<&str> {
        uri_user(&self.uri)
    }
}

/// A Via value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`...
    pub transport: String,
    /// `host` or `host:port`.
    pub sent_by: String,
    pub params: Vec<Param>,
}

impl Via {
    /// Parses `SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`.
    pub fn parse(value: &str) -> Option<Via> {
        let value = value.trim();
        let (protocol, rest) = value.split_once(char::is_whitespace)?;
        let transport = protocol.rsplit('/').next()?.to_string();
        let rest = rest.trim_start();
        let end = rest.find(';').unwrap_or(rest.len());
        let sent_by = rest[..end].trim().to_string();
        if sent_by.is_empty() || transport.is_empty() {
            return None;
        }
        Some(Via {
            transport,
            sent_by,
            params: parse_params(&rest[end..]),
        })
    }

    /// The `branch` parameter (the transaction id with RFC 3261 peers).
    pub fn branch(&self) -> Option<&str> {
        find_param(&self.params, "branch")
    }

    /// A parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }
}

/// A MIME media type with parameters (Content-Type of a message or a part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// Lower-cased type (`multipart`).
    pub kind: String,
    /// Lower-cased subtype (`mixed`).
    pub subtype: String,
    /// Parameters, values unquoted (`boundary`).
    pub params: Vec<Param>,
}

impl MediaType {
    /// Parses `multipart/mixed; boundary="abc"`.
    pub fn parse(value: &str) -> Option<MediaType> {
        let value = value.trim();
        let end = value.find(';').unwrap_or(value.len());
        let (kind, subtype) = value[..end].split_once('/')?;
        let (kind, subtype) = (
            kind.trim().to_ascii_lowercase(),
            subtype.trim().to_ascii_lowercase(),
        );
        if !is_token(&kind) || !is_token(&subtype) {
            return None;
        }
        Some(MediaType {
            kind,
            subtype,
            params: parse_params(&value[end..]),
        })
    }

    /// `type/subtype`, lower case.
    pub fn essence(&self) -> String {
        format!("{}/{}", self.kind, self.subtype)
    }

    /// Whether this is `type/subtype` (case-insensitive).
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// A parameter by name (case-insensitive), unquoted.
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }

    /// Whether this is a `multipart/*` type.
    pub fn is_multipart(&self) -> bool {
        self.kind == "multipart"
    }

    /// Whether this is SDP (`application/sdp`).
    pub fn is_sdp(&self) -> bool {
        self.is("application", "sdp")
    }

    /// Whether this is recording metadata: `application/rs-metadata+xml`, or
    /// `application/rs-metadata` as several recording clients send it.
    pub fn is_recording_metadata(&self) -> bool {
        self.kind == "application" && (self.subtype == "rs-metadata+xml" || self.subtype == "rs-metadata")
    }
}

/// The usual reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => match status / 100 {
            1 => "Provisional",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// Builds the bytes of a response to a request, from [`Message::response`].
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'a> {
    request: &'a Message,
    status: u16,
    reason: Option<String>,
    to_tag: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
}

impl ResponseBuilder<'_> {
    /// Overrides the reason phrase (default: [`reason_phrase`]).
    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(sanitize_line(reason));
        self
    }

    /// Adds `;tag=` to the copied To header unless the request's To already
    /// has one (a request inside a dialog). Ignored on a 100 Trying.
    pub fn to_tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(sanitize_line(tag));
        self
    }

    /// Adds a header line (Contact, Allow, Supported, Require...).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((sanitize_line(name), sanitize_line(value)));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((sanitize_line(content_type), body.into()));
        self
    }

    /// Serialises the response with CRLF line ends and a Content-Length.
    pub fn build(self) -> Vec<u8> {
        let req = self.request;
        let reason = self
            .reason
            .unwrap_or_else(|| reason_phrase(self.status).to_string());
        let mut out = format!("SIP/2.0 {} {}\r\n", self.status, reason);
        for via in req.header_all("Via") {
            out.push_str(&format!("Via: {via}\r\n"));
        }
        if let Some(from) = req.header("From") {
            out.push_str(&format!("From: {from}\r\n"));
        }
        if let Some(to) = req.header("To") {
            let has_tag = NameAddr::parse(to).is_some_and(|n| n.tag().is_some());
            match self.to_tag {
                Some(tag) if !has_tag && self.status > 100 => {
                    out.push_str(&format!("To: {to};tag={tag}\r\n"))
                }
                _ => out.push_str(&format!("To: {to}\r\n")),
            }
        }
        if let Some(call_id) = req.header("Call-ID") {
            out.push_str(&format!("Call-ID: {call_id}\r\n"));
        }
        if let Some(cseq) = req.header("CSeq") {
            out.push_str(&format!("CSeq: {cseq}\r\n"));
        }
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = match self.body {
            Some((content_type, body)) => {
                out.push_str(&format!("Content-Type: {content_type}\r\n"));
                body
            }
            None => Vec::new(),
        };
        out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&body);
        bytes
    }
}

/// Header text we emit must not break the framing: line ends become spaces.
fn sanitize_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}
