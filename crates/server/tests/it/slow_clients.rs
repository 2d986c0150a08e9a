//! Slow and idle clients cannot hold a listener: HTTP cuts a request head
//! that takes longer than its header timeout (slowloris), a body below the
//! rate floor, and connections over its caps; FTP and SFTP close idle
//! connections and refuse those over their caps. Timeouts are set small in
//! each test's configuration, and the tests wait for the server to close
//! the connection, bounded in count and time, on loopback.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, eventually, test_config};

/// Reads until the server closes the connection (or resets it); what it sent.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all).await.ok()?;
    Some(String::from_utf8_lossy(&seen).into_owned())
}

fn http_addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_slowloris_flood_is_cut_at_the_header_timeout_while_other_requests_are_served() {
    const CLIENTS: usize = 300;
    let header_timeout = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.http_server.header_timeout_secs = header_timeout.as_secs();
    // The flood and the normal client share 127.0.0.1: the per-address cap
    // would refuse the flood's connections at once; here the timeout is tested.
    config.http_server.max_connections_per_address = 0;
    config.http_server.max_connections = 0;
    let app = TestApp::spawn_with(config).await;
    let addr = http_addr(&app);

    // Each slow client sends a request line, then one header line every
    // 300 ms, never the blank line that ends the head.
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        clients.push(tokio::spawn(async move {
            let opened = Instant::now();
            if stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: callmeta\r\n")
                .await
                .is_err()
            {
                return opened.elapsed();
            }
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return opened.elapsed(),
                        Ok(_) => {} // a 408 or similar, then the close
                    },
                    // The slowness is what is tested: a header line every
                    // 300 ms keeps a naive server waiting for ever.
                    () = tokio::time::sleep(Duration::from_millis(300)) => {
                        if stream.write_all(b"X-Slow: still typing\r\n").await.is_err() {
                            return opened.elapsed();
                        }
                    }
                }
                if opened.elapsed() > Duration::from_secs(20) {
                    return Duration::MAX; // held: the test fails below
                }
            }
        }));
    }

    // While the flood holds its connections, a normal client is served.
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let served_after = started.elapsed();
    assert!(
        served_after < header_timeout,
        "served in {served_after:?}, during the flood"
    );

    let mut held = Vec::new();
    for client in clients {
        held.push(client.await.unwrap());
    }
    let longest = held.iter().max().copied().unwrap_or_default();
    let shortest = held.iter().min().copied().unwrap_or_default();
    eprintln!(
        "slowloris: {CLIENTS} slow clients cut after {:.2}-{:.2} s (header timeout {} s)",
        shortest.as_secs_f64(),
        longest.as_secs_f64(),
        header_timeout.as_secs()
    );
    assert!(
        longest < header_timeout + Duration::from_secs(3),
        "every slow client is cut soon after the header timeout; the longest was held {longest:?}"
    );
    assert!(
        shortest >= header_timeout - Duration::from_millis(100),
        "no slow client is cut before the timeout ({shortest:?})"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.http_server.header_timeout_secs = 1;
    let app = TestApp::spawn_with(config).await;
    let mut stream = TcpStream::connect(http_addr(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: callmeta\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    // The response, then nothing more until the server closes the idle connection.
    let said = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection is closed");
    let idle_for = answered.elapsed();
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    eprintln!(
        "keep-alive: idle connection closed after {:.2} s",
        idle_for.as_secs_f64()
    );
    assert!(idle_for >= Duration::from_millis(900), "{idle_for:?}");
}

#[tokio::test]
async fn connections_over_the_per_address_cap_get_503_and_slots_free_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.http_server.max_connections_per_address = 4;
    let app = TestApp::spawn_with(config).await;
    let addr = http_addr(&app);

    // Four idle connections take every slot of 127.0.0.1 ...
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    // ... so a fifth is answered 503 at once and closed.
    let mut fifth = TcpStream::connect(&addr).await.unwrap();
    let reply = read_until_closed(&mut fifth, Duration::from_secs(5))
        .await
        .expect("the connection over the cap is closed");
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("retry-after: 1"), "{reply}");

    // Another address is not affected by 127.0.0.1's connections.
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let r = other.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Closing the idle connections frees their slots.
    drop(idle);
    eventually("the slots freed", Duration::from_secs(5), || async {
        match reqwest::Client::new().get(app.url("/healthz")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_request_body_below_the_rate_floor_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.http_server.body_timeout_secs = 1;
    config.http_server.min_body_bytes_per_sec = 1000;
    let app = TestApp::spawn_with(config).await;
    let acme = app.create_tenant("acme");
    let stream = TcpStream::connect(http_addr(&app)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /api/v1/calls HTTP/1.1\r\nHost: callmeta\r\nAuthorization: Token {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"metadata\": {{",
        acme.token
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // 10 bytes every 200 ms: 50 bytes per second, far below the floor.
    let trickle = async {
        while started.elapsed() < Duration::from_secs(20) {
            // The trickle is what is tested, against the server's own timer.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(b"\"k\": \"v\", ").await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let answer = async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    };
    let reply = tokio::select! {
        reply = answer => reply,
        () = trickle => String::new(),
        () = tokio::time::sleep(Duration::from_secs(20)) => panic!("the slow body was never cut"),
    };
    let cut_after = started.elapsed();
    eprintln!("slow body: cut after {:.2} s", cut_after.as_secs_f64());
    assert!(
        cut_after < Duration::from_secs(5),
        "the slow body held {cut_after:?}"
    );
    assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 4"), "{reply}");
}

#[tokio::test]
async fn an_idle_ftp_control_connection_is_closed_and_the_ftp_cap_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.transfer.idle_secs = 1;
    config.transfer.max_connections_per_address = 2;
    let app = TestApp::spawn_with(config).await;

    let started = Instant::now();
    let mut first = TcpStream::connect(app.ftp).await.unwrap();
    let mut second = TcpStream::connect(app.ftp).await.unwrap();
    // A third connection from the same address is refused with 421.
    let mut third = TcpStream::connect(app.ftp).await.unwrap();
    let refused = read_until_closed(&mut third, Duration::from_secs(5))
        .await
        .expect("the connection over the cap is closed");
    assert!(refused.starts_with("421 "), "{refused}");

    // The first two say hello, then, left idle, are closed.
    for stream in [&mut first, &mut second] {
        let said = read_until_closed(stream, Duration::from_secs(10))
            .await
            .expect("an idle FTP connection is closed");
        assert!(said.starts_with("220 "), "{said}");
    }
    let idle_for = started.elapsed();
    eprintln!(
        "FTP: idle control connections closed after {:.2} s",
        idle_for.as_secs_f64()
    );
    assert!(idle_for >= Duration::from_secs(1), "{idle_for:?}");
}

#[tokio::test]
async fn an_idle_sftp_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.transfer.idle_secs = 1;
    let app = TestApp::spawn_with(config).await;
    let started = Instant::now();
    // A client that connects and never says which SSH version it speaks.
    let mut stream = TcpStream::connect(app.sftp).await.unwrap();
    let said = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .expect("an idle SSH connection is closed");
    assert!(said.starts_with("SSH-2.0-"), "{said}");
    let idle_for = started.elapsed();
    eprintln!(
        "SFTP: idle connection closed after {:.2} s",
        idle_for.as_secs_f64()
    );
    assert!(idle_for >= Duration::from_secs(1), "{idle_for:?}");
}
