//! SIPREC parsing with no I/O: bytes in, values out.
pub mod flatten;
pub mod media;
pub mod metadata;
pub mod multipart;
pub mod recording;
pub mod sdp;
pub mod sip;
