//! Broken, hostile and huge input: every parser answers with an error value
//! (or a value), quickly, and never panics.

use std::time::{Duration, Instant};

use callmeta_siprec::flatten::{FlattenOptions, MAX_KEYS, MAX_VALUE_CHARS, flatten};
use callmeta_siprec::media::{RecorderConfig, StreamRecorder, parse_rtp};
use callmeta_siprec::metadata::{self, MetadataError};
use callmeta_siprec::multipart::{self, MultipartError};
use callmeta_siprec::recording::parse_body;
use callmeta_siprec::sdp;
use callmeta_siprec::sip::{Header, Limits, MediaType, Message, SipError, frame_length};

use crate::support::{as_message, fixtures};

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Runs every parser on the input; only panics matter here.
fn everything(input: &[u8]) {
    let _ = frame_length(input, &Limits::default());
    if let Ok(m) = Message::parse(input) {
        let _ = (
            m.cseq(),
            m.from(),
            m.to(),
            m.vias(),
            m.contact(),
            m.request_user(),
        );
        let _ = m.response(200).to_tag("t").build();
        if let Ok(body) = parse_body(&m) {
            let _ = flatten(m.headers(), body.metadata.as_ref(), &FlattenOptions::default());
        }
    }
    let ct = MediaType::parse("multipart/mixed;boundary=b");
    let _ = multipart::split(ct.as_ref(), input);
    if let Ok(offer) = sdp::parse(input) {
        let _ = sdp::plan(&offer);
    }
    let _ = metadata::parse(input);
    let _ = parse_rtp(input);
}

#[test]
fn every_truncation_of_every_fixture() {
    for (name, text) in fixtures() {
        let msg = as_message(&text, true);
        let bytes = msg.as_bytes();
        // Every cut through the headers, every fifth through the body (the
        // parsers are linear; this keeps the debug-build test quick).
        let body_start = msg.find("\r\n\r\n").map_or(bytes.len(), |i| i + 4);
        for cut in (0..bytes.len()).filter(|c| *c <= body_start || c % 5 == 0) {
            everything(&bytes[..cut]);
        }
        // A truncated body is caught by Content-Length.
        let cut = &bytes[..bytes.len() - 10];
        if let Err(e) = Message::parse(cut) {
            assert!(matches!(e, SipError::Truncated { .. }), "{name}: {e}");
        }
    }
}

#[test]
fn fixtures_with_lf_but_their_crlf_content_length_are_truncated() {
    let (_, text) = fixtures()
        .into_iter()
        .find(|(n, _)| n == "asterisk-intrado-1")
        .expect("fixture");
    let lf = crate::support::strip_comment(&text);
    assert_eq!(
        Message::parse(lf.as_bytes()),
        Err(SipError::Truncated {
            expected: 1862,
            available: 1803
        })
    );
}

#[test]
fn random_bytes_and_mutations() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let n = (rng.next() % 2000) as usize;
        let bytes = rng.bytes(n);
        everything(&bytes);
    }
    let all = fixtures();
    for (_, text) in &all {
        let base = as_message(text, true).into_bytes();
        for _ in 0..40 {
            let mut m = base.clone();
            for _ in 0..(1 + rng.next() % 8) {
                let i = (rng.next() as usize) % m.len();
                m[i] = rng.next() as u8;
            }
            everything(&m);
        }
    }
}

#[test]
fn ten_megabyte_headers_are_refused_quickly() {
    let mut big = b"INVITE sip:x SIP/2.0\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let start = Instant::now();
    assert_eq!(
        Message::parse(&big),
        Err(SipError::HeadersTooLarge { limit: 64 * 1024 })
    );
    assert!(matches!(
        frame_length(&big, &Limits::default()),
        Err(SipError::HeadersTooLarge { .. })
    ));
    let mut many = b"INVITE sip:x SIP/2.0\r\n".to_vec();
    for i in 0..1000 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(
        Message::parse(&many),
        Err(SipError::TooManyHeaders { limit: 256 })
    );
    let mut folded = b"INVITE sip:x SIP/2.0\r\nX-Fold: a\r\n".to_vec();
    folded.extend(std::iter::repeat_n(&b" b\r\n"[..], 100_000).flatten());
    assert!(
        Message::parse(&folded).is_err(),
        "folding cannot bypass the header limit"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn multipart_without_a_usable_boundary() {
    let mixed = |b: &str| MediaType::parse(&format!("multipart/mixed{b}")).expect("type");
    assert_eq!(
        multipart::split(Some(&mixed("")), b"--x\r\n\r\nhi"),
        Err(MultipartError::MissingBoundary)
    );
    assert_eq!(
        multipart::split(Some(&mixed(";boundary=\"zz\"")), b"no delimiter here"),
        Err(MultipartError::BoundaryNotFound("zz".into()))
    );
    assert!(matches!(
        multipart::split(Some(&mixed(";boundary=\"\"")), b"--\r\n"),
        Err(MultipartError::BadBoundary(_))
    ));
    let many = "--b\r\n\r\nx\r\n".repeat(1000);
    assert_eq!(
        multipart::split(Some(&mixed(";boundary=b")), many.as_bytes()),
        Err(MultipartError::TooManyParts)
    );
    // A prefix of the boundary is not the boundary; an unterminated last
    // part runs to the end.
    let parts = multipart::split(
        Some(&mixed(";boundary=abc")),
        b"--ab\r\n--abc\r\nContent-Type: a/b\r\n\r\nbody\r\n--abcd",
    )
    .expect("splits");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].body, b"body\r\n--abcd");
}

const LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE recording [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<recording xmlns="urn:ietf:params:xml:ns:recording:1"><participant participant_id="p"><nameID aor="&lol9;"/></participant></recording>"#;

#[test]
fn xml_bombs_and_external_entities_are_refused() {
    assert_eq!(
        metadata::parse(LAUGHS.as_bytes()),
        Err(MetadataError::DtdNotAllowed)
    );
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><recording>&x;</recording>"#;
    assert_eq!(metadata::parse(xxe.as_bytes()), Err(MetadataError::DtdNotAllowed));
    let undeclared = "<recording><participant participant_id='&x;'/></recording>";
    assert!(matches!(
        metadata::parse(undeclared.as_bytes()),
        Err(MetadataError::Xml(_))
    ));
    // Predefined and character entities are fine.
    let ok = "<recording><participant participant_id='a&amp;b&#65;'/></recording>";
    assert_eq!(
        metadata::parse(ok.as_bytes()).expect("parses").participants[0].id,
        "a&bA"
    );
}

#[test]
fn deep_wide_and_huge_xml() {
    let deep = format!(
        "<recording>{}{}</recording>",
        "<a>".repeat(50_000),
        "</a>".repeat(50_000)
    );
    assert!(matches!(
        metadata::parse(deep.as_bytes()),
        Err(MetadataError::TooDeep | MetadataError::Xml(_))
    ));
    let deep_ext = format!(
        "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><session session_id='s'>{}{}</session></recording>",
        "<x:a xmlns:x='urn:x'>".repeat(40),
        "</x:a>".repeat(40)
    );
    assert_eq!(metadata::parse(deep_ext.as_bytes()), Err(MetadataError::TooDeep));
    let wide = format!(
        "<recording>{}</recording>",
        "<participant participant_id='p'/>".repeat(200_000)
    );
    assert!(matches!(
        metadata::parse(wide.as_bytes()),
        Err(MetadataError::TooLarge(_) | MetadataError::Xml(_))
    ));
    let nodes = format!("<recording>{}</recording>", "<a/>".repeat(150_000));
    assert!(
        matches!(metadata::parse(nodes.as_bytes()), Err(MetadataError::Xml(_))),
        "node limit"
    );
    assert!(matches!(
        metadata::parse(b"<recording><unclosed></recording>"),
        Err(MetadataError::Xml(_))
    ));
    assert!(matches!(metadata::parse(b""), Err(MetadataError::Xml(_))));
    assert!(matches!(
        metadata::parse(&[0xff, 0xfe, 0x3c, 0x00]),
        Err(MetadataError::Xml(_))
    ));
}

#[test]
fn flattened_values_and_key_counts_are_bounded() {
    let long = "9".repeat(5_000);
    let mut doc = String::from("<recording xmlns='urn:ietf:params:xml:ns:recording:1'>");
    for i in 0..100 {
        doc.push_str(&format!("<participant participant_id='p{i}'><nameID aor='sip:{i}@x'><name>{long}</name></nameID></participant>"));
    }
    doc.push_str("<session session_id='s'><e xmlns='urn:x'>");
    for i in 0..2000 {
        doc.push_str(&format!("<k{i}>v</k{i}>"));
    }
    doc.push_str("</e></session></recording>");
    let md = metadata::parse(doc.as_bytes()).expect("parses");
    let headers: Vec<Header> = (0..300)
        .map(|i| Header {
            name: format!("X-H{i}"),
            value: long.clone(),
        })
        .collect();
    let keys = flatten(&headers, Some(&md), &FlattenOptions::default());
    assert!(keys.len() <= MAX_KEYS);
    assert!(keys.values().all(|v| v.chars().count() <= MAX_VALUE_CHARS));
    assert!(keys.keys().all(|k| {
        k.len() <= 128
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    }));
    assert!(keys.contains_key("participant_32_aor") && !keys.contains_key("participant_33_aor"));
}

#[test]
fn rtp_garbage_never_panics_the_recorder() {
    let mut rng = Rng(42);
    let mut r = StreamRecorder::new(RecorderConfig {
        max_samples: 8000 * 600,
        ..RecorderConfig::default()
    });
    for i in 0..20_000u64 {
        let n = 12 + (rng.next() % 200) as usize;
        let mut p = rng.bytes(n);
        p[0] = 0x80 | (p[0] & 0x3f);
        p[1] &= 0x7f;
        if i % 2 == 0 {
            p[1] = if i % 4 == 0 { 0 } else { 8 };
        }
        let _ = r.push_datagram(&p, (i % 3 == 0).then(|| Duration::from_millis(i)));
    }
    assert!(r.end() <= 8000 * 600);
}
