//! Turning a fixture file into the SIP message a recording client would
//! send, the way sipp renders its scenarios.

use std::path::PathBuf;

pub(crate) fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/siprec")
}

/// Every fixture: (name without `.txt`, text without its source comment).
pub(crate) fn fixtures() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures directory") {
        let path = entry.expect("fixture entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("fixture name")
            .to_string();
        let text = std::fs::read_to_string(&path).expect("fixture text");
        out.push((name, strip_comment(&text)));
    }
    out.sort();
    out
}

/// Each fixture opens with `# ...` lines naming its public source.
pub(crate) fn strip_comment(text: &str) -> String {
    text.split_inclusive('\n')
        .skip_while(|l| l.starts_with('#'))
        .collect()
}

/// Values for sipp's `[placeholder]` tokens, as sipp would render them for
/// one call.
fn placeholder(name: &str) -> Option<String> {
    let (base, plus) = match name.split_once('+') {
        Some((b, n)) => (b, n.parse::<u32>().ok()?),
        None => (name, 0),
    };
    let value = match base {
        "local_ip" => "192.0.2.10".to_string(),
        "remote_ip" => "192.0.2.20".to_string(),
        "local_port" => "5060".to_string(),
        "remote_port" => "5080".to_string(),
        "transport" => "UDP".to_string(),
        "call_id" => "1-4242@192.0.2.10".to_string(),
        "branch" => "z9hG4bK-4242-1-0".to_string(),
        "pid" => "4242".to_string(),
        "call_number" => "1".to_string(),
        "peer_tag_param" => ";tag=srs-tag-1".to_string(),
        "media_port" | "auto_media_port" => (6000 + plus).to_string(),
        _ => return None,
    };
    Some(value)
}

/// Replaces sipp placeholders; `[len]`/`[length]` are left for
/// [`set_content_length`].
fn render_placeholders(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if placeholder(&after[..close]).is_some() => {
                out.push_str(&placeholder(&after[..close]).unwrap_or_default());
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Splits at the first blank line (LF message).
fn head_and_body(msg: &str) -> (&str, &str) {
    match msg.find("\n\n") {
        Some(i) => (&msg[..i + 1], &msg[i + 2..]),
        None => (msg, ""),
    }
}

/// Fills `[len]`, and with LF line ends also rewrites a numeric
/// Content-Length: the fixtures are stored with LF, but a Content-Length
/// they carry counts the CRLF line ends they were sent with.
fn set_content_length(msg: &str, crlf: bool) -> String {
    let (head, body) = head_and_body(msg);
    let len = if crlf {
        body.len() + body.matches('\n').count()
    } else {
        body.len()
    }
    .to_string();
    let head: String = head
        .lines()
        .map(|l| {
            let lower = l.to_ascii_lowercase();
            if lower.starts_with("content-length") && (l.contains("[len") || !crlf) {
                format!("Content-Length: {len}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let msg = format!("{head}\n{body}");
    if crlf { msg.replace('\n', "\r\n") } else { msg }
}

const SYNTHETIC_HEAD: &str = "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-fixture\n\
From: <sip:src@192.0.2.10>;tag=src-1\n\
To: <sip:srs@192.0.2.20>\n\
Call-ID: fixture-call@192.0.2.10\n\
Contact: <sip:src@192.0.2.10:5060>\n";

/// The fixture as a complete SIP message, with CRLF line ends (as sent) or
/// bare LF.
///
/// Fixtures come in three shapes: a whole request (sipp templates included),
/// a multipart body alone (starting with its boundary line), or one MIME
/// part alone (headers then content). Bodies are wrapped in the INVITE (or,
/// for a lone metadata part, the UPDATE) that carried them. RFC 7865's own
/// example elides the boundary lines; they are put back.
pub(crate) fn as_message(fixture: &str, crlf: bool) -> String {
    let text = render_placeholders(fixture);
    let trimmed = text.trim_start_matches(['\r', '\n']);
    let first = trimmed.lines().next().unwrap_or_default();
    let msg = if first.ends_with("SIP/2.0") {
        trimmed.to_string()
    } else if let Some(boundary) = first.strip_prefix("--") {
        format!(
            "INVITE sip:recorder@192.0.2.20 SIP/2.0\n{SYNTHETIC_HEAD}CSeq: 1 INVITE\n\
             Require: siprec\nContent-Type: multipart/mixed;boundary=\"{}\"\nContent-Length: [len]\n\n{trimmed}",
            boundary.trim()
        )
    } else {
        format!(
            "UPDATE sip:recorder@192.0.2.20 SIP/2.0\n{SYNTHETIC_HEAD}CSeq: 2 UPDATE\nContent-Length: [len]\n{trimmed}"
        )
    };
    set_content_length(&restore_boundaries(&msg), crlf)
}

/// Puts back boundary lines that a quoted example left out: before each part
/// (a `Content-Type:` line opening the body or following a blank line) and a
/// closing one at the end. Messages whose boundary is present are untouched.
fn restore_boundaries(msg: &str) -> String {
    let (head, body) = head_and_body(msg);
    let Some(boundary) = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type: multipart/"))
        .and_then(|l| l.split("boundary=").nth(1))
        .map(|b| b.trim().trim_matches('"').to_string())
    else {
        return msg.to_string();
    };
    if body.contains(&format!("--{boundary}")) {
        return msg.to_string();
    }
    let mut out = String::new();
    let mut previous_blank = true;
    for line in body.lines() {
        if previous_blank && line.to_ascii_lowercase().starts_with("content-type:") {
            out.push_str(&format!("--{boundary}\n"));
        }
        out.push_str(line);
        out.push('\n');
        previous_blank = line.trim().is_empty();
    }
    out.push_str(&format!("--{boundary}--\n"));
    format!("{head}\n{out}")
}
