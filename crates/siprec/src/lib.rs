//! SIPREC (RFC 7866) parsing for a Session Recording Server, with no I/O:
//! bytes in, values out. The SIP listener owns sockets, transactions and
//! timers; everything it needs to understand and answer a recording client
//! lives here.
//!
//! - [`sip`]: SIP messages: [`sip::Message::parse`] for a datagram,
//!   [`sip::frame_length`] to cut messages out of a TCP stream, typed
//!   header accessors, and [`sip::Message::response`] to build replies.
//! - [`multipart`]: MIME multipart bodies split into parts.
//! - [`sdp`]: SDP offers, the recording plan for each m-line
//!   ([`sdp::plan`]) and our `recvonly` G.711 answer ([`sdp::answer`]).
//! - [`metadata`]: RFC 7865 recording metadata in the dialects real
//!   clients send, Cisco participant headers, and merging of `partial`
//!   snapshots ([`metadata::Metadata::merge`]).
//! - [`recording`]: a request body taken apart into its SDP and metadata
//!   ([`recording::parse_body`]).
//! - [`flatten`]: headers and metadata flattened to call metadata keys;
//!   the rules are in `crates/siprec/FLATTENING.md`.
//! - [`media`]: RTP headers, G.711 decoding, a per-stream recorder placing
//!   samples by timestamp, and WAV bytes.
//!
//! Every parser bounds what it accepts (sizes, counts, depth) and reports
//! malformed input as an error value; none panics on any input (the fuzz
//! targets in `crates/siprec/fuzz` check that).

pub mod flatten;
pub mod media;
pub mod metadata;
pub mod multipart;
pub mod recording;
pub mod sdp;
pub mod sip;
