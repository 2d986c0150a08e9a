//! SIPREC across a network: the SBC (sipp) on another host, in a network
//! namespace joined to this one by a veth pair, and the recorder bound to
//! `0.0.0.0`; and a flood of unanswered INVITEs from one source, which must
//! neither deny a call from another source nor hold its dialogs for long.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::UdpSocket;

use crate::helpers::{SPEC_TABLE, Tenant, TestApp, eventually, test_config};
use crate::siprec::{
    audio_state, have_sipp, recording, scenario, scenario_expecting, sipp_failure, tone_file, wav_summary,
};

/// A test host: a network namespace with one veth link to this one.
/// Here: `198.18.N.1` and `198.18.N.3` (two addresses of ours); there:
/// `198.18.N.2`. 198.18.0.0/15 is the range set aside for such tests.
struct TestHost {
    name: String,
    link: String,
    subnet: u8,
}

fn ip(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("ip").args(args).output()
}

impl TestHost {
    /// Makes the host, or `None` (with a message) where namespaces cannot
    /// be made; with `CALLMETA_TEST_CLIENTS=required` (CI) that fails.
    fn create() -> Option<TestHost> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let subnet = ((pid.wrapping_mul(7) + n * 37) % 250 + 1) as u8;
        let host = TestHost {
            name: format!("cm-sbc-{pid}-{n}"),
            link: format!("cmv{}{n}", pid % 100_000),
            subnet,
        };
        let made = ip(&["netns", "add", &host.name]).is_ok_and(|o| o.status.success());
        if !made {
            assert!(
                std::env::var("CALLMETA_TEST_CLIENTS").as_deref() != Ok("required"),
                "network namespaces are required (CALLMETA_TEST_CLIENTS=required): run as root with iproute2"
            );
            eprintln!("skipping: network namespaces cannot be made here (needs root and iproute2)");
            return None;
        }
        let peer = format!("{}p", host.link);
        let (here1, here3, there) = (host.here(), host.here_nat(), host.there());
        let steps: Vec<Vec<String>> = vec![
            vec!["link", "add", &host.link, "type", "veth", "peer", "name", &peer],
            vec!["link", "set", &peer, "netns", &host.name],
            vec!["addr", "add", &format!("{here1}/24"), "dev", &host.link],
            vec!["addr", "add", &format!("{here3}/24"), "dev", &host.link],
            vec!["link", "set", &host.link, "up"],
            vec![
                "-n",
                &host.name,
                "addr",
                "add",
                &format!("{there}/24"),
                "dev",
                &peer,
            ],
            vec!["-n", &host.name, "link", "set", &peer, "up"],
            vec!["-n", &host.name, "link", "set", "lo", "up"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            let out = ip(&args).expect("ip runs");
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(host)
    }

    fn here(&self) -> String {
        format!("198.18.{}.1", self.subnet)
    }

    /// A second address of ours, as a NAT's public address would be.
    fn here_nat(&self) -> String {
        format!("198.18.{}.3", self.subnet)
    }

    fn there(&self) -> String {
        format!("198.18.{}.2", self.subnet)
    }

    /// sipp on this host, calling `target`.
    async fn sipp(
        &self,
        scenario: &std::path::Path,
        target: SocketAddr,
        cwd: &std::path::Path,
    ) -> std::process::Output {
        let there = self.there();
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.name, "sipp", "-sf"])
            .arg(scenario)
            .args(["-s", "acme", "-m", "1", "-t", "u1"])
            .args(["-i", &there, "-p", "5060", "-mi", &there, "-mp", "6000"])
            .args(["-timeout", "30s", "-nostdin", "-trace_err"])
            .arg(target.to_string())
            .current_dir(cwd)
            .kill_on_drop(true)
            .output()
            .await
            .expect("sipp runs in the namespace")
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.link]);
    }
}

async fn spec_tenant(app: &TestApp, sbc: &str) -> Tenant {
    let t = app.create_tenant("acme");
    app.register_sbc(&t, sbc);
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

/// One call from the other host; the 200 OK must name `contact` and
/// `media`; the recording must hold the tone sent from there.
async fn call_from_the_other_host(
    host: &TestHost,
    settings: callmeta_sip::SipSettings,
    contact: &str,
    media: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.sip = "0.0.0.0:0".into();
    config.siprec = settings;
    let app = TestApp::spawn_with(config).await;
    let acme = spec_tenant(&app, &host.there()).await;
    let target = SocketAddr::new(host.here().parse().unwrap(), app.sip.port());
    let work = tempfile::tempdir().unwrap();
    let tone = tone_file(work.path());
    let xml = work.path().join("siprec.xml");
    let contact = format!("{contact}:{}", app.sip.port());
    std::fs::write(&xml, scenario_expecting(&tone, 6000, &contact, media)).unwrap();
    let out = host.sipp(&xml, target, work.path()).await;
    assert!(out.status.success(), "{}", sipp_failure(&out, work.path()));

    let (_, list) = app.get(&acme, "/api/v1/calls").await;
    assert_eq!(list["count"], 1, "{list}");
    let call = &list["data"][0];
    assert_eq!(call["metadata"]["team_name"], "diamond", "{call}");
    let id = call["unique_id"].as_str().unwrap();
    assert_eq!(audio_state(&app, &acme, id).await, "available");
    let (channels, _, frames, left, _) = wav_summary(&recording(&app, &acme, id).await);
    assert_eq!(channels, 2);
    let seconds = frames as f64 / 8000.0;
    assert!((1.9..=2.3).contains(&seconds), "{seconds} s recorded");
    assert!(
        left / frames as u64 > 1000,
        "the tone sent from the other host is recorded"
    );
    app.stop().await;
}

/// The recorder bound to `0.0.0.0` answers with the address the SBC
/// reached it on (Contact, SDP), and the audio comes; with
/// `advertised_address` and `media_address` (a NAT in front), those are
/// what the SBC is told, and the audio sent there is recorded too.
#[tokio::test]
async fn an_sbc_on_another_host_is_recorded() {
    if !have_sipp() {
        return;
    }
    let Some(host) = TestHost::create() else {
        return;
    };
    call_from_the_other_host(&host, Default::default(), &host.here(), &host.here()).await;
    let behind_nat = callmeta_sip::SipSettings {
        advertised_address: Some(host.here_nat()),
        media_address: Some(host.here_nat()),
        ..Default::default()
    };
    call_from_the_other_host(&host, behind_nat, &host.here_nat(), &host.here_nat()).await;
}

fn invite(call_id: &str, from: SocketAddr, streams: usize) -> String {
    let mut sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n",
        ip = from.ip()
    );
    for k in 0..streams {
        sdp.push_str(&format!("m=audio {} RTP/AVP 0\r\na=sendonly\r\n", 40_000 + 2 * k));
    }
    format!(
        "INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\r\n\
         From: <sip:sbc@{ip}>;tag=f{call_id}\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        ip = from.ip()
    )
}

/// 3,000 INVITEs that are never acknowledged, as fast as one socket sends
/// them, from a registered SBC: a call from another SBC is recorded all the
/// same, and the flood's dialogs (ports, calls) are released within 64×T1.
#[tokio::test]
async fn an_invite_flood_from_one_source_denies_no_other() {
    if !have_sipp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.siprec.t1_ms = 100; // 64×T1 = 6.4 s
    let t1 = Duration::from_millis(config.siprec.t1_ms);
    let app = TestApp::spawn_with(config).await;
    let acme = app.create_tenant("acme");
    app.register_sbc(&acme, "127.0.0.1");
    let flooder = app.create_tenant("flood");
    app.register_sbc(&flooder, "127.0.0.2");

    let socket = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let from = socket.local_addr().unwrap();
    let started = Instant::now();
    for i in 0..3000 {
        let message = invite(&format!("flood{i}"), from, 2);
        socket.send_to(message.as_bytes(), app.sip).await.unwrap();
    }
    let sent = started.elapsed();

    // A call from another SBC right after: recorded with its audio.
    let work = tempfile::tempdir().unwrap();
    let tone = tone_file(work.path());
    let media_port = crate::siprec::free_udp_port() & !1;
    let xml = work.path().join("siprec.xml");
    std::fs::write(&xml, scenario(&tone, media_port)).unwrap();
    // While the flood is still being read, the whole server may answer
    // `503 overloaded` (its bound on messages in flight, Retry-After: 1),
    // which an SBC retries; any other refusal fails the test.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let out = crate::siprec::sipp(&xml, app.sip, "u1", work.path(), media_port).await;
        if out.status.success() {
            break;
        }
        let failure = sipp_failure(&out, work.path());
        assert!(
            attempts < 10 && failure.contains("\"overloaded\""),
            "attempt {attempts}: {failure}"
        );
    }
    let (_, list) = app.get(&acme, "/api/v1/calls").await;
    assert_eq!(list["count"], 1, "{list}");
    let id = list["data"][0]["unique_id"].as_str().unwrap().to_string();
    assert_eq!(audio_state(&app, &acme, &id).await, "available");
    let (_, _, frames, left, _) = wav_summary(&recording(&app, &acme, &id).await);
    assert!(
        left / frames.max(1) as u64 > 1000,
        "the other source's call has its audio"
    );

    // The flood's admitted dialogs are released and their calls removed.
    let (_, flooded) = app.get(&flooder, "/api/v1/calls").await;
    let admitted = flooded["count"].as_u64().unwrap();
    assert!(
        admitted > 0 && admitted < 3000,
        "the source's rate bounded the flood: {admitted} admitted"
    );
    eventually(
        "the flood's dialogs released",
        t1 * 64 + Duration::from_secs(20),
        || async {
            match app.get(&flooder, "/api/v1/calls").await.1["count"].clone() {
                count if count == 0 => Ok(()),
                count => Err(format!("{count} still held")),
            }
        },
    )
    .await;
    let released = started.elapsed();
    eprintln!(
        "flood: 3000 INVITEs sent in {:.2} s, {admitted} admitted, all released {:.1} s after the first (64xT1 = {:.1} s)",
        sent.as_secs_f64(),
        released.as_secs_f64(),
        (t1 * 64).as_secs_f64()
    );
    app.stop().await;
}
