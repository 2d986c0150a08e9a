//! An SDP offer, planned and answered; our answer must parse again.
#![no_main]

use callmeta_siprec::sdp::{self, AnswerOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = sdp::parse(data) else { return };
    let options = AnswerOptions { address: "192.0.2.1".into(), session_id: 1, session_version: 1 };
    let answer = sdp::answer(&offer, &options, |p| 40_000 + 2 * p.index as u16);
    let reparsed = sdp::parse(answer.sdp.as_bytes()).expect("our answer parses");
    assert_eq!(reparsed.media.len(), offer.media.len(), "same number of m-lines");
});
