//! SDP offers (RFC 4566) and our answers (RFC 3264), as a recording server.
//!
//! The parser keeps what the recorder needs: session and media connection
//! addresses, each m-line's media type, port, protocol and formats, rtpmap and
//! fmtp, `a=label` (which ties an m-line to a metadata stream) and direction.
//! Lines it does not understand are skipped, so an SDP with vendor attributes
//! or elided lines still parses; a body without one valid m-line does not.
//!
//! The answer has the offer's m-lines in the offer's order. An audio m-line
//! over RTP/AVP(F) with G.711 gets a port and `a=recvonly` with one G.711
//! codec (PCMU or PCMA, whichever the offer lists first, even behind other
//! codecs) plus telephone-event when offered; any other m-line is rejected
//! with port 0.

use std::fmt::Write as _;

/// The largest SDP body we parse.
pub const MAX_SDP_BYTES: usize = 256 * 1024;
/// The most m-lines we keep.
pub const MAX_MEDIA: usize = 64;

/// Why an SDP body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP body of {0} bytes is too large")]
    TooLarge(usize),
    #[error("SDP body is not text")]
    NotText,
    #[error("no media line in the SDP")]
    NoMedia,
    #[error("malformed media line {0:?}")]
    BadMediaLine(String),
    #[error("more than {MAX_MEDIA} media lines")]
    TooManyMedia,
}

/// Stream direction attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// A `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The address, without a TTL or count suffix.
    pub address: String,
}

/// An `a=rtpmap:` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    /// The encoding name as offered (`PCMU`, `telephone-event`).
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

/// One m-line with its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`...
    pub kind: String,
    pub port: u16,
    /// The `/count` of the port, if any.
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`...
    pub proto: String,
    /// The format list in the offer's order (payload types for RTP).
    pub formats: Vec<String>,
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:` per format: (format, parameters).
    pub fmtps: Vec<(String, String)>,
    /// `a=label:`, which metadata streams refer to.
    pub label: Option<String>,
    pub direction: Option<Direction>,
    /// The media-level `c=`, if any.
    pub connection: Option<Connection>,
    /// Every other attribute, as (name, value).
    pub attributes: Vec<(String, Option<String>)>,
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The `o=` line's value.
    pub origin: Option<String>,
    /// The `s=` line's value.
    pub session_name: Option<String>,
    /// The session-level `c=`.
    pub connection: Option<Connection>,
    /// The session-level direction, the default for every m-line.
    pub direction: Option<Direction>,
    pub media: Vec<Media>,
}

impl Media {
    /// The rtpmap for a payload type, if the offer gave one.
    pub fn rtpmap(&self, payload_type: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|r| r.payload_type == payload_type)
    }

    /// The fmtp parameters for a format.
    pub fn fmtp(&self, format: &str) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(f, _)| f == format)
            .map(|(_, p)| p.as_str())
    }

    /// The encoding of a payload type: its rtpmap, or the static RTP/AVP
    /// assignment (RFC 3551) for the ones we care about.
    pub fn encoding(&self, payload_type: u8) -> Option<(String, u32)> {
        if let Some(map) = self.rtpmap(payload_type) {
            return Some((map.encoding.to_ascii_uppercase(), map.clock_rate));
        }
        let name = match payload_type {
            0 => "PCMU",
            3 => "GSM",
            8 => "PCMA",
            9 => "G722",
            13 => "CN",
            18 => "G729",
            _ => return None,
        };
        Some((name.to_string(), 8000))
    }
}

fn parse_connection(value: &str) -> Option<Connection> {
    let mut it = value.split_whitespace();
    let _net = it.next()?;
    let addr_type = it.next()?.to_string();
    let address = it.next()?.split('/').next()?.to_string();
    Some(Connection { addr_type, address })
}

fn parse_media_line(value: &str) -> Result<Media, SdpError> {
    let bad = || SdpError::BadMediaLine(value.chars().take(120).collect());
    let mut it = value.split_whitespace();
    let kind = it.next().ok_or_else(bad)?.to_ascii_lowercase();
    let port_field = it.next().ok_or_else(bad)?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, c)) => (p.parse().map_err(|_| bad())?, Some(c.parse().map_err(|_| bad())?)),
        None => (port_field.parse().map_err(|_| bad())?, None),
    };
    let proto = it.next().ok_or_else(bad)?.to_string();
    let formats: Vec<String> = it.take(64).map(str::to_string).collect();
    Ok(Media {
        kind,
        port,
        port_count,
        proto,
        formats,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        label: None,
        direction: None,
        connection: None,
        attributes: Vec::new(),
    })
}

fn parse_rtpmap(value: &str) -> Option<RtpMap> {
    let (pt, rest) = value.trim().split_once(char::is_whitespace)?;
    let payload_type = pt.parse().ok()?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.trim().to_string();
    let clock_rate = parts.next()?.trim().parse().ok()?;
    let channels = parts.next().and_then(|c| c.trim().parse().ok());
    Some(RtpMap {
        payload_type,
        encoding,
        clock_rate,
        channels,
    })
}

/// Parses an SDP body.
pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
    let mut sdp = SessionDescription {
        origin: None,
        session_name: None,
        connection: None,
        direction: None,
        media: Vec::new(),
    };
    for raw in text.split('\n') {
        let line = raw.trim_end_matches('\r').trim();
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        if kind.len() != 1 {
            continue;
        }
        let value = value.trim();
        let media = sdp.media.last_mut();
        match (kind, media) {
            ("m", _) => {
                if sdp.media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooManyMedia);
                }
                sdp.media.push(parse_media_line(value)?);
            }
            ("o", None) => sdp.origin = Some(value.to_string()),
            ("s", None) => sdp.session_name = Some(value.to_string()),
            ("c", None) => sdp.connection = parse_connection(value),
            ("c", Some(m)) => m.connection = parse_connection(value),
            ("a", None) => {
                let (name, _) = split_attribute(value);
                if let Some(d) = Direction::parse(&name.to_ascii_lowercase()) {
                    sdp.direction = Some(d);
                }
            }
            ("a", Some(m)) => media_attribute(m, value),
            _ => {}
        }
    }
    if sdp.media.is_empty() {
        return Err(SdpError::NoMedia);
    }
    Ok(sdp)
}

/// `name:value` or a bare `name`.
fn split_attribute(value: &str) -> (&str, Option<&str>) {
    match value.split_once(':') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (value, None),
    }
}

/// An `a=` line of a media section (at most 64 of each kind are kept).
fn media_attribute(m: &mut Media, value: &str) {
    let (name, val) = split_attribute(value);
    let lower = name.to_ascii_lowercase();
    if let Some(d) = Direction::parse(&lower) {
        m.direction = Some(d);
        return;
    }
    match (lower.as_str(), val) {
        ("rtpmap", Some(v)) => {
            if let Some(map) = parse_rtpmap(v)
                && m.rtpmaps.len() < 64
            {
                m.rtpmaps.push(map);
            }
        }
        ("fmtp", Some(v)) => {
            if let Some((f, p)) = v.split_once(char::is_whitespace)
                && m.fmtps.len() < 64
            {
                m.fmtps.push((f.to_string(), p.trim().to_string()));
            }
        }
        ("label", Some(v)) => m.label = Some(v.to_string()),
        _ => {
            if m.attributes.len() < 64 {
                m.attributes.push((name.to_string(), val.map(str::to_string)));
            }
        }
    }
}

/// A G.711 codec we record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
}

impl Codec {
    /// The rtpmap encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// What the answer does with one m-line of the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// The m-line's position in the offer (0-based).
    pub index: usize,
    pub kind: String,
    /// The offer's `a=label`, which metadata streams refer to.
    pub label: Option<String>,
    /// The chosen payload type and codec; `None` when the m-line is rejected.
    pub codec: Option<(u8, Codec)>,
    /// The offered telephone-event payload type at 8 kHz, kept in the
    /// answer so the recorder knows which packets to ignore.
    pub telephone_event: Option<u8>,
    /// The offered comfort-noise payload type (13 unless mapped otherwise).
    pub comfort_noise: Option<u8>,
    /// Where the client will send from: the media or session `c=` address
    /// and the m-line port.
    pub remote: Option<(String, u16)>,
    /// Our direction in the answer: `recvonly`, or `inactive` when the
    /// offer's stream is inactive (RFC 3264 §6.1 allows nothing else).
    pub direction: Direction,
}

impl StreamPlan {
    /// Whether the m-line is accepted (gets a port).
    pub fn accepted(&self) -> bool {
        self.codec.is_some()
    }

    /// The chosen payload type.
    pub fn payload_type(&self) -> Option<u8> {
        self.codec.map(|(pt, _)| pt)
    }
}

/// Decides, for each m-line of the offer, whether we record it and with
/// which codec. The listener allocates ports for the accepted ones, then
/// calls [`answer`].
pub fn plan(offer: &SessionDescription) -> Vec<StreamPlan> {
    offer
        .media
        .iter()
        .enumerate()
        .map(|(index, m)| plan_media(offer, index, m))
        .collect()
}

fn plan_media(offer: &SessionDescription, index: usize, m: &Media) -> StreamPlan {
    let rtp_plain = matches!(m.proto.to_ascii_uppercase().as_str(), "RTP/AVP" | "RTP/AVPF");
    let usable = m.kind == "audio" && rtp_plain && m.port != 0;
    let mut codec = None;
    let mut telephone_event = None;
    let mut comfort_noise = None;
    for format in &m.formats {
        let Ok(pt) = format.parse::<u8>() else { continue };
        if pt > 127 {
            continue;
        }
        let Some((name, rate)) = m.encoding(pt) else {
            continue;
        };
        match (name.as_str(), rate) {
            ("PCMU", 8000) if codec.is_none() => codec = Some((pt, Codec::Pcmu)),
            ("PCMA", 8000) if codec.is_none() => codec = Some((pt, Codec::Pcma)),
            ("TELEPHONE-EVENT", 8000) if telephone_event.is_none() => telephone_event = Some(pt),
            ("CN", 8000) if comfort_noise.is_none() => comfort_noise = Some(pt),
            _ => {}
        }
    }
    let connection = m.connection.as_ref().or(offer.connection.as_ref());
    let direction = match m.direction.or(offer.direction) {
        Some(Direction::Inactive) => Direction::Inactive,
        _ => Direction::RecvOnly,
    };
    let codec = if usable { codec } else { None };
    StreamPlan {
        index,
        kind: m.kind.clone(),
        label: m.label.clone(),
        codec,
        telephone_event: codec.and(telephone_event),
        comfort_noise: codec.and(comfort_noise),
        remote: connection.map(|c| (c.address.clone(), m.port)),
        direction,
    }
}

/// Our side of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerOptions {
    /// The address we receive RTP on (`c=` and `o=`), IPv4 or IPv6.
    pub address: String,
    /// The `o=` session id (e.g. derived from the call).
    pub session_id: u64,
    /// The `o=` version; increase it for each new answer in a dialog.
    pub session_version: u64,
}

/// The answer to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The SDP text, CRLF line ends.
    pub sdp: String,
    /// One entry per m-line, in the offer's order, with the port we gave.
    pub streams: Vec<AnsweredStream>,
}

/// An m-line of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredStream {
    pub plan: StreamPlan,
    /// Our port, 0 when rejected.
    pub port: u16,
}

/// Builds the answer. `port` is called once per accepted m-line with its
/// plan and returns the local RTP port for it (e.g. `base + 2 * k`);
/// rejected m-lines get port 0.
pub fn answer(
    offer: &SessionDescription,
    options: &AnswerOptions,
    mut port: impl FnMut(&StreamPlan) -> u16,
) -> Answer {
    let ip = if options.address.contains(':') {
        "IP6"
    } else {
        "IP4"
    };
    let mut sdp = String::new();
    let _ = write!(
        sdp,
        "v=0\r\no=callmeta {} {} IN {ip} {}\r\ns=callmeta\r\nc=IN {ip} {}\r\nt=0 0\r\n",
        options.session_id, options.session_version, options.address, options.address
    );
    let mut streams = Vec::new();
    for (plan, m) in plan(offer).into_iter().zip(&offer.media) {
        let local_port = if plan.accepted() { port(&plan) } else { 0 };
        match plan.codec {
            Some((pt, codec)) if local_port != 0 => {
                let mut fmts = pt.to_string();
                if let Some(te) = plan.telephone_event {
                    let _ = write!(fmts, " {te}");
                }
                let _ = write!(sdp, "m={} {local_port} {} {fmts}\r\n", m.kind, m.proto);
                let _ = write!(sdp, "a=rtpmap:{pt} {}/8000\r\n", codec.name());
                if let Some(te) = plan.telephone_event {
                    let _ = write!(sdp, "a=rtpmap:{te} telephone-event/8000\r\n");
                    if let Some(params) = m.fmtp(&te.to_string()) {
                        let _ = write!(sdp, "a=fmtp:{te} {}\r\n", single_line(params));
                    }
                }
                if let Some(label) = &m.label {
                    let _ = write!(sdp, "a=label:{}\r\n", single_line(label));
                }
                let _ = write!(sdp, "a={}\r\n", plan.direction.as_str());
            }
            _ => {
                // RFC 3264 §6: a rejected stream keeps its formats, port 0.
                let fmts = if m.formats.is_empty() {
                    "0".to_string()
                } else {
                    m.formats.join(" ")
                };
                let _ = write!(
                    sdp,
                    "m={} 0 {} {}\r\n",
                    single_line(&m.kind),
                    single_line(&m.proto),
                    single_line(&fmts)
                );
            }
        }
        let accepted_port = if plan.accepted() { local_port } else { 0 };
        streams.push(AnsweredStream {
            plan,
            port: accepted_port,
        });
    }
    Answer { sdp, streams }
}

fn single_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}
