//! Metadata dialects: namespaces not prefixes, any case, extension data,
//! body layouts.

use std::collections::BTreeMap;

use callmeta_siprec::flatten::{FlattenOptions, flatten};
use callmeta_siprec::metadata::{self, DataMode, Dialect, Metadata, MetadataError};
use callmeta_siprec::recording::{BodyError, parse_body};
use callmeta_siprec::sip::Message;

fn keys(md: &Metadata) -> BTreeMap<String, String> {
    flatten(&[], Some(md), &FlattenOptions::default())
}

const RFC_DEFAULT_NS: &str = r#"<?xml version="1.0"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1" xmlns:v="http://vendor.example.com/siprec/ext">
  <dataMode>complete</dataMode>
  <session session_id="s1"><start-time>2026-01-30T13:34:56+01:00</start-time>
    <v:agent><v:id>cindy</v:id></v:agent>
  </session>
  <participant participant_id="p1"><nameID aor="sip:+33102030405@sbc"><name>Customer</name></nameID></participant>
  <participant participant_id="p2"><nameID aor="sip:cindy@pbx"/></participant>
  <stream stream_id="st1" session_id="s1"><label>1</label></stream>
</recording>"#;

/// The same document with prefixes everywhere, other prefix names, and
/// element names in other cases.
const RFC_PREFIXED: &str = r#"<?xml version="1.0"?>
<rec:RECORDING xmlns:rec="urn:ietf:params:xml:ns:recording:1" xmlns:zz="http://vendor.example.com/siprec/ext">
  <rec:DATAMODE>complete</rec:DATAMODE>
  <rec:Session Session_ID="s1"><rec:Start-Time>2026-01-30T13:34:56+01:00</rec:Start-Time>
    <zz:agent><zz:id>cindy</zz:id></zz:agent>
  </rec:Session>
  <rec:Participant participant_id="p1"><rec:NameId aor="sip:+33102030405@sbc"><rec:NAME>Customer</rec:NAME></rec:NameId></rec:Participant>
  <rec:participant participant_id="p2"><rec:nameID aor="sip:cindy@pbx"/></rec:participant>
  <rec:stream stream_id="st1" session_id="s1"><rec:label>1</rec:label></rec:stream>
</rec:RECORDING>"#;

#[test]
fn prefixes_and_case_do_not_matter() {
    let a = metadata::parse(RFC_DEFAULT_NS.as_bytes()).expect("default namespace");
    let b = metadata::parse(RFC_PREFIXED.as_bytes()).expect("prefixed");
    assert_eq!(a, b);
    let k = keys(&a);
    assert_eq!(
        k.get("ext_vendor_example_siprec_ext_agent_id")
            .map(String::as_str),
        Some("cindy")
    );
    assert_eq!(
        k.get("datetime").map(String::as_str),
        Some("2026-01-30T12:34:56Z")
    );
    assert_eq!(k.get("phonenumber").map(String::as_str), Some("+33102030405"));
    assert_eq!(k, keys(&b));
}

#[test]
fn a_prefix_bound_to_another_namespace_is_not_recording_metadata() {
    // `rec:` is only a name: here it is bound to something else.
    let doc = r#"<rec:recording xmlns:rec="http://example.com/other"><rec:participant participant_id="x"/></rec:recording>"#;
    assert!(matches!(
        metadata::parse(doc.as_bytes()),
        Err(MetadataError::NotRecordingMetadata(_))
    ));
    // And a recording element inside a foreign root is not either.
    let doc = r#"<html><recording xmlns="urn:ietf:params:xml:ns:recording:1"/></html>"#;
    assert!(matches!(
        metadata::parse(doc.as_bytes()),
        Err(MetadataError::NotRecordingMetadata(_))
    ));
}

#[test]
fn dialects() {
    let draft = metadata::parse(
        br#"<recording xmlns='urn:ietf:params:xml:ns:recording'><datamode>partial</datamode>
        <participant id="p" session="s"><nameID aor="1234@pbx"/><send>st</send><recv>st2</recv></participant></recording>"#,
    )
    .expect("draft");
    assert_eq!(draft.dialect, Dialect::Draft);
    assert_eq!(draft.data_mode, DataMode::Partial);
    assert_eq!(draft.participants[0].session.as_deref(), Some("s"));
    let assoc = draft.stream_assoc("p").expect("assoc from participant");
    assert_eq!(
        (assoc.send.as_slice(), assoc.recv.as_slice()),
        (&["st".to_string()][..], &["st2".to_string()][..])
    );

    let none = metadata::parse(
        b"<recording><participant participant_id='p'><nameID aor='sip:1@x'/></participant></recording>",
    )
    .expect("no namespace");
    assert_eq!(none.dialect, Dialect::Unqualified);
    assert_eq!(none.participants[0].aor.as_deref(), Some("sip:1@x"));

    let bw = metadata::parse(
        br#"<recording_metadata xmlns="urn:ietf:params:xml:ns:siprec"><participant id="p"><aor>sip:5@x</aor>
        <send><id>a</id><id>b</id></send></participant>
        <extensiondata parent="p"><x xmlns="urn:example:ext">1</x></extensiondata>
        <extensiondata parent="nowhere"><y xmlns="urn:example:ext">2</y></extensiondata></recording_metadata>"#,
    )
    .expect("broadworks");
    assert_eq!(bw.dialect, Dialect::BroadWorks);
    assert_eq!(bw.stream_assoc("p").expect("assoc").send, ["a", "b"]);
    let k = keys(&bw);
    assert_eq!(
        k.get("participant_1_ext_example_ext_x").map(String::as_str),
        Some("1")
    );
    assert_eq!(k.get("ext_example_ext_y").map(String::as_str), Some("2"));
}

#[test]
fn extension_keys_use_the_namespace_not_the_prefix() {
    let one = r#"<recording xmlns="urn:ietf:params:xml:ns:recording:1"><session session_id="s">
      <extensiondata xmlns:apkt="http://acmepacket.com/siprec/extensiondata"><apkt:ucid>00FA080001000758A20EFA</apkt:ucid></extensiondata>
      </session></recording>"#;
    let two = one.replace("apkt", "q");
    let (a, b) = (
        keys(&metadata::parse(one.as_bytes()).expect("one")),
        keys(&metadata::parse(two.as_bytes()).expect("two")),
    );
    assert_eq!(a, b);
    assert_eq!(
        a.get("ext_acme_ucid").map(String::as_str),
        Some("00FA080001000758A20EFA")
    );
    assert_eq!(a.get("ucid").map(String::as_str), Some("00001000071487015674"));
}

const SDP: &str = "v=0\r\nc=IN IP4 198.51.100.1\r\nm=audio 4000 RTP/AVP 0\r\na=label:1\r\n";
const XML: &str = "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><participant participant_id='p'><nameID aor='sip:+442071838750@x'/></participant></recording>";

fn invite(content_type: &str, body: &str) -> Message {
    let raw = format!(
        "INVITE sip:acme@srs SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:acme@srs>\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Message::parse(raw.as_bytes()).expect("invite parses")
}

#[test]
fn metadata_before_or_after_the_sdp_with_extra_parts() {
    let sdp_first = format!(
        "preamble\r\n--b1\r\nContent-Type: application/sdp\r\n\r\n{SDP}\r\n--b1\r\nContent-Type: application/rs-metadata+xml\r\n\
         Content-Disposition: recording-session\r\n\r\n{XML}\r\n--b1\r\nContent-Type: application/gtd\r\n\r\nIAM,\r\n--b1--\r\nepilogue"
    );
    let xml_first = format!(
        "--b1\nContent-Type: application/rs-metadata\n\n{XML}\n--b1\nContent-Type: application/sdp\n\n{}\n--b1--\n",
        SDP.replace("\r\n", "\n")
    );
    let a = parse_body(&invite("multipart/mixed;boundary=\"b1\"", &sdp_first)).expect("sdp first");
    let b = parse_body(&invite("multipart/related; boundary=b1", &xml_first)).expect("xml first");
    assert_eq!(a.parts.len(), 3);
    assert_eq!(a.sdp, b.sdp);
    assert_eq!(a.metadata, b.metadata);
    assert_eq!(a.parts[2].body, b"IAM,");
    assert_eq!(a.parts[1].disposition().as_deref(), Some("recording-session"));
    assert_eq!(
        keys(a.metadata.as_ref().expect("md"))
            .get("phonenumber")
            .map(String::as_str),
        Some("+442071838750")
    );
}

#[test]
fn single_part_bodies() {
    let sdp_only = parse_body(&invite("application/sdp", SDP)).expect("plain SDP");
    assert!(sdp_only.sdp.is_some() && sdp_only.metadata.is_none());
    let md_only = parse_body(&invite("application/rs-metadata+xml", XML)).expect("metadata-only UPDATE");
    assert!(md_only.sdp.is_none() && md_only.metadata.is_some());
    let err = parse_body(&invite("text/plain", "hello")).expect_err("unsupported");
    assert_eq!(err.status(), 415);
    let err = parse_body(&invite("application/sdp", "v=0\r\n")).expect_err("no media");
    assert!(matches!(err, BodyError::Sdp(_)));
    assert_eq!(err.status(), 488);
    let err = parse_body(&invite("application/rs-metadata", "<oops")).expect_err("bad xml");
    assert_eq!(err.status(), 400);
    let err = parse_body(&invite("multipart/mixed", "--x\r\n\r\n")).expect_err("no boundary param");
    assert_eq!(err.status(), 400);
}
