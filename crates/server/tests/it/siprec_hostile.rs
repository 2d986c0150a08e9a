//! SIPREC against hostile or careless peers, from a raw SIP client: forged
//! in-dialog requests, a replayed Call-ID, injected RTP, too many streams,
//! tenants claiming an SBC, TCP peers that hold connections, and dialogs
//! that never end by themselves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::helpers::{Tenant, TestApp, eventually, test_config};
use crate::siprec::{audio_state, recording, wav_summary};

/// A raw SIP peer on UDP.
struct Peer {
    socket: UdpSocket,
    server: SocketAddr,
}

impl Peer {
    async fn bind(ip: &str, server: SocketAddr) -> Peer {
        Peer {
            socket: UdpSocket::bind((ip, 0)).await.unwrap(),
            server,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    async fn send(&self, message: &str) {
        self.socket
            .send_to(message.as_bytes(), self.server)
            .await
            .unwrap();
    }

    /// The next final response to a `method` request of `call_id` (other
    /// responses, such as retransmitted 200s to an earlier INVITE, are
    /// skipped).
    async fn response(&self, method: &str, call_id: &str) -> String {
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(10), self.socket.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no response to {method}"))
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let cseq = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("cseq:"))
                .unwrap_or("");
            let same_call = text.lines().any(|l| l.trim() == format!("Call-ID: {call_id}"));
            if same_call && cseq.ends_with(method) && !text.starts_with("SIP/2.0 1") {
                return text;
            }
        }
    }

    async fn exchange(&self, message: &str, method: &str, want: &str) -> String {
        self.send(message).await;
        let call_id = message
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .expect("a Call-ID")
            .trim();
        let response = self.response(method, call_id).await;
        assert!(response.starts_with(want), "expected {want}, got:\n{response}");
        response
    }
}

struct Dialog {
    call_id: String,
    from_tag: String,
    to_tag: String,
}

fn sdp(ip: &str, media_port: u16, streams: usize) -> String {
    let mut sdp = format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n");
    for k in 0..streams {
        sdp.push_str(&format!(
            "m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n",
            media_port as usize + 2 * k
        ));
    }
    sdp
}

#[allow(clippy::too_many_arguments)]
fn request(
    method: &str,
    user: &str,
    from: SocketAddr,
    dialog: &Dialog,
    to_tag: Option<&str>,
    cseq: u32,
    extra: &str,
    body: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{}{cseq}{method}\r\n\
         From: <sip:sbc@{ip}>;tag={}\r\nTo: <sip:{user}@127.0.0.1>{to_tag}\r\nCall-ID: {}\r\n\
         CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        dialog.call_id,
        dialog.from_tag,
        dialog.call_id,
        body.len(),
        ip = from.ip(),
    )
}

fn invite(user: &str, from: SocketAddr, dialog: &Dialog, sdp: &str) -> String {
    request(
        "INVITE",
        user,
        from,
        dialog,
        None,
        1,
        "X-Agent-Id: cindy\r\nContent-Type: application/sdp\r\n",
        sdp,
    )
}

fn to_tag_of(response: &str) -> String {
    response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .and_then(|l| l.split(";tag=").nth(1))
        .map(|t| t.trim().to_string())
        .expect("a To tag")
}

/// The port our answer's first m-line names.
fn answered_port(response: &str) -> u16 {
    response
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("an m-line in the answer")
}

/// RTP packets of µ-law `byte`, 20 ms each, from `seq`/`ts` on.
fn rtp(seq: u16, ts: u32, ssrc: u32, byte: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(byte, 160));
    p
}

async fn tenant(app: &TestApp, slug: &str, sbc: Option<&str>) -> Tenant {
    let t = app.create_tenant(slug);
    if let Some(sbc) = sbc {
        app.register_sbc(&t, sbc);
    }
    t
}

async fn calls(app: &TestApp, t: &Tenant) -> Value {
    app.get(t, "/api/v1/calls").await.1
}

/// Requests that claim to be in a dialog but come from another address or
/// carry a wrong tag change nothing (481); RTP from another port is not
/// recorded, nor is a timestamp jump stretching the recording; a finished
/// call's Call-ID sent again is refused and its recording stays as it was.
#[tokio::test]
async fn a_dialog_belongs_to_its_peer() {
    let app = TestApp::spawn().await;
    let acme = tenant(&app, "acme", Some("127.0.0.1")).await;
    let sbc = Peer::bind("127.0.0.1", app.sip).await;
    let forger = Peer::bind("127.0.0.1", app.sip).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let injector = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media_port = media.local_addr().unwrap().port();
    let mut d = Dialog {
        call_id: "owned-1".into(),
        from_tag: "sbc1".into(),
        to_tag: String::new(),
    };
    let the_invite = invite("srs", sbc.addr(), &d, &sdp("127.0.0.1", media_port, 1));
    let ok = sbc.exchange(&the_invite, "INVITE", "SIP/2.0 200").await;
    d.to_tag = to_tag_of(&ok);
    let rtp_to = SocketAddr::new("127.0.0.1".parse().unwrap(), answered_port(&ok));
    sbc.send(&request("ACK", "srs", sbc.addr(), &d, Some(&d.to_tag), 1, "", ""))
        .await;
    let started = Instant::now();

    let list = calls(&app, &acme).await;
    assert_eq!(list["count"], 1, "{list}");
    let id = list["data"][0]["unique_id"].as_str().unwrap().to_string();
    let metadata_before = app.get(&acme, &format!("/api/v1/calls/{id}")).await.1["metadata"].clone();

    // Forged: right tags, another address; wrong From tag; wrong To tag.
    let bye = request("BYE", "srs", forger.addr(), &d, Some(&d.to_tag), 2, "", "");
    forger.exchange(&bye, "BYE", "SIP/2.0 481").await;
    let wrong_from = Dialog {
        from_tag: "not-the-sbc".into(),
        call_id: d.call_id.clone(),
        to_tag: d.to_tag.clone(),
    };
    let bye = request("BYE", "srs", sbc.addr(), &wrong_from, Some(&d.to_tag), 2, "", "");
    sbc.exchange(&bye, "BYE", "SIP/2.0 481").await;
    let metadata_update = "<?xml version=\"1.0\"?><recording xmlns='urn:ietf:params:xml:ns:recording:1'>\
        <datamode>partial</datamode><participant participant_id=\"p9\"><nameID aor=\"sip:mallory@evil\"/></participant></recording>";
    let headers = "Content-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n";
    let update = request(
        "UPDATE",
        "srs",
        sbc.addr(),
        &d,
        Some("cmwrong"),
        3,
        headers,
        metadata_update,
    );
    sbc.exchange(&update, "UPDATE", "SIP/2.0 481").await;
    let update = request(
        "UPDATE",
        "srs",
        forger.addr(),
        &d,
        Some(&d.to_tag),
        3,
        headers,
        metadata_update,
    );
    forger.exchange(&update, "UPDATE", "SIP/2.0 481").await;
    let call = app.get(&acme, &format!("/api/v1/calls/{id}")).await.1;
    assert_eq!(
        call["metadata"], metadata_before,
        "forged requests changed nothing"
    );
    assert_eq!(call["audio_state"], "missing", "the call goes on");

    // One second of audio from the offered address (latched); loud packets
    // from another port, and a timestamp ten minutes ahead, are not kept.
    for i in 0..50u16 {
        let packet = rtp(i, u32::from(i) * 160, 7, 0xA0);
        media.send_to(&packet, rtp_to).await.unwrap();
        let loud = rtp(i, 8000 + u32::from(i) * 160, 9, 0x00);
        injector.send_to(&loud, rtp_to).await.unwrap();
        // Paced like real RTP: one second of audio takes a second.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let jump = rtp(50, 8000 * 600, 7, 0xA0);
    media.send_to(&jump, rtp_to).await.unwrap();

    let bye = request("BYE", "srs", sbc.addr(), &d, Some(&d.to_tag), 4, "", "");
    sbc.exchange(&bye, "BYE", "SIP/2.0 200").await;
    let lasted = started.elapsed().as_secs_f64();
    assert_eq!(audio_state(&app, &acme, &id).await, "available");
    let wav = recording(&app, &acme, &id).await;
    let (_, _, frames, left, _) = wav_summary(&wav);
    let seconds = frames as f64 / 8000.0;
    assert!(
        seconds <= lasted + 1.0,
        "{seconds} s recorded in a call of {lasted:.1} s: a timestamp stretched it"
    );
    let loudest = wav[44..]
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs())
        .max()
        .unwrap_or(0);
    assert!(
        loudest < 20_000,
        "the injected packets were recorded (peak {loudest})"
    );
    assert!(left > 0, "the peer's own audio is recorded");

    // The same INVITE again (a replay): refused, the recording unchanged.
    sbc.exchange(&the_invite, "INVITE", "SIP/2.0 482").await;
    assert_eq!(calls(&app, &acme).await["count"], 1);
    assert_eq!(
        recording(&app, &acme, &id).await,
        wav,
        "the first recording stays byte for byte"
    );
    assert_eq!(
        app.get(&acme, &format!("/api/v1/calls/{id}")).await.1["metadata"],
        metadata_before
    );
}

/// Routing is the operator's: a tenant cannot claim an SBC's address, and
/// a Request-URI cannot send a registered SBC's call to another tenant.
#[tokio::test]
async fn a_tenant_cannot_claim_an_sbc() {
    let app = TestApp::spawn().await;
    let acme = tenant(&app, "acme", Some("127.0.0.0/8")).await;
    let globex = tenant(&app, "globex", None).await;
    let (status, body) = app
        .put_json(
            &globex,
            "/api/v1/siprec",
            json!({"source_addresses": ["127.0.0.1"]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = app.get(&acme, "/api/v1/siprec").await;
    assert_eq!(status, 200);
    assert_eq!(body["source_addresses"], json!(["127.0.0.0/8"]), "{body}");
    // Sending the registered networks back with a mapping is fine.
    let (status, body) = app
        .put_json(
            &acme,
            "/api/v1/siprec",
            json!({"mapping": {"a": "b"}, "source_addresses": ["127.0.0.0/8"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let sbc = Peer::bind("127.0.0.1", app.sip).await;
    let d = Dialog {
        call_id: "moved-1".into(),
        from_tag: "m1".into(),
        to_tag: String::new(),
    };
    let response = sbc
        .exchange(
            &invite("globex", sbc.addr(), &d, &sdp("127.0.0.1", 40_000, 1)),
            "INVITE",
            "SIP/2.0 403",
        )
        .await;
    assert!(response.contains("not registered for the tenant"), "{response}");
    assert_eq!(calls(&app, &globex).await["count"], 0);
    assert_eq!(calls(&app, &acme).await["count"], 0);

    // The operator's CLI lists and removes registrations.
    let out = app
        .cli(&["tenant", "sip-source", "list", "acme"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["networks"], json!(["127.0.0.0/8"]));
    let out = app
        .cli(&["tenant", "sip-source", "add", "acme", "not-a-network"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an IP address"));
    let out = app
        .cli(&["tenant", "sip-source", "remove", "acme", "127.0.0.0/8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Unregistered now (within the routing table's one-second reuse).
    let attempt = std::sync::atomic::AtomicU32::new(0);
    eventually("the source unregistered", Duration::from_secs(5), || async {
        let call_id = format!(
            "moved-2-{}",
            attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let d = Dialog {
            call_id: call_id.clone(),
            from_tag: "m2".into(),
            to_tag: String::new(),
        };
        sbc.send(&invite("acme", sbc.addr(), &d, &sdp("127.0.0.1", 40_000, 1)))
            .await;
        let response = sbc.response("INVITE", &call_id).await;
        if response.starts_with("SIP/2.0 403") {
            Ok(())
        } else {
            Err(response)
        }
    })
    .await;
}

/// More m-lines than a call may have: 488, no call, no ports. Two
/// different Content-Length headers: 400.
#[tokio::test]
async fn too_many_streams_and_ambiguous_lengths_are_refused() {
    let app = TestApp::spawn().await;
    let acme = tenant(&app, "acme", Some("127.0.0.1")).await;
    let sbc = Peer::bind("127.0.0.1", app.sip).await;
    let d = Dialog {
        call_id: "streams-1".into(),
        from_tag: "s1".into(),
        to_tag: String::new(),
    };
    let response = sbc
        .exchange(
            &invite("srs", sbc.addr(), &d, &sdp("127.0.0.1", 40_000, 12)),
            "INVITE",
            "SIP/2.0 488",
        )
        .await;
    assert!(response.contains("at most 4"), "{response}");
    let d = Dialog {
        call_id: "length-1".into(),
        from_tag: "l1".into(),
        to_tag: String::new(),
    };
    let body = sdp("127.0.0.1", 40_000, 1);
    let twice = invite("srs", sbc.addr(), &d, &body).replace(
        "Content-Length:",
        &format!("Content-Length: {}\r\nContent-Length:", body.len() + 10),
    );
    sbc.exchange(&twice, "INVITE", "SIP/2.0 400").await;
    assert_eq!(calls(&app, &acme).await["count"], 0);

    // Over TCP the stream is not split on either length: 400, then closed.
    let mut tcp = TcpStream::connect(app.sip).await.unwrap();
    tcp.write_all(twice.replace("SIP/2.0/UDP", "SIP/2.0/TCP").as_bytes())
        .await
        .unwrap();
    let answer = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(answer.starts_with("SIP/2.0 400"), "{answer}");
    assert_eq!(calls(&app, &acme).await["count"], 0);
}

/// Reads until the server closes the connection (or resets it); panics if
/// it is still open after `limit`.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection is still open after {limit:?}"),
        }
    }
}

/// SIP over TCP: a message left unfinished, an idle connection, more
/// connections than a source may hold, and a peer that never reads its
/// responses are all cut off.
#[tokio::test]
async fn tcp_peers_cannot_hold_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.siprec.tcp_idle_secs = 2;
    config.siprec.tcp_message_secs = 1;
    config.siprec.tcp_send_queue = 8;
    config.siprec.max_tcp_connections_per_source = 4;
    let app = TestApp::spawn_with(config).await;

    // A partial message: closed once it is 1 s old.
    let started = Instant::now();
    let mut partial = TcpStream::connect(app.sip).await.unwrap();
    partial
        .write_all(b"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKp\r\n")
        .await
        .unwrap();
    read_until_closed(&mut partial, Duration::from_secs(6)).await;
    let partial_cut = started.elapsed();

    // Idle connections: four are held, a fifth from the same address is
    // closed at once; all four are closed once idle for 2 s.
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(app.sip).await.unwrap());
    }
    let mut fifth = TcpStream::connect(app.sip).await.unwrap();
    read_until_closed(&mut fifth, Duration::from_secs(1)).await;
    for tcp in &mut idle {
        read_until_closed(tcp, Duration::from_secs(6)).await;
    }
    let idle_cut = started.elapsed();

    // A peer that sends requests but never reads: disconnected.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.sip).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for i in 0..20_000 {
            let options = format!(
                "OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKn{i}\r\n\
                 From: <sip:a@127.0.0.1>;tag=n\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: n{i}\r\nCSeq: 1 OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            if write.write_all(options.as_bytes()).await.is_err() {
                return i;
            }
        }
        20_000
    });
    // Not reading for a while lets the server's queue fill.
    let sent = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .ok()
        .and_then(Result::ok);
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => panic!("a peer that does not read is still connected"),
        }
    }
    eprintln!(
        "TCP: partial message cut after {:.1} s, idle connections after {:.1} s, a peer not reading after {:.1} s ({sent:?} requests written)",
        partial_cut.as_secs_f64(),
        idle_cut.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // The listener still serves.
    let mut tcp = TcpStream::connect(app.sip).await.unwrap();
    tcp.write_all(
        b"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKok\r\n\
          From: <sip:a@127.0.0.1>;tag=o\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: ok\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"));
}

/// Dialogs end without a BYE: a 200 OK never acknowledged (64×T1; the
/// call is removed since no audio came), a call without RTP
/// (`rtp_timeout_secs`; its call keeps the audio so far), a call past
/// `max_call_secs`.
#[tokio::test]
async fn dialogs_end_without_their_bye() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.siprec.t1_ms = 50; // 64×T1 = 3.2 s
    config.siprec.rtp_timeout_secs = 1;
    config.siprec.max_call_secs = 3;
    let app = TestApp::spawn_with(config).await;
    let acme = tenant(&app, "acme", Some("127.0.0.1")).await;
    let sbc = Peer::bind("127.0.0.1", app.sip).await;
    let started = Instant::now();

    // Never acknowledged.
    let d = Dialog {
        call_id: "no-ack".into(),
        from_tag: "n1".into(),
        to_tag: String::new(),
    };
    sbc.exchange(
        &invite("srs", sbc.addr(), &d, &sdp("127.0.0.1", 40_000, 1)),
        "INVITE",
        "SIP/2.0 200",
    )
    .await;
    assert_eq!(calls(&app, &acme).await["count"], 1);
    // The sweep runs on the recorder's SIP timers (64xT1), real time.
    eventually(
        "the unacknowledged call ended",
        Duration::from_secs(15),
        || async {
            match calls(&app, &acme).await {
                list if list["count"] == 0 => Ok(()),
                list => Err(list),
            }
        },
    )
    .await;
    let no_ack = started.elapsed();

    // Acknowledged, then silent.
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut d = Dialog {
        call_id: "silent".into(),
        from_tag: "s1".into(),
        to_tag: String::new(),
    };
    let ok = sbc
        .exchange(
            &invite(
                "srs",
                sbc.addr(),
                &d,
                &sdp("127.0.0.1", media.local_addr().unwrap().port(), 1),
            ),
            "INVITE",
            "SIP/2.0 200",
        )
        .await;
    d.to_tag = to_tag_of(&ok);
    sbc.send(&request("ACK", "srs", sbc.addr(), &d, Some(&d.to_tag), 1, "", ""))
        .await;
    let id = calls(&app, &acme).await["data"][0]["unique_id"]
        .as_str()
        .unwrap()
        .to_string();
    let silent_started = Instant::now();
    eventually("the silent call ended", Duration::from_secs(10), || async {
        match app.get(&acme, &format!("/api/v1/calls/{id}")).await.1 {
            call if call["audio_state"] == "available" => Ok(()),
            call => Err(call),
        }
    })
    .await;
    let silent = silent_started.elapsed();
    let bye = request("BYE", "srs", sbc.addr(), &d, Some(&d.to_tag), 2, "", "");
    sbc.exchange(&bye, "BYE", "SIP/2.0 481").await;

    // Audio all along, but longer than max_call_secs.
    let mut d = Dialog {
        call_id: "long".into(),
        from_tag: "l1".into(),
        to_tag: String::new(),
    };
    let ok = sbc
        .exchange(
            &invite(
                "srs",
                sbc.addr(),
                &d,
                &sdp("127.0.0.1", media.local_addr().unwrap().port(), 1),
            ),
            "INVITE",
            "SIP/2.0 200",
        )
        .await;
    d.to_tag = to_tag_of(&ok);
    sbc.send(&request("ACK", "srs", sbc.addr(), &d, Some(&d.to_tag), 1, "", ""))
        .await;
    let rtp_to = SocketAddr::new("127.0.0.1".parse().unwrap(), answered_port(&ok));
    let long_started = Instant::now();
    let mut ended = None;
    for i in 0..300u16 {
        media
            .send_to(&rtp(i, u32::from(i) * 160, 3, 0xA0), rtp_to)
            .await
            .unwrap();
        // Paced like real RTP (a packet every 20 ms): the call must be
        // alive with audio when max_call_secs ends it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if i % 25 == 0 {
            let list = calls(&app, &acme).await;
            let long = list["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["unique_id"] != id.as_str())
                .cloned();
            if long.is_some_and(|c| c["audio_state"] == "available") {
                ended = Some(long_started.elapsed());
                break;
            }
        }
    }
    let ended = ended.expect("the call was not ended at max_call_secs");
    assert!(ended >= Duration::from_secs(3), "ended early: {ended:?}");
    eprintln!(
        "dialogs: unacknowledged released after {:.1} s (64xT1 = 3.2 s), silent call ended after {:.1} s (timeout 1 s), long call after {:.1} s (max 3 s)",
        no_ack.as_secs_f64(),
        silent.as_secs_f64(),
        ended.as_secs_f64()
    );
}

/// Bound to `[::]`, the listener serves IPv4 and IPv6 peers, each answered
/// with the address it reached (never a wildcard).
#[tokio::test]
async fn a_dual_stack_listener_answers_with_the_address_reached() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.sip = "[::]:0".into();
    let app = TestApp::spawn_with(config).await;
    let acme = tenant(&app, "acme", Some("127.0.0.1")).await;
    app.register_sbc(&acme, "::1");
    let port = app.sip.port();
    for (ip, server, contact, media) in [
        (
            "127.0.0.1",
            format!("127.0.0.1:{port}"),
            format!("127.0.0.1:{port}"),
            "c=IN IP4 127.0.0.1",
        ),
        (
            "::1",
            format!("[::1]:{port}"),
            format!("[::1]:{port}"),
            "c=IN IP6 ::1",
        ),
    ] {
        let sbc = Peer::bind(ip, server.parse().unwrap()).await;
        let d = Dialog {
            call_id: format!("dual-{ip}"),
            from_tag: "d".into(),
            to_tag: String::new(),
        };
        let ok = sbc
            .exchange(
                &invite("srs", sbc.addr(), &d, &sdp(ip, 40_000, 1)),
                "INVITE",
                "SIP/2.0 200",
            )
            .await;
        assert!(
            ok.contains(&format!("Contact: <sip:callmeta@{contact};transport=udp>")),
            "{ok}"
        );
        assert!(ok.contains(media), "{ok}");
        assert!(!ok.contains("0.0.0.0") && !ok.contains("[::]"), "{ok}");
    }
}
