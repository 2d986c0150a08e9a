//! A whole SIP message through everything the listener would run on it:
//! framing, parsing, accessors, the reply, the body and the flattening.
#![no_main]

use callmeta_siprec::flatten::{FlattenOptions, flatten};
use callmeta_siprec::recording::parse_body;
use callmeta_siprec::sdp::{self, AnswerOptions};
use callmeta_siprec::sip::{Limits, Message, frame_length};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = frame_length(data, &Limits::default());
    let Ok(message) = Message::parse(data) else { return };
    let _ = (message.cseq(), message.from(), message.to(), message.vias(), message.contact());
    let _ = (message.request_user(), message.top_via(), message.call_id());
    let _ = message.response(200).to_tag("t").header("Contact", "<sip:srs>").body("application/sdp", "v=0").build();
    let Ok(body) = parse_body(&message) else { return };
    if let Some(offer) = &body.sdp {
        let options = AnswerOptions { address: "192.0.2.1".into(), session_id: 1, session_version: 1 };
        let _ = sdp::answer(offer, &options, |p| 40_000 + 2 * p.index as u16);
    }
    let _ = flatten(message.headers(), body.metadata.as_ref(), &FlattenOptions::default());
});
