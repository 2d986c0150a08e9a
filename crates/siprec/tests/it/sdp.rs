//! SDP offers and our answers.

use callmeta_siprec::sdp::{self, AnswerOptions, Codec, Direction, SdpError};

const OFFER: &str = "v=0\r\n\
o=SRC 1 1 IN IP4 198.51.100.1\r\n\
s=-\r\n\
c=IN IP4 198.51.100.1\r\n\
t=0 0\r\n\
m=audio 10000 RTP/AVP 18 96 8 0 97 13\r\n\
c=IN IP4 198.51.100.2/127\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=rtpmap:97 telephone-event/8000\r\n\
a=fmtp:97 0-16\r\n\
a=label:caller\r\n\
a=sendonly\r\n\
a=x-vendor:thing\r\n\
m=audio 10002 RTP/SAVP 0\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:xyz\r\n\
a=label:srtp\r\n\
m=audio 10004 RTP/AVP 100\r\n\
a=rtpmap:100 pcmu/8000\r\n\
a=label:dynamic-pcmu\r\n\
m=video 10006 RTP/AVP 96\r\n\
a=label:video\r\n\
m=audio 0 RTP/AVP 0\r\n\
a=label:disabled\r\n";

#[test]
fn parses_the_offer() {
    let offer = sdp::parse(OFFER.as_bytes()).expect("parses");
    assert_eq!(
        offer.connection.as_ref().map(|c| c.address.as_str()),
        Some("198.51.100.1")
    );
    assert_eq!(offer.media.len(), 5);
    let m = &offer.media[0];
    assert_eq!(
        (m.kind.as_str(), m.port, m.proto.as_str()),
        ("audio", 10000, "RTP/AVP")
    );
    assert_eq!(m.formats, ["18", "96", "8", "0", "97", "13"]);
    assert_eq!(
        m.connection.as_ref().map(|c| c.address.as_str()),
        Some("198.51.100.2")
    );
    assert_eq!(
        m.rtpmap(96)
            .map(|r| (r.encoding.as_str(), r.clock_rate, r.channels)),
        Some(("opus", 48000, Some(2)))
    );
    assert_eq!(m.fmtp("97"), Some("0-16"));
    assert_eq!(m.label.as_deref(), Some("caller"));
    assert_eq!(m.direction, Some(Direction::SendOnly));
    assert_eq!(
        m.attributes,
        [("x-vendor".to_string(), Some("thing".to_string()))]
    );
}

#[test]
fn plans_g711_even_behind_other_codecs() {
    let offer = sdp::parse(OFFER.as_bytes()).expect("parses");
    let plan = sdp::plan(&offer);
    assert_eq!(
        plan[0].codec,
        Some((8, Codec::Pcma)),
        "PCMA is the first G.711 listed"
    );
    assert_eq!(plan[0].telephone_event, Some(97));
    assert_eq!(plan[0].comfort_noise, Some(13));
    assert_eq!(plan[0].remote, Some(("198.51.100.2".to_string(), 10000)));
    assert_eq!(plan[1].codec, None, "SRTP is not recorded");
    assert_eq!(
        plan[2].codec,
        Some((100, Codec::Pcmu)),
        "a dynamic payload type mapped to PCMU"
    );
    assert_eq!(plan[3].codec, None, "video");
    assert_eq!(plan[4].codec, None, "port 0 in the offer");
}

#[test]
fn answers_with_the_same_m_lines_recvonly() {
    let offer = sdp::parse(OFFER.as_bytes()).expect("parses");
    let options = AnswerOptions {
        address: "192.0.2.20".into(),
        session_id: 7,
        session_version: 2,
    };
    let mut k = 0;
    let answer = sdp::answer(&offer, &options, |_| {
        k += 1;
        30_000 + 2 * (k - 1)
    });
    assert_eq!(
        answer.sdp,
        "v=0\r\n\
o=callmeta 7 2 IN IP4 192.0.2.20\r\n\
s=callmeta\r\n\
c=IN IP4 192.0.2.20\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 8 97\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:97 telephone-event/8000\r\n\
a=fmtp:97 0-16\r\n\
a=label:caller\r\n\
a=recvonly\r\n\
m=audio 0 RTP/SAVP 0\r\n\
m=audio 30002 RTP/AVP 100\r\n\
a=rtpmap:100 PCMU/8000\r\n\
a=label:dynamic-pcmu\r\n\
a=recvonly\r\n\
m=video 0 RTP/AVP 96\r\n\
m=audio 0 RTP/AVP 0\r\n"
    );
    let ports: Vec<u16> = answer.streams.iter().map(|s| s.port).collect();
    assert_eq!(ports, [30_000, 0, 30_002, 0, 0]);
    let labels: Vec<Option<&str>> = answer.streams.iter().map(|s| s.plan.label.as_deref()).collect();
    assert_eq!(
        labels,
        [
            Some("caller"),
            Some("srtp"),
            Some("dynamic-pcmu"),
            Some("video"),
            Some("disabled")
        ]
    );
}

#[test]
fn ipv6_and_inactive() {
    let offer =
        sdp::parse(b"v=0\nc=IN IP6 2001:db8::1\na=inactive\nm=audio 4000 RTP/AVP 0\n").expect("parses");
    let options = AnswerOptions {
        address: "2001:db8::2".into(),
        session_id: 1,
        session_version: 1,
    };
    let answer = sdp::answer(&offer, &options, |_| 5000);
    assert!(answer.sdp.contains("c=IN IP6 2001:db8::2\r\n"));
    assert!(
        answer.sdp.contains("a=inactive\r\n"),
        "an inactive offer gets an inactive answer"
    );
    assert_eq!(
        answer.streams[0].plan.remote,
        Some(("2001:db8::1".to_string(), 4000))
    );
}

#[test]
fn bad_offers() {
    assert_eq!(sdp::parse(b"v=0\r\ns=-\r\n"), Err(SdpError::NoMedia));
    assert_eq!(sdp::parse(b""), Err(SdpError::NoMedia));
    assert!(matches!(
        sdp::parse(b"m=audio port RTP/AVP 0"),
        Err(SdpError::BadMediaLine(_))
    ));
    assert!(matches!(
        sdp::parse(b"m=audio 70000 RTP/AVP 0"),
        Err(SdpError::BadMediaLine(_))
    ));
    assert!(matches!(sdp::parse(b"m=audio"), Err(SdpError::BadMediaLine(_))));
    assert_eq!(sdp::parse(&[0xff, 0xfe, 0x00]), Err(SdpError::NotText));
    let many = "m=audio 1 RTP/AVP 0\n".repeat(100);
    assert_eq!(sdp::parse(many.as_bytes()), Err(SdpError::TooManyMedia));
    let huge = vec![b'a'; sdp::MAX_SDP_BYTES + 1];
    assert!(matches!(sdp::parse(&huge), Err(SdpError::TooLarge(_))));
}
