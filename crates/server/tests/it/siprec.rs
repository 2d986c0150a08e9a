//! SIPREC calls sent by sipp as an SBC sends them (multipart SDP + RFC 7865
//! metadata, RTP played with `rtp_stream`), over UDP and TCP; and the
//! answers to what the recorder cannot take, from a raw SIP client.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::UdpSocket;

use crate::helpers::{SPEC_TABLE, Tenant, TestApp, eventually};

pub(crate) fn have_sipp() -> bool {
    let found = std::process::Command::new("sipp").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var("CALLMETA_TEST_CLIENTS").as_deref() != Ok("required"),
            "sipp is required (CALLMETA_TEST_CLIENTS=required): apt-get install sip-tester"
        );
        eprintln!("skipping: sipp is not installed");
    }
    found
}

/// Four consecutive free UDP ports (the first even), for sipp's SIP and
/// media sockets. Taken in turn from 20000-29999, below the kernel's
/// ephemeral range and the recorder's RTP range, so that tests running in
/// parallel never pick the same ones.
pub(crate) fn free_udp_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(20_000);
    loop {
        let base = NEXT.fetch_add(4, std::sync::atomic::Ordering::Relaxed);
        assert!(base < 29_990, "out of test ports");
        if (0..4).all(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

/// Runs one sipp call of `scenario` against `sip` over `transport` (`u1`,
/// `t1`), from `cwd` (where `rtp_stream` finds its audio), its RTP sent
/// from `media_port`.
pub(crate) async fn sipp(
    scenario: &std::path::Path,
    sip: std::net::SocketAddr,
    transport: &str,
    cwd: &std::path::Path,
    media_port: u16,
) -> std::process::Output {
    tokio::process::Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args(["-s", "acme", "-m", "1", "-t", transport])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
        .args(["-timeout", "30s", "-nostdin", "-trace_err"])
        .arg(sip.to_string())
        .current_dir(cwd)
        .kill_on_drop(true)
        .output()
        .await
        .expect("sipp runs")
}

/// What a failed sipp run printed, with its errors log (`-trace_err`,
/// written in `dir`).
pub(crate) fn sipp_failure(out: &std::process::Output, dir: &std::path::Path) -> String {
    let errors = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    format!(
        "sipp failed: {}\n{}\n{errors}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A call's recording, as the API serves it.
pub(crate) async fn recording(app: &TestApp, t: &Tenant, id: &str) -> bytes::Bytes {
    let r = app
        .http
        .get(app.url(&format!("/api/v1/calls/{id}/audio")))
        .header("Authorization", format!("Token {}", t.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the recording of {id}");
    r.bytes().await.unwrap()
}

/// Waits (up to 5 s) for a call's recording to be attached (at the BYE);
/// its `audio_state` then.
pub(crate) async fn audio_state(app: &TestApp, t: &Tenant, id: &str) -> Value {
    eventually("the recording attached", Duration::from_secs(5), || async {
        let (_, c) = app.get(t, &format!("/api/v1/calls/{id}")).await;
        match &c["audio_state"] {
            state if state == "available" => Ok(state.clone()),
            _ => Err(c),
        }
    })
    .await
}

/// G.711 µ-law encoding of one linear sample.
fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = (s + BIAS).min(32635 + BIAS);
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Two seconds of a 440 Hz tone, µ-law, for sipp's `rtp_stream`.
pub(crate) fn tone_file(dir: &std::path::Path) -> String {
    let bytes: Vec<u8> = (0..16_000)
        .map(|i| {
            let t = i as f64 / 8000.0;
            ulaw(((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16)
        })
        .collect();
    let path = dir.join("tone.ulaw");
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

/// [`scenario`], whose call fails unless the `200 OK` carries `contact`
/// in its Contact and `media` as its SDP `c=` address.
pub(crate) fn scenario_expecting(tone: &str, media_port: u16, contact: &str, media: &str) -> String {
    let escape = |s: &str| s.replace('.', "\\.");
    scenario(tone, media_port).replace(
        r#"<recv response="200" rtd="true"/>"#,
        &format!(
            r#"<recv response="200" rtd="true">
    <action>
      <ereg regexp="sip:callmeta@{}[;>]" search_in="hdr" header="Contact:" check_it="true" assign_to="contact"/>
      <ereg regexp="c=IN IP4 {}" search_in="body" check_it="true" assign_to="media"/>
    </action>
  </recv>
  <Reference variables="contact,media"/>"#,
            escape(contact),
            escape(media)
        ),
    )
}

pub(crate) fn scenario(tone: &str, media_port: u16) -> String {
    let second = media_port + 2;
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="SIPREC recording session">
  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:sbc@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sbc@[local_ip]:[local_port];transport=[transport]>;+sip.src
Max-Forwards: 70
Require: siprec
X-Agent-Id: cindy
Content-Type: multipart/mixed;boundary="foobar"
Content-Length: [len]

--foobar
Content-Type: application/sdp

v=0
o=SBC 1 1 IN IP4 [media_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio {media_port} RTP/AVP 8 0 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=label:1
a=sendonly
m=audio {second} RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:2
a=sendonly
--foobar
Content-Type: application/rs-metadata+xml
Content-Disposition: recording-session

<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>
  <datamode>complete</datamode>
  <session session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <sipSessionID>ab30317f1a784dc48ff824d0d3715d86</sipSessionID>
  </session>
  <participant participant_id="srfBElmCRp2QB23b7Mpk0w==">
    <nameID aor="sip:+33102030405@example.com"><name>Caller</name></nameID>
  </participant>
  <participant participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <nameID aor="sip:cindy@example.com"><name>Cindy</name></nameID>
  </participant>
  <stream stream_id="UAAMm5GRQKSCMVvLyl4rFw==" session_id="hVpd7YQgRW2nD22h7q60JQ=="><label>1</label></stream>
  <stream stream_id="i1Pz3to5hGk8fuXl+PbwCw==" session_id="hVpd7YQgRW2nD22h7q60JQ=="><label>2</label></stream>
  <sessionrecordingassoc session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <associate-time>2026-01-30T12:34:56Z</associate-time>
  </sessionrecordingassoc>
</recording>
--foobar--
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:sbc@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <nop><action><exec rtp_stream="{tone},1,0"/></action></nop>
  <pause milliseconds="2600"/>
  <send retrans="500">
    <![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: <sip:sbc@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#
    )
}

async fn spec_tenant(app: &TestApp) -> Tenant {
    let t = app.create_tenant("acme");
    app.register_sbc(&t, "127.0.0.1");
    app.create_table(&t, "crm", json!({"key": "agent_id"})).await;
    let (status, _) = app.upload(&t, "crm", SPEC_TABLE).await;
    assert_eq!(status, 201);
    let (status, body) = app
        .put_json(
            &t,
            "/api/v1/siprec",
            json!({"mapping": {"x_agent_id": "agent_id"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    t
}

/// Reads a WAV: (channels, sample rate, samples per channel, left energy, right energy).
pub(crate) fn wav_summary(wav: &[u8]) -> (u16, u32, usize, u64, u64) {
    assert_eq!(&wav[0..4], b"RIFF");
    let channels = u16::from_le_bytes([wav[22], wav[23]]);
    let rate = u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]);
    let data = &wav[44..];
    let frames = data.len() / 4;
    let (mut left, mut right) = (0u64, 0u64);
    for f in data.chunks_exact(4) {
        left += i16::from_le_bytes([f[0], f[1]]).unsigned_abs() as u64;
        right += i16::from_le_bytes([f[2], f[3]]).unsigned_abs() as u64;
    }
    (channels, rate, frames, left, right)
}

async fn record_one_call(transport: &str) {
    if !have_sipp() {
        return;
    }
    let app = TestApp::spawn().await;
    let acme = spec_tenant(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let tone = tone_file(dir.path());
    let media_port = free_udp_port() & !1;
    let xml = dir.path().join("siprec.xml");
    std::fs::write(&xml, scenario(&tone, media_port)).unwrap();
    let out = sipp(&xml, app.sip, transport, dir.path(), media_port).await;
    assert!(out.status.success(), "{}", sipp_failure(&out, dir.path()));

    let (_, list) = app.get(&acme, "/api/v1/calls").await;
    assert_eq!(list["count"], 1, "{list}");
    let call = &list["data"][0];
    assert_eq!(call["source"], "siprec");
    let metadata = &call["metadata"];
    assert_eq!(metadata["x_agent_id"], "cindy", "{call}");
    assert_eq!(
        metadata["agent_id"], "cindy",
        "the tenant's mapping applies: {call}"
    );
    assert_eq!(
        metadata["team_name"], "diamond",
        "enriched from the CRM table: {call}"
    );
    assert_eq!(metadata["datetime"], "2026-01-30T12:34:56Z", "{call}");
    assert_eq!(
        metadata["original_call_id"], "ab30317f1a784dc48ff824d0d3715d86",
        "{call}"
    );
    assert_eq!(call["timestamp"], "2026-01-30T12:34:56Z");
    assert_eq!(call["enrichment"][0]["status"], "matched");

    // The recording: stereo, 8 kHz, about the two seconds played, the tone on
    // the first stream's channel and silence on the second's.
    let id = call["unique_id"].as_str().unwrap();
    assert_eq!(audio_state(&app, &acme, id).await, "available");
    let wav = recording(&app, &acme, id).await;
    let (channels, rate, frames, left, right) = wav_summary(&wav);
    assert_eq!((channels, rate), (2, 8000));
    let seconds = frames as f64 / 8000.0;
    assert!((1.9..=2.3).contains(&seconds), "{seconds} s recorded");
    assert!(left / frames as u64 > 1000, "the tone is on the left channel");
    assert_eq!(right, 0, "nothing was sent on the second stream");
    // The metrics saw the call, its packets (50 a second), none lost, and
    // its end.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    let received = sample("callmeta_rtp_packets_received_total");
    assert!((95.0..=120.0).contains(&received), "{received} RTP packets");
    assert_eq!(sample("callmeta_rtp_packets_lost_total"), 0.0);
    assert_eq!(sample("callmeta_sip_calls_in_progress"), 0.0);
    assert!(
        metrics.contains("callmeta_calls_created_total{source=\"siprec\""),
        "{metrics}"
    );
    assert!(
        std::fs::read_dir(app.data_dir.join("recordings")).map_or(true, |d| d
            .flatten()
            .all(|t| std::fs::read_dir(t.path()).map_or(true, |mut f| f.next().is_none()))),
        "the working file is removed once stored"
    );
}

#[tokio::test]
async fn sipp_records_a_call_over_udp() {
    record_one_call("u1").await;
}

#[tokio::test]
async fn sipp_records_a_call_over_tcp() {
    record_one_call("t1").await;
}

fn request(method: &str, call_id: &str, user: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK{call_id}\r\n\
         From: <sip:sbc@127.0.0.1>;tag=1\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn exchange(socket: &UdpSocket, to: std::net::SocketAddr, message: &str, want: &str) -> String {
    socket.send_to(message.as_bytes(), to).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 100") {
            assert!(text.starts_with(want), "expected {want}, got:\n{text}");
            return text;
        }
    }
}

#[tokio::test]
async fn options_and_clear_refusals() {
    let app = TestApp::spawn().await;
    let _acme = spec_tenant(&app).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let options = exchange(
        &socket,
        app.sip,
        &request("OPTIONS", "o1", "acme", "", ""),
        "SIP/2.0 200",
    )
    .await;
    assert!(
        options.contains("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"),
        "{options}"
    );
    assert!(options.contains("application/rs-metadata+xml"), "{options}");

    // A source registered for no tenant, and no default tenant: 403.
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
    let stranger = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let invite = request("INVITE", "i1", "acme", "Content-Type: application/sdp\r\n", sdp);
    exchange(&stranger, app.sip, &invite, "SIP/2.0 403").await;
    // A body we do not take: 415 with Accept.
    let invite = request("INVITE", "i2", "acme", "Content-Type: text/plain\r\n", "hello");
    let refused = exchange(&socket, app.sip, &invite, "SIP/2.0 415").await;
    assert!(refused.contains("Accept:"), "{refused}");
    // An offer without G.711: 488.
    let g729 = sdp.replace("RTP/AVP 0", "RTP/AVP 18");
    let invite = request("INVITE", "i3", "acme", "Content-Type: application/sdp\r\n", &g729);
    exchange(&socket, app.sip, &invite, "SIP/2.0 488").await;
    // Broken XML metadata: 400.
    let multipart = format!(
        "--b\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n--b\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<recording><participant></recording>\r\n--b--\r\n"
    );
    let invite = request(
        "INVITE",
        "i4",
        "acme",
        "Content-Type: multipart/mixed;boundary=b\r\n",
        &multipart,
    );
    exchange(&socket, app.sip, &invite, "SIP/2.0 400").await;
    // A request missing its Call-ID: 400, and the server keeps serving.
    let broken = request("INVITE", "i5", "acme", "", "").replace("Call-ID: i5\r\n", "");
    exchange(&socket, app.sip, &broken, "SIP/2.0 400").await;
    // BYE for an unknown call: 481. An unknown method: 405.
    exchange(
        &socket,
        app.sip,
        &request("BYE", "nope", "acme", "", ""),
        "SIP/2.0 481",
    )
    .await;
    exchange(
        &socket,
        app.sip,
        &request("SUBSCRIBE", "s1", "acme", "", ""),
        "SIP/2.0 405",
    )
    .await;
    exchange(
        &socket,
        app.sip,
        &request("OPTIONS", "o2", "acme", "", ""),
        "SIP/2.0 200",
    )
    .await;
    let (_, list) = app.get(&_acme, "/api/v1/calls").await;
    assert_eq!(list["count"], 0, "no refused INVITE left a call: {list}");
}

/// Every vendor family's INVITE, as recorded in `fixtures/siprec/`, sent by
/// sipp (scenarios generated by `tests/sipp/generate.py`): each call is
/// recorded with its audio, flattened to its product keys, and enriched from
/// a CRM table of callers keyed by phone number. The Avaya pair and the
/// RFC example carry an in-dialog UPDATE (participants change; a partial
/// snapshot).
#[tokio::test]
async fn sipp_sends_each_vendor_family() {
    if !have_sipp() {
        return;
    }
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme");
    app.register_sbc(&acme, "127.0.0.1");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let snapshots = root.join("../siprec/tests/snapshots");
    let snapshot = |name: &str| -> std::collections::BTreeMap<String, String> {
        std::fs::read_to_string(snapshots.join(format!("{name}.keys")))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    };
    let mut scenarios: Vec<_> = std::fs::read_dir(root.join("tests/sipp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 14, "{scenarios:?}");

    // Callers by phone number: every number the fixtures carry, with a tier.
    // Two fixtures of a family may share a number: the first one's tier.
    let mut tiers = std::collections::BTreeMap::new();
    let mut crm = String::from("phonenumber,account_tier\n");
    for path in &scenarios {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if let Some(phone) = snapshot(&name).get("phonenumber")
            && !tiers.contains_key(phone)
        {
            tiers.insert(phone.clone(), format!("tier-{name}"));
            crm.push_str(&format!("{phone},tier-{name}\n"));
        }
    }
    app.create_table(
        &acme,
        "callers",
        json!({"key": "phonenumber", "duplicates": "first"}),
    )
    .await;
    let (status, body) = app.upload(&acme, "callers", crm).await;
    assert_eq!(status, 201, "{body}");

    let dir = tempfile::tempdir().unwrap();
    tone_file(dir.path());
    let mut matched = 0;
    let mut seen = std::collections::HashSet::new();
    for path in &scenarios {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let media_port = free_udp_port() & !1;
        let out = sipp(path, app.sip, "u1", dir.path(), media_port).await;
        assert!(out.status.success(), "{name}: {}", sipp_failure(&out, dir.path()));
        // Calls are listed by their own time (the metadata's), so find the new one.
        let (_, list) = app.get(&acme, "/api/v1/calls?limit=100").await;
        let fresh: Vec<Value> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| !seen.contains(c["unique_id"].as_str().unwrap()))
            .cloned()
            .collect();
        assert_eq!(fresh.len(), 1, "{name}: one new call: {list}");
        let call = fresh[0].clone();
        seen.insert(call["unique_id"].as_str().unwrap().to_string());
        let metadata = &call["metadata"];
        let expected = snapshot(&name);
        assert_eq!(call["source"], "siprec", "{name}");
        assert!(metadata["siprec_dialect"].is_string(), "{name}: {call}");
        for key in ["original_call_id", "datetime"] {
            if expected.contains_key(key) {
                assert!(metadata[key].is_string(), "{name}: {key} missing: {call}");
            }
        }
        if let Some(phone) = expected.get("phonenumber") {
            assert_eq!(metadata["phonenumber"], phone.as_str(), "{name}: {call}");
            assert_eq!(call["enrichment"][0]["status"], "matched", "{name}: {call}");
            assert_eq!(metadata["account_tier"], tiers[phone].as_str(), "{name}");
            matched += 1;
        }
        let id = call["unique_id"].as_str().unwrap().to_string();
        assert_eq!(audio_state(&app, &acme, &id).await, "available", "{name}");
        if name == "avaya-sbce-2" {
            // The UPDATE changed the participants: its snapshot is the call's now.
            let (_, c) = app.get(&acme, &format!("/api/v1/calls/{id}")).await;
            let update = snapshot("avaya-sbce-3");
            for (k, v) in update
                .iter()
                .filter(|(k, _)| k.starts_with("participant_") && k.ends_with("_aor"))
            {
                assert_eq!(c["metadata"][k], v.as_str(), "{name}: {k} after the UPDATE");
            }
        }
    }
    assert!(
        matched >= scenarios.len() / 2,
        "only {matched} calls matched a caller"
    );
}

/// Runs one of the hand-written scenarios in `tests/sipp/lifecycle/`.
async fn run_lifecycle_scenario(app: &TestApp, name: &str, transport: &str) -> std::process::Output {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let scenario = root.join(format!("tests/sipp/lifecycle/{name}.xml"));
    let dir = tempfile::tempdir().unwrap();
    let media_port = free_udp_port() & !1;
    sipp(&scenario, app.sip, transport, dir.path(), media_port).await
}

/// An INVITE cancelled while the recorder is still ringing: 200 to the
/// CANCEL, 487 to the INVITE (sipp fails the scenario otherwise), no call.
#[tokio::test]
async fn sipp_cancels_before_the_answer() {
    if !have_sipp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(dir.path());
    config.siprec.answer_delay_ms = 3_000;
    let app = TestApp::spawn_with(config).await;
    refused_over_udp_and_tcp_without_a_call(&app, "cancel").await;
}

/// A body cut off mid-element: 400, no call, and the recorder still
/// answers the next request.
#[tokio::test]
async fn sipp_malformed_body_is_refused() {
    if !have_sipp() {
        return;
    }
    let app = TestApp::spawn().await;
    refused_over_udp_and_tcp_without_a_call(&app, "malformed").await;
}

/// Plays a lifecycle scenario (it checks the answers itself) over UDP and
/// TCP, then checks that no call was kept.
async fn refused_over_udp_and_tcp_without_a_call(app: &TestApp, name: &str) {
    let acme = app.create_tenant("acme");
    app.register_sbc(&acme, "127.0.0.1");
    for transport in ["u1", "t1"] {
        let out = run_lifecycle_scenario(app, name, transport).await;
        assert!(
            out.status.success(),
            "{name} over {transport}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, list) = app.get(&acme, "/api/v1/calls").await;
    assert_eq!(list["count"], 0, "{name}: no call is kept: {list}");
}

/// The server is killed (SIGKILL) in the middle of a recorded call: after a
/// restart the call has the audio received up to about a second before.
#[tokio::test]
async fn a_crash_mid_call_leaves_the_audio_received_so_far() {
    if !have_sipp() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_callmeta");
    let created = std::process::Command::new(bin)
        .args([
            "tenant",
            "create",
            "acme",
            "--password",
            "acme-secret-pw",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = serde_json::from_slice::<Value>(&created.stdout).unwrap()["api_token"]
        .as_str()
        .unwrap()
        .to_string();
    let registered = std::process::Command::new(bin)
        .args(["tenant", "sip-source", "add", "acme", "127.0.0.1", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    let (mut server, _, sip) = crate::helpers::spawn_serve(data.path(), &[], &[]);

    // A call whose tone lasts 2 s; the server dies before the BYE.
    let dir = tempfile::tempdir().unwrap();
    let tone = tone_file(dir.path());
    let media_port = free_udp_port();
    let xml = dir.path().join("call.xml");
    std::fs::write(&xml, scenario(&tone, media_port)).unwrap();
    let call = {
        let (xml, cwd) = (xml.clone(), dir.path().to_path_buf());
        tokio::spawn(async move { sipp(&xml, sip, "u1", &cwd, media_port).await })
    };
    // Killed once half a second of audio (16,000 bytes of stereo 16-bit
    // 8 kHz) is in the recording file.
    let recorded = || {
        std::fs::read_dir(data.path().join("recordings"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|tenant| std::fs::read_dir(tenant.path()).into_iter().flatten().flatten())
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len().saturating_sub(44))
            .sum::<u64>()
    };
    eventually("the server writing audio", Duration::from_secs(20), || async {
        match recorded() {
            bytes if bytes >= 16_000 => Ok(()),
            bytes => Err(format!("{bytes} bytes recorded")),
        }
    })
    .await;
    server.kill().unwrap();
    server.wait().unwrap();
    call.abort(); // sipp would wait for its BYE to be answered

    // Restarted on the same data: the call is there with its audio so far.
    let app = TestApp::spawn_with(crate::helpers::test_config(data.path())).await;
    let acme = Tenant {
        slug: "acme".into(),
        token,
        password: "acme-secret-pw".into(),
    };
    let (_, list) = app.get(&acme, "/api/v1/calls").await;
    assert_eq!(list["count"], 1, "{list}");
    let id = list["data"][0]["unique_id"].as_str().unwrap().to_string();
    assert_eq!(audio_state(&app, &acme, &id).await, "available");
    let wav = recording(&app, &acme, &id).await;
    let (channels, rate, frames, left, _) = wav_summary(&wav);
    assert_eq!((channels, rate), (2, 8000));
    let seconds = frames as f64 / 8000.0;
    assert!(
        (0.4..=2.1).contains(&seconds),
        "{seconds} s kept of the 2 s sent before the crash"
    );
    assert!(left / frames.max(1) as u64 > 1000, "the tone is there");
}

/// A recording file whose job is gone while its call has no audio (storing
/// it failed at the BYE, or it was left by a version that kept no jobs) is
/// attached at the next start, not thrown away.
#[tokio::test]
async fn a_recording_left_on_disk_without_its_job_is_attached_at_the_next_start() {
    use callmeta_app::store::Store;
    let data = tempfile::tempdir().unwrap();
    let config = crate::helpers::test_config(data.path());
    let app = TestApp::spawn_with(config.clone()).await;
    let t = app.create_tenant("acme");
    app.register_sbc(&t, "127.0.0.1");
    let (_, call) = app
        .post_json(&t, "/api/v1/calls", json!({"metadata": {"agent_id": "cindy"}}))
        .await;
    let id = call["unique_id"].as_str().unwrap().to_string();
    app.stop().await;
    let store = callmeta_store::SqlStore::open_sqlite(&data.path().join("callmeta.db"))
        .await
        .unwrap();
    let tenant = store
        .tenant_by_slug(&callmeta_core::domain::TenantSlug::parse("acme").unwrap())
        .await
        .unwrap();
    drop(store);
    // As the recorder leaves it: a header with no sizes yet, then 0.5 s of
    // stereo 16-bit audio.
    let mut wav = b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00\x40\x1f\x00\x00\x00\x7d\x00\x00\x04\x00\x10\x00data\x00\x00\x00\x00".to_vec();
    wav.extend(std::iter::repeat_n([0x10u8, 0x20, 0, 0], 4_000).flatten());
    let dir = data.path().join("recordings").join(&tenant.id.0);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{id}.wav"));
    std::fs::write(&file, &wav).unwrap();

    let app = TestApp::spawn_with(config).await;
    assert_eq!(audio_state(&app, &t, &id).await, "available");
    let stored = recording(&app, &t, &id).await;
    let (channels, rate, frames, left, right) = wav_summary(&stored);
    assert_eq!((channels, rate, frames), (2, 8000, 4_000));
    assert!(left > 0 && right == 0);
    assert!(!file.exists(), "the file is removed once attached");
    app.stop().await;
}
