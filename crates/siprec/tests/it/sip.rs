//! SIP message parsing, stream framing and responses.

use callmeta_siprec::sip::{
    CSeq, Framing, Limits, MediaType, Message, Method, NameAddr, SipError, frame_length,
};

const INVITE: &str = "INVITE sip:acme@srs.example.com;transport=udp SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKnashds8 , SIP/2.0/UDP 10.0.0.9\r\n\
f: \"Recording, Client\" <sip:src@10.0.0.1>;tag=1928301774\r\n\
t: <sip:acme@srs.example.com>\r\n\
i: a84b4c76e66710@10.0.0.1\r\n\
cseq: 314159 INVITE\r\n\
m: <sip:src@10.0.0.1:5060>;+sip.src\r\n\
k: siprec,\r\n replaces\r\n\
X-Custom-Header: one\r\n\
x-custom-header: two\r\n\
c: multipart/mixed; boundary=\"a;b=c\"\r\n\
l: 4\r\n\
\r\n\
bodyEXTRA";

#[test]
fn parses_compact_folded_and_multi_valued_headers() {
    let m = Message::parse(INVITE.as_bytes()).expect("parses");
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.request_uri(), Some("sip:acme@srs.example.com;transport=udp"));
    assert_eq!(m.request_user(), Some("acme"));
    assert_eq!(m.call_id(), Ok("a84b4c76e66710@10.0.0.1"));
    assert_eq!(
        m.cseq(),
        Ok(CSeq {
            number: 314159,
            method: Method::Invite
        })
    );
    let from = m.from().expect("from");
    assert_eq!(from.display_name.as_deref(), Some("Recording, Client"));
    assert_eq!(from.tag(), Some("1928301774"));
    assert_eq!(from.user(), Some("src"));
    assert_eq!(m.to().expect("to").tag(), None);
    let vias = m.vias();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(vias[0].transport, "UDP");
    assert_eq!(vias[1].sent_by, "proxy.example.com");
    assert_eq!(m.top_via().expect("via").sent_by, "10.0.0.1:5060");
    assert_eq!(m.contact().expect("contact").uri, "sip:src@10.0.0.1:5060");
    assert_eq!(m.header_values("Supported"), ["siprec", "replaces"]);
    assert_eq!(
        m.header_all("X-CUSTOM-HEADER").collect::<Vec<_>>(),
        ["one", "two"]
    );
    let ct = m.content_type().expect("content type");
    assert!(ct.is_multipart());
    assert_eq!(ct.param("BOUNDARY"), Some("a;b=c"));
    // Content-Length cuts the body; the extra bytes are ignored.
    assert_eq!(m.body(), b"body");
}

#[test]
fn bare_lf_and_missing_content_length_on_datagrams() {
    let m = Message::parse(b"OPTIONS sip:srs SIP/2.0\nCall-ID: x\nCSeq: 1 OPTIONS\n\nabc").expect("parses");
    assert_eq!(m.method(), Some(&Method::Options));
    assert_eq!(
        m.body(),
        b"abc",
        "without Content-Length the datagram's rest is the body"
    );
    // Leading CRLF keep-alives are skipped.
    let m = Message::parse(b"\r\n\r\nBYE sip:srs SIP/2.0\r\nCall-ID: x\r\n\r\n").expect("parses");
    assert_eq!(m.method(), Some(&Method::Bye));
    // A lost final blank line still gives the headers.
    let m = Message::parse(b"ACK sip:srs SIP/2.0\r\nCall-ID: x").expect("parses");
    assert_eq!(m.call_id(), Ok("x"));
}

#[test]
fn responses_and_unknown_methods() {
    let m = Message::parse(b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\n\r\n").expect("parses");
    assert_eq!(m.status(), Some(180));
    assert!(!m.is_request());
    let m = Message::parse(b"PUBLISH sip:srs SIP/2.0\r\n\r\n").expect("parses");
    assert_eq!(m.method(), Some(&Method::Other("PUBLISH".into())));
}

#[test]
fn request_users() {
    for (uri, user) in [
        ("sip:acme@srs.example.com", Some("acme")),
        ("sips:acme@srs.example.com:5061;transport=tls", Some("acme")),
        ("sip:acme;x=1@srs", Some("acme")),
        ("sip:acme:secret@srs", Some("acme")),
        ("SIP:Acme@srs", Some("Acme")),
        ("sip:srs.example.com", None),
        ("sip:192.0.2.20:5080;transport=UDP", None),
        ("tel:+33102030405;phone-context=x", Some("+33102030405")),
    ] {
        let raw = format!("INVITE {uri} SIP/2.0\r\n\r\n");
        assert_eq!(
            Message::parse(raw.as_bytes()).expect("parses").request_user(),
            user,
            "{uri}"
        );
    }
}

#[test]
fn malformed_messages_are_errors() {
    type Check = fn(&SipError) -> bool;
    let cases: &[(&[u8], Check)] = &[
        (b"", |e| *e == SipError::Empty),
        (b"\r\n\r\n", |e| *e == SipError::Empty),
        (b"HELLO\r\n\r\n", |e| matches!(e, SipError::BadStartLine(_))),
        (b"INVITE sip:x HTTP/1.1\r\n\r\n", |e| {
            matches!(e, SipError::BadStartLine(_))
        }),
        (b"SIP/2.0 99 Nope\r\n\r\n", |e| {
            matches!(e, SipError::BadStartLine(_))
        }),
        (b"INVITE sip:x SIP/2.0\r\nNoColonHere\r\n\r\n", |e| {
            matches!(e, SipError::BadHeader { line: 2, .. })
        }),
        (b"INVITE sip:x SIP/2.0\r\nBad Name: x\r\n\r\n", |e| {
            matches!(e, SipError::BadHeader { .. })
        }),
        (b"INVITE sip:x SIP/2.0\r\n folded-first: x\r\n\r\n", |e| {
            matches!(e, SipError::BadHeader { .. })
        }),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: abc\r\n\r\n", |e| {
            matches!(e, SipError::BadContentLength(_))
        }),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n", |e| {
            matches!(e, SipError::BadContentLength(_))
        }),
        (b"INVITE sip:x SIP/2.0\r\nl: 99999999999999999999\r\n\r\n", |e| {
            matches!(e, SipError::BadContentLength(_))
        }),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", |e| {
            *e == SipError::Truncated {
                expected: 10,
                available: 3,
            }
        }),
        (b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n", |e| {
            matches!(e, SipError::BodyTooLarge { .. })
        }),
    ];
    for (input, check) in cases {
        let err = Message::parse(input).expect_err(&String::from_utf8_lossy(input));
        assert!(check(&err), "{:?}: {err:?}", String::from_utf8_lossy(input));
        assert!(err.status() >= 400);
    }
    let m = Message::parse(b"INVITE sip:x SIP/2.0\r\nCSeq: one INVITE\r\nFrom: \"unterminated\r\n\r\n")
        .expect("parses");
    assert!(matches!(
        m.cseq(),
        Err(SipError::BadHeaderValue { name: "CSeq", .. })
    ));
    assert!(m.from().is_err());
    assert_eq!(m.call_id(), Err(SipError::MissingHeader("Call-ID")));
}

#[test]
fn stream_framing() {
    let limits = Limits::default();
    let msg = b"INVITE sip:x SIP/2.0\r\nContent-Length: 5\r\n\r\nhello";
    let mut two = msg.to_vec();
    two.extend_from_slice(b"BYE sip:x SIP/2.0\r\nl:0\r\n\r\n");
    assert_eq!(frame_length(&two, &limits), Ok(Framing::Complete(msg.len())));
    for cut in 0..msg.len() {
        assert_eq!(
            frame_length(&msg[..cut], &limits),
            Ok(Framing::NeedMore),
            "cut at {cut}"
        );
    }
    assert_eq!(frame_length(b"\r\n\r\n", &limits), Ok(Framing::KeepAlive(4)));
    let mut keepalive_then_msg = b"\r\n\r\n".to_vec();
    keepalive_then_msg.extend_from_slice(msg);
    assert_eq!(
        frame_length(&keepalive_then_msg, &limits),
        Ok(Framing::Complete(4 + msg.len()))
    );
    let framed = Message::parse(&keepalive_then_msg).expect("frame parses");
    assert_eq!(framed.body(), b"hello");
    // No Content-Length on a stream: an empty body.
    let bare = b"BYE sip:x SIP/2.0\nCall-ID: y\n\nINVITE";
    assert_eq!(frame_length(bare, &limits), Ok(Framing::Complete(bare.len() - 6)));
    assert!(matches!(
        frame_length(b"INVITE sip:x SIP/2.0\r\nContent-Length: x\r\n\r\n", &limits),
        Err(SipError::BadContentLength(_))
    ));
    let small = Limits {
        max_header_bytes: 64,
        ..Limits::default()
    };
    assert!(matches!(
        frame_length(&[b'a'; 100], &small),
        Err(SipError::HeadersTooLarge { .. })
    ));
}

#[test]
fn responses_copy_the_dialog_headers() {
    let req = Message::parse(INVITE.as_bytes()).expect("parses");
    let bytes = req
        .response(200)
        .to_tag("srs-1")
        .header("Contact", "<sip:srs@192.0.2.20>")
        .header("Require", "siprec")
        .body("application/sdp", "v=0\r\n")
        .build();
    let text = String::from_utf8(bytes.clone()).expect("utf-8");
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    let resp = Message::parse(&bytes).expect("response parses");
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.header_all("Via").count(), 2, "every Via line, in order");
    assert_eq!(resp.vias().len(), 3);
    assert_eq!(resp.top_via().expect("via").branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(resp.from().expect("from").tag(), Some("1928301774"));
    assert_eq!(resp.to().expect("to").tag(), Some("srs-1"));
    assert_eq!(resp.call_id(), Ok("a84b4c76e66710@10.0.0.1"));
    assert_eq!(
        resp.cseq(),
        Ok(CSeq {
            number: 314159,
            method: Method::Invite
        })
    );
    assert_eq!(resp.header("Content-Length"), Some("5"));
    assert_eq!(resp.body(), b"v=0\r\n");
    assert_eq!(
        resp.content_type().map(|c| c.essence()).as_deref(),
        Some("application/sdp")
    );

    let trying = Message::parse(&req.response(100).to_tag("srs-1").build()).expect("parses");
    assert_eq!(trying.to().expect("to").tag(), None, "no tag on 100 Trying");
    let busy = String::from_utf8(req.response(487).reason("Request\r\nTerminated").build()).expect("utf-8");
    assert!(
        busy.starts_with("SIP/2.0 487 Request  Terminated\r\n"),
        "line breaks cannot inject headers"
    );
    assert!(busy.ends_with("Content-Length: 0\r\n\r\n"));
}

#[test]
fn name_addrs_and_media_types() {
    let n = NameAddr::parse("sip:alice@example.com;tag=abc").expect("addr-spec");
    assert_eq!(n.uri, "sip:alice@example.com");
    assert_eq!(n.tag(), Some("abc"));
    let n = NameAddr::parse("Alice <sip:alice@example.com;transport=tcp>;tag=x").expect("name-addr");
    assert_eq!(n.display_name.as_deref(), Some("Alice"));
    assert_eq!(n.uri, "sip:alice@example.com;transport=tcp");
    assert_eq!(n.param("TAG"), Some("x"));
    assert_eq!(NameAddr::parse("<sip:unterminated"), None);
    let ct = MediaType::parse("Application/RS-Metadata+XML;charset=utf-8").expect("type");
    assert!(ct.is_recording_metadata());
    assert!(
        MediaType::parse("application/rs-metadata")
            .expect("type")
            .is_recording_metadata()
    );
    assert_eq!(MediaType::parse("nonsense"), None);
    assert_eq!(
        MediaType::parse("multipart/related;boundary=x")
            .expect("type")
            .param("boundary"),
        Some("x")
    );
}

#[test]
fn two_different_content_lengths_are_refused_the_same_twice_is_not() {
    let limits = Limits::default();
    let twice = b"INVITE sip:x SIP/2.0\r\nContent-Length: 5\r\nl: 0\r\n\r\nhello";
    assert_eq!(
        frame_length(twice, &limits),
        Err(SipError::ConflictingContentLength(5, 0))
    );
    let err = Message::parse(twice).unwrap_err();
    assert_eq!(err, SipError::ConflictingContentLength(5, 0));
    assert_eq!(err.status(), 400);
    let same = b"INVITE sip:x SIP/2.0\r\nContent-Length: 5\r\nl: 5\r\n\r\nhello";
    assert_eq!(frame_length(same, &limits), Ok(Framing::Complete(same.len())));
    assert_eq!(Message::parse(same).unwrap().body(), b"hello");
}

#[test]
fn the_top_via_records_where_a_request_came_from() {
    let check = |via: &str, source: &str, expected: &str| {
        let text = format!(
            "OPTIONS sip:x SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP 192.0.2.99\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n"
        );
        let mut m = Message::parse(text.as_bytes()).unwrap();
        m.mark_received(source.parse().unwrap());
        assert_eq!(
            m.header_values("Via"),
            vec![expected, "SIP/2.0/UDP 192.0.2.99"],
            "{via}"
        );
    };
    // The address it says: nothing to add.
    check(
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
        "10.0.0.1:5060",
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
    );
    // Behind a NAT: received, and rport filled in when asked for.
    check(
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport",
        "198.51.100.7:40000",
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=40000;received=198.51.100.7",
    );
    check(
        "SIP/2.0/UDP sbc.example.com;branch=z9hG4bK2",
        "[::ffff:198.51.100.7]:5060",
        "SIP/2.0/UDP sbc.example.com;branch=z9hG4bK2;received=198.51.100.7",
    );
    check(
        "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK3",
        "[2001:db8::1]:5060",
        "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK3",
    );
}
