//! Every vendor fixture, end to end: SIP parse, multipart split, SDP offer
//! and answer, metadata, flattening. The flattened keys are snapshotted in
//! `tests/snapshots/<fixture>.keys`; run with `UPDATE_SNAPSHOTS=1` to
//! rewrite them after an intended change, and review the diff.

use std::collections::BTreeMap;
use std::path::PathBuf;

use callmeta_siprec::flatten::{FlattenOptions, flatten};
use callmeta_siprec::metadata::Metadata;
use callmeta_siprec::recording::{RecordingBody, parse_body};
use callmeta_siprec::sdp::{self, AnswerOptions};
use callmeta_siprec::sip::Message;

use crate::support::{as_message, fixtures};

pub(crate) struct Processed {
    pub message: Message,
    pub body: RecordingBody,
    pub answer: Option<sdp::Answer>,
    pub keys: BTreeMap<String, String>,
}

pub(crate) fn process(bytes: &[u8]) -> Processed {
    let message = Message::parse(bytes).expect("fixture parses as SIP");
    let body = parse_body(&message).expect("fixture body parses");
    let options = AnswerOptions {
        address: "192.0.2.20".into(),
        session_id: 1,
        session_version: 1,
    };
    let answer = body
        .sdp
        .as_ref()
        .map(|offer| sdp::answer(offer, &options, |p| 40_000 + 2 * p.index as u16));
    let keys = flatten(
        message.headers(),
        body.metadata.as_ref(),
        &FlattenOptions::default(),
    );
    Processed {
        message,
        body,
        answer,
        keys,
    }
}

/// A fixture by name, as a CRLF message, processed.
pub(crate) fn fixture(name: &str) -> Processed {
    let (_, text) = fixtures()
        .into_iter()
        .find(|(n, _)| n == name)
        .expect("fixture exists");
    process(as_message(&text, true).as_bytes())
}

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.keys"))
}

fn render(keys: &BTreeMap<String, String>) -> String {
    keys.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[test]
fn every_fixture_parses_end_to_end_and_matches_its_snapshot() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let all = fixtures();
    assert!(all.len() >= 16, "fixtures found: {}", all.len());
    let mut mismatches = Vec::new();
    for (name, text) in all {
        let crlf = process(as_message(&text, true).as_bytes());
        let lf = process(as_message(&text, false).as_bytes());
        assert_eq!(crlf.keys, lf.keys, "{name}: CRLF and bare LF give different keys");
        assert_eq!(
            crlf.body.sdp, lf.body.sdp,
            "{name}: CRLF and bare LF give different SDP"
        );
        assert!(crlf.body.metadata.is_some(), "{name}: no metadata found");
        let rendered = render(&crlf.keys);
        let path = snapshot_path(&name);
        if update {
            std::fs::write(&path, &rendered).expect("write snapshot");
        } else {
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            if expected != rendered {
                mismatches.push(format!("--- {name}: expected\n{expected}--- actual\n{rendered}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "snapshots differ (UPDATE_SNAPSHOTS=1 to accept):\n{}",
        mismatches.join("\n")
    );
}

/// The product keys each fixture's data contains, read off the fixtures by
/// eye (`None`: the data has no such value, so the key must be absent).
/// A key and its expected value.
type Expect = (&'static str, Option<&'static str>);

const PRODUCT_KEYS: &[(&str, &[Expect])] = &[
    (
        "asterisk-intrado-1",
        &[
            // associate-time 12:36:06-06:00; x-Call-Direction: incoming.
            ("datetime", Some("2022-07-21T18:36:06Z")),
            ("caller_number", Some("4058327108")),
            ("phonenumber", Some("4058327108")),
            ("call_direction", Some("inbound")),
            ("original_call_id", None),
        ],
    ),
    (
        "avaya-sbce-1",
        &[
            ("datetime", Some("2019-11-12T15:57:37Z")),
            ("caller_number", Some("9878942259")),
            ("callee_number", None),
            ("phonenumber", Some("9878942259")),
        ],
    ),
    (
        "avaya-sbce-2",
        &[
            ("datetime", Some("2017-02-13T12:54:34Z")),
            ("caller_number", Some("13035381001")),
            ("phonenumber", Some("13035381001")),
            // The UCID in User-to-User; its timestamp is the call's.
            ("ucid", Some("00001000071487015674")),
            ("original_call_id", Some("00001000071487015674")),
            ("sip_user_to_user", Some("00FA080001000758A20EFA;encoding=hex")),
            (
                "sip_p_asserted_identity",
                Some("\"H323 User 1\" <sip:13035381001@192.0.2.10:5060>"),
            ),
        ],
    ),
    (
        "avaya-sbce-3",
        &[
            ("datetime", Some("2017-02-13T12:54:34Z")),
            ("caller_number", Some("13035381001")),
            ("callee_number", Some("7204541001")),
            ("phonenumber", Some("13035381001")),
            ("original_call_id", Some("00001000071487015674")),
        ],
    ),
    (
        "broadworks-webex-1",
        &[
            ("datetime", Some("2024-05-13T03:55:43Z")),
            ("caller_number", Some("7711")),
            ("callee_number", Some("+12102298592")),
            // termCall: inbound, but the caller is an extension.
            ("call_direction", Some("inbound")),
            ("phonenumber", Some("+12102298592")),
            ("original_call_id", Some("callhalf-36451339:0")),
            (
                "ext_broadworks_broad_works_recording_metadata_user_id",
                Some("kculs9klre@44936045.int10.bcld.webex.com"),
            ),
            (
                "x_broadworks_correlation_info",
                Some("45a32b36-2a6a-4ec1-9cf3-47824099fcd4"),
            ),
        ],
    ),
    (
        "cisco-cube-1",
        &[
            ("datetime", Some("2017-06-23T12:16:06Z")),
            ("caller_number", Some("7301")),
            ("callee_number", Some("7300")),
            ("phonenumber", Some("7301")),
            ("original_call_id", Some("e9fffff2020a598b86962867715db0cf")),
        ],
    ),
    (
        "cisco-cube-2",
        &[
            ("datetime", Some("2021-06-07T07:16:23Z")),
            ("caller_number", Some("0733165805")),
            ("callee_number", Some("+972546136443")),
            ("phonenumber", Some("0733165805")),
            ("original_call_id", Some("f845891467cf5c2189987435807bd432")),
        ],
    ),
    (
        "cisco-cube-nbr-1",
        &[
            // No XML: the Date header and the participant headers.
            ("datetime", Some("2019-11-18T14:14:55Z")),
            ("caller_number", Some("2164485925")),
            ("callee_number", Some("20053")),
            ("phonenumber", Some("2164485925")),
            ("original_call_id", Some("1-4242@192.0.2.10-GUID")),
            ("participant_1_aor", Some("sip:2164485925@ccf.org")),
            ("participant_2_media_index", Some("1")),
        ],
    ),
    (
        "cisco-cube-nbr-2",
        &[
            ("datetime", Some("2019-11-18T14:18:55Z")),
            ("callee_number", Some("10012")),
            ("phonenumber", Some("2164485925")),
        ],
    ),
    (
        "opensips-1",
        &[
            ("datetime", None),
            ("caller_number", Some("0771121212")),
            ("callee_number", Some("0760516936")),
            ("phonenumber", Some("0771121212")),
            (
                "original_call_id",
                Some("2d8abbf0769c66e15bb349f509693d60@52.57.92.239"),
            ),
        ],
    ),
    (
        "oracle-acme-1",
        &[
            ("datetime", Some("2019-03-09T16:50:20Z")),
            ("caller_number", Some("9000")),
            ("callee_number", Some("1002")),
            ("phonenumber", Some("9000")),
            ("original_call_id", None),
            ("participant_1_ext_acme_calling_party", Some("true")),
        ],
    ),
    (
        "oracle-acme-2",
        &[
            ("datetime", Some("2020-03-27T13:56:05Z")),
            ("caller_number", Some("31624895902")),
            ("callee_number", Some("33187164021")),
            ("phonenumber", Some("31624895902")),
            // The recorded call's Call-ID, from the Acme header extension.
            ("original_call_id", Some("134485702_44821128@10.10.128.62")),
            ("ucid", Some("04099475671585313765")),
            ("ext_acme_ucid", Some("00FA081003B9CF5E7DF7E5;encoding=hex")),
        ],
    ),
    (
        "rfc-example-1",
        &[
            ("datetime", Some("2010-12-16T23:41:07Z")),
            ("caller_name", Some("Alice")),
            ("callee_name", Some("Bob")),
            ("phonenumber", None),
            ("original_call_id", Some("ab30317f1a784dc48ff824d0d3715d86")),
            (
                "ext_callcenter_call_center_supervisor",
                Some("sip:alice@atlanta.com"),
            ),
            ("participant_1_ext_example_my_mydata_structure", Some("FOO!")),
        ],
    ),
    ("rfc-example-2", &[("datetime", None), ("phonenumber", None)]),
    (
        "ribbon-sonus-1",
        &[
            ("datetime", Some("1970-05-13T03:29:05Z")),
            ("caller_number", Some("2249888500")),
            ("callee_number", Some("2249888012")),
            ("phonenumber", Some("2249888500")),
            ("original_call_id", Some("2da553f7-a48b-1235-d6a2-5254003a4988")),
        ],
    ),
    (
        "sems-1",
        &[
            ("datetime", Some("2017-12-11T14:44:23Z")),
            ("caller_number", Some("016190200")),
            ("callee_number", None),
            ("phonenumber", Some("016190200")),
        ],
    ),
];

#[test]
fn product_keys_are_filled_from_each_vendor() {
    assert_eq!(
        PRODUCT_KEYS.len(),
        fixtures().len(),
        "every fixture has its expectations"
    );
    for (name, expected) in PRODUCT_KEYS {
        let keys = fixture(name).keys;
        for (key, value) in *expected {
            assert_eq!(keys.get(*key).map(String::as_str), *value, "{name}: {key}");
        }
    }
}

#[test]
fn a_default_region_makes_national_numbers_e164() {
    let (_, text) = fixtures()
        .into_iter()
        .find(|(n, _)| n == "cisco-cube-2")
        .expect("fixture");
    let p = process(as_message(&text, true).as_bytes());
    let il = FlattenOptions::new(Some("IL")).expect("region");
    let keys = flatten(p.message.headers(), p.body.metadata.as_ref(), &il);
    assert_eq!(keys.get("phonenumber").map(String::as_str), Some("+972733165805"));
    assert_eq!(
        keys.get("callee_number").map(String::as_str),
        Some("+972546136443")
    );
}

/// The payload type chosen for each m-line (`None`: rejected, port 0).
const ANSWERS: &[(&str, &[Option<u8>])] = &[
    ("asterisk-intrado-1", &[Some(0)]),
    ("avaya-sbce-1", &[Some(8), Some(8)]),
    ("avaya-sbce-2", &[Some(0)]),
    ("avaya-sbce-3", &[]),
    // opus listed first: PCMU still chosen.
    ("broadworks-webex-1", &[Some(0)]),
    ("cisco-cube-1", &[Some(0), Some(0)]),
    ("cisco-cube-2", &[Some(0), Some(0)]),
    ("cisco-cube-nbr-1", &[Some(0)]),
    ("cisco-cube-nbr-2", &[Some(0)]),
    ("opensips-1", &[Some(0), Some(8)]),
    ("oracle-acme-1", &[Some(0), Some(0)]),
    // The second m-line maps only telephone-event: 8 is PCMA statically.
    ("oracle-acme-2", &[Some(8), Some(8)]),
    ("rfc-example-1", &[Some(0), None, Some(0), None]),
    ("rfc-example-2", &[]),
    ("ribbon-sonus-1", &[Some(0), Some(0)]),
    ("sems-1", &[Some(8), Some(8)]),
];

#[test]
fn answers_pick_g711_for_every_audio_line_in_offer_order() {
    assert_eq!(ANSWERS.len(), fixtures().len());
    for (name, expected) in ANSWERS {
        let p = fixture(name);
        let Some(answer) = p.answer else {
            assert!(expected.is_empty(), "{name}: no SDP");
            continue;
        };
        let chosen: Vec<Option<u8>> = answer.streams.iter().map(|s| s.plan.payload_type()).collect();
        assert_eq!(chosen, *expected, "{name}");
        let answer_sdp = sdp::parse(answer.sdp.as_bytes()).expect("our answer parses");
        assert_eq!(
            answer_sdp.media.len(),
            expected.len(),
            "{name}: same number of m-lines"
        );
        for (m, s) in answer_sdp.media.iter().zip(&answer.streams) {
            assert_eq!(m.port, s.port, "{name}");
            if s.port == 0 {
                continue;
            }
            assert_eq!(m.port, 40_000 + 2 * s.plan.index as u16);
            let inactive = p.body.sdp.as_ref().and_then(|o| o.media[s.plan.index].direction)
                == Some(sdp::Direction::Inactive);
            let want = if inactive {
                sdp::Direction::Inactive
            } else {
                sdp::Direction::RecvOnly
            };
            assert_eq!(m.direction, Some(want), "{name}");
            assert_eq!(m.label, s.plan.label, "{name}: label kept");
        }
    }
}

#[test]
fn telephone_event_is_kept_at_8khz_only() {
    let p = fixture("broadworks-webex-1");
    let answer = p.answer.expect("answer");
    assert_eq!(answer.streams[0].plan.telephone_event, Some(101));
    assert!(
        answer.sdp.contains("m=audio 40000 RTP/AVP 0 101\r\n"),
        "{}",
        answer.sdp
    );
    assert!(answer.sdp.contains("a=fmtp:101 0-15\r\n"));
    assert!(!answer.sdp.contains("107"));
    let cisco = fixture("cisco-cube-2").answer.expect("answer");
    assert_eq!(cisco.streams[0].plan.comfort_noise, Some(19));
}

#[test]
fn partial_snapshot_updates_the_stream_associations() {
    let md = merged(&["rfc-example-1", "rfc-example-2"]);
    assert_eq!(md.participants.len(), 2, "partial keeps the participants");
    let alice = md.stream_assoc("srfBElmCRp2QB23b7Mpk0w==").expect("alice");
    assert!(alice.send.is_empty(), "Alice on hold sends nothing");
    assert_eq!(
        alice.recv,
        ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
    );
    let keys = flatten(&[], Some(&md), &FlattenOptions::default());
    assert_eq!(keys.get("participant_1_recv").map(String::as_str), Some("98,99"));
    assert_eq!(keys.get("participant_1_send"), None);
    assert_eq!(keys.get("participant_2_send").map(String::as_str), Some("98,99"));
    assert_eq!(keys.get("participant_1_name").map(String::as_str), Some("Alice"));
    assert_eq!(
        keys.get("datetime").map(String::as_str),
        Some("2010-12-16T23:41:07Z")
    );
}

#[test]
fn a_complete_update_replaces_the_snapshot() {
    let md = merged(&["avaya-sbce-2", "avaya-sbce-3"]);
    assert_eq!(md.participants.len(), 2);
    assert_eq!(
        md.participants[1].aor.as_deref(),
        Some("sip:7204541001@10.64.110.32")
    );
}

#[test]
fn a_partial_update_adds_and_updates_participants() {
    let mut md = fixture("avaya-sbce-2").body.metadata.expect("metadata");
    let update = callmeta_siprec::metadata::parse(
        br#"<recording xmlns="urn:ietf:params:xml:ns:recording:1"><dataMode>partial</dataMode>
        <participant participant_id="abcdef12345678901234"><nameID aor="sip:+15550001111@pbx"><name>Agent</name></nameID></participant>
        <participant participant_id="new"><nameID aor="sip:42@pbx"/></participant>
        </recording>"#,
    )
    .expect("partial parses");
    md.merge(update);
    assert_eq!(md.participants.len(), 3);
    assert_eq!(md.participants[1].aor.as_deref(), Some("sip:+15550001111@pbx"));
    assert_eq!(md.participants[1].name.as_deref(), Some("Agent"));
    assert_eq!(
        md.participants[0].aor.as_deref(),
        Some("sip:13035381001@10.64.110.65")
    );
    assert_eq!(md.sessions.len(), 1, "the session is kept");
}

pub(crate) fn merged(names: &[&str]) -> Metadata {
    let mut merged: Option<Metadata> = None;
    for name in names {
        let md = fixture(name).body.metadata.expect("metadata");
        match &mut merged {
            Some(m) => m.merge(md),
            None => merged = Some(md),
        }
    }
    merged.expect("at least one fixture")
}

/// The fuzz targets' seed corpora come from the fixtures, through the same
/// preparation as the tests: whole messages for `sip`, content type plus
/// body for `multipart`, the SDP and metadata parts for `sdp` and
/// `metadata`, and a short packet stream for `rtp`. Rewritten with
/// `UPDATE_SNAPSHOTS=1`, checked otherwise.
#[test]
fn fuzz_seed_corpora_match_the_fixtures() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, text) in fixtures() {
        let crlf = as_message(&text, true);
        seeds.push((format!("sip/seed-{name}"), crlf.clone().into_bytes()));
        seeds.push((
            format!("sip/seed-{name}-lf"),
            as_message(&text, false).into_bytes(),
        ));
        let p = process(crlf.as_bytes());
        if let Some(ct) = p
            .message
            .header("Content-Type")
            .filter(|c| c.to_ascii_lowercase().starts_with("multipart/"))
        {
            let mut seed = format!("{ct}\n").into_bytes();
            seed.extend_from_slice(p.message.body());
            seeds.push((format!("multipart/seed-{name}"), seed));
        }
        for part in &p.body.parts {
            match part.content_type() {
                Some(ct) if ct.is_sdp() => seeds.push((format!("sdp/seed-{name}"), part.body.clone())),
                Some(ct) if ct.is_recording_metadata() => {
                    seeds.push((format!("metadata/seed-{name}"), part.body.clone()))
                }
                _ => {}
            }
        }
    }
    let mut stream = Vec::new();
    for k in 0..8u32 {
        let mut packet = vec![0x80, if k % 4 == 3 { 101 } else { 0 }];
        packet.extend_from_slice(&(k as u16).to_be_bytes());
        packet.extend_from_slice(&(160 * k).to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, if k < 5 { 1 } else { 2 }]);
        packet.extend(std::iter::repeat_n(0x80u8, 40));
        stream.push(packet.len() as u8);
        stream.extend(packet);
    }
    seeds.push(("rtp/seed-stream".to_string(), stream));
    for (path, bytes) in seeds {
        let path = corpus.join(path);
        if update {
            std::fs::create_dir_all(path.parent().expect("corpus dir")).expect("create corpus dir");
            std::fs::write(&path, &bytes).expect("write seed");
        } else {
            let existing = std::fs::read(&path).unwrap_or_default();
            assert!(
                existing == bytes,
                "{} is stale (UPDATE_SNAPSHOTS=1 rewrites it)",
                path.display()
            );
        }
    }
}
