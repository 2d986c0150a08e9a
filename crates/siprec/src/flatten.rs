//! Flattening SIP headers and recording metadata into a call's metadata:
//! stable snake_case keys, string values, deterministic (a `BTreeMap`).
//! `crates/siprec/FLATTENING.md` is the reference for every key and rule;
//! keep the two in step.

use std::collections::BTreeMap;
use std::str::FromStr;

use phonenumber::country;

use crate::metadata::{ExtensionElement, Metadata, Participant};
use crate::sip::{Header, NameAddr, uri_user};

/// The longest value kept, in characters (longer ones are cut).
pub const MAX_VALUE_CHARS: usize = 1024;
/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// The most keys one call gets.
pub const MAX_KEYS: usize = 512;
/// Participants and streams flattened (the rest are ignored).
pub const MAX_ENTITIES: usize = 32;

/// A default region that is not an ISO 3166 country code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown region {0:?}: expected a two-letter ISO 3166 country code such as \"FR\"")]
pub struct UnknownRegion(pub String);

/// How to flatten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlattenOptions {
    region: Option<country::Id>,
}

impl FlattenOptions {
    /// `default_region` reads national numbers (`0102030405` in `FR`) as
    /// E.164; without it only numbers written with `+` become E.164.
    pub fn new(default_region: Option<&str>) -> Result<FlattenOptions, UnknownRegion> {
        let region = match default_region.map(str::trim) {
            None | Some("") => None,
            Some(code) => {
                let upper = code.to_ascii_uppercase();
                match country::Id::from_str(&upper) {
                    Ok(id) if upper.len() == 2 => Some(id),
                    _ => return Err(UnknownRegion(code.to_string())),
                }
            }
        };
        Ok(FlattenOptions { region })
    }
}

/// The SIP headers copied under fixed keys (every `X-*` header is copied
/// too, as `x_<name>`).
const SELECTED_HEADERS: &[(&str, &str)] = &[
    ("From", "sip_from"),
    ("To", "sip_to"),
    ("P-Asserted-Identity", "sip_p_asserted_identity"),
    ("User-to-User", "sip_user_to_user"),
    ("Diversion", "sip_diversion"),
    ("Call-ID", "sip_call_id"),
    ("Cisco-Guid", "sip_cisco_guid"),
];

/// Vendor headers that carry the recorded call's id, in order of preference.
const CALL_ID_HEADERS: &[&str] = &[
    "Cisco-Guid",
    "X-Cisco-Guid",
    "X-UCID",
    "Av-Global-Session-ID",
    "X-Genesys-CallUUID",
];

/// Short names for well-known extension namespaces; others are derived from
/// the URI (see [`namespace_key`]).
const KNOWN_NAMESPACES: &[(&str, &str)] = &[
    ("http://acmepacket.com/siprec/extensiondata", "acme"),
    (
        "http://schema.broadsoft.com/broadworkscallrecording",
        "broadworks",
    ),
    ("urn:ietf:params:xml:ns:recording:1", "recording"),
    ("urn:ietf:params:xml:ns:recording", "recording"),
    ("urn:ietf:params:xml:ns:siprec", "recording"),
];

struct Out {
    map: BTreeMap<String, String>,
}

impl Out {
    /// Inserts unless the key is taken (first writer wins).
    fn put(&mut self, key: &str, value: &str) {
        let key = bound_key(key);
        let value = clean_value(value);
        if value.is_empty() || key.is_empty() || self.map.len() >= MAX_KEYS {
            return;
        }
        self.map.entry(key).or_insert(value);
    }

    /// Inserts under `key`, or `key_2`, `key_3`... when taken by another
    /// value (a repeated extension element).
    fn put_unique(&mut self, key: &str, value: &str) {
        let base = bound_key(key);
        let value = clean_value(value);
        if value.is_empty() || base.is_empty() {
            return;
        }
        for n in 1..100 {
            let key = if n == 1 {
                base.clone()
            } else {
                format!("{base}_{n}")
            };
            match self.map.get(&key) {
                Some(existing) if *existing == value => return,
                Some(_) => continue,
                None => {
                    if self.map.len() < MAX_KEYS {
                        self.map.insert(key, value);
                    }
                    return;
                }
            }
        }
    }
}

/// Keys never exceed [`MAX_KEY_LEN`]: an over-long one is cut at a `_`-free
/// byte boundary (keys are ASCII).
fn bound_key(key: &str) -> String {
    let mut k = key.to_string();
    k.truncate(MAX_KEY_LEN);
    k.trim_end_matches('_').to_string()
}

/// Trimmed, whitespace runs (line breaks included) collapsed to one space,
/// control characters dropped, at most [`MAX_VALUE_CHARS`] characters.
fn clean_value(value: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    for word in value.split_whitespace() {
        if count > 0 {
            out.push(' ');
            count += 1;
        }
        for c in word.chars().filter(|c| !c.is_control()) {
            if count >= MAX_VALUE_CHARS {
                return out.trim_end().to_string();
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

/// snake_case: camelCase split (`callingPartyNumber` → `calling_party_number`,
/// `sipSessionID` → `sip_session_id`), every other non-alphanumeric
/// character a `_`, runs collapsed, lower case ASCII only.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && i > 0 {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
                if prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_lower)
                {
                    out.push('_');
                }
            }
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if c == '_' && collapsed.ends_with('_') {
            continue;
        }
        collapsed.push(c);
    }
    collapsed.trim_matches('_').to_string()
}

/// The short, stable name of an extension namespace (never its prefix):
/// a known vendor's name, else `urn:ietf:params:xml:ns:NAME` → `name`, other
/// URNs → their components after `urn:`, URLs → the host's main label and
/// the path (`http://example.com/my` → `example_my`), no namespace → `none`.
pub fn namespace_key(uri: &str) -> String {
    let lower = uri.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return "none".to_string();
    }
    if let Some((_, short)) = KNOWN_NAMESPACES.iter().find(|(ns, _)| *ns == lower) {
        return short.to_string();
    }
    let derived = if let Some(rest) = lower.strip_prefix("urn:ietf:params:xml:ns:") {
        snake_case(rest)
    } else if let Some(rest) = lower.strip_prefix("urn:") {
        snake_case(rest)
    } else if let Some((_, rest)) = lower.split_once("://") {
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = host.split(':').next().unwrap_or(host);
        let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).collect();
        // Drop the TLD and generic first labels; keep the organisation.
        let main = if labels.len() >= 2 {
            labels[..labels.len() - 1].to_vec()
        } else {
            labels
        };
        let main: Vec<&str> = main
            .into_iter()
            .filter(|l| !matches!(*l, "www" | "schema" | "schemas" | "xml" | "ns"))
            .collect();
        snake_case(&format!("{}_{}", main.join("_"), path))
    } else {
        snake_case(&lower)
    };
    let mut key = if derived.is_empty() {
        "ns".to_string()
    } else {
        derived
    };
    key.truncate(40);
    key.trim_end_matches('_').to_string()
}

/// Flattens the headers of the request that opened the recording session and
/// the (merged) metadata into a call's metadata keys.
pub fn flatten(
    headers: &[Header],
    metadata: Option<&Metadata>,
    options: &FlattenOptions,
) -> BTreeMap<String, String> {
    let mut out = Out { map: BTreeMap::new() };
    product_keys(&mut out, headers, metadata, options);
    if let Some(md) = metadata {
        metadata_keys(&mut out, md);
    }
    header_keys(&mut out, headers);
    out.map
}

fn header_values<'a>(headers: &'a [Header], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
        .collect()
}

fn header_keys(out: &mut Out, headers: &[Header]) {
    let mut grouped: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for h in headers {
        let lower = h.name.to_ascii_lowercase();
        let key = if let Some(rest) = lower.strip_prefix("x-") {
            format!("x_{}", snake_case(rest))
        } else if let Some((_, key)) = SELECTED_HEADERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&h.name))
        {
            key.to_string()
        } else {
            continue;
        };
        grouped.entry(key).or_default().push(&h.value);
    }
    for (key, values) in grouped {
        out.put(&key, &values.join(", "));
    }
}

fn metadata_keys(out: &mut Out, md: &Metadata) {
    out.put("siprec_dialect", md.dialect.as_str());
    if let Some(id) = &md.recording_id {
        out.put("recording_id", id);
    }
    for (k, v) in &md.extra {
        let key = snake_case(k);
        let key = if key.starts_with("recording_") {
            key
        } else {
            format!("recording_{key}")
        };
        out.put(&key, v);
    }
    if let Some(g) = md.groups.first() {
        out.put("group_id", &g.id);
        for (k, v) in &g.extra {
            out.put(&format!("group_{}", snake_case(k)), v);
        }
    }
    if let Some(s) = md.sessions.first() {
        out.put("session_id", &s.id);
        if let Some(id) = s.sip_session_ids.first() {
            out.put("session_sip_session_id", id);
        }
        for (k, v) in &s.extra {
            out.put(&format!("session_{}", snake_case(k)), v);
        }
    }
    // Extension data of the recording, its groups and its sessions share the
    // `ext_` space; repeated keys get `_2`, `_3`...
    for ext in &md.extensions {
        flatten_extension(out, "", ext);
    }
    for g in &md.groups {
        for ext in &g.extensions {
            flatten_extension(out, "", ext);
        }
    }
    for s in &md.sessions {
        for ext in &s.extensions {
            flatten_extension(out, "", ext);
        }
    }
    participant_keys(out, md);
    stream_keys(out, md);
}

/// `participant_N_...` for the first [`MAX_ENTITIES`] participants.
fn participant_keys(out: &mut Out, md: &Metadata) {
    for (i, p) in md.participants.iter().take(MAX_ENTITIES).enumerate() {
        let prefix = format!("participant_{}_", i + 1);
        out.put(&format!("{prefix}id"), &p.id);
        if let Some(aor) = &p.aor {
            out.put(&format!("{prefix}aor"), aor);
        }
        if let Some(name) = &p.name {
            out.put(&format!("{prefix}name"), name);
        }
        if let Some(number) = participant_number(p) {
            out.put(&format!("{prefix}number"), &number);
        }
        if let Some(assoc) = md.stream_assoc(&p.id) {
            out.put(&format!("{prefix}send"), &stream_names(md, &assoc.send));
            out.put(&format!("{prefix}recv"), &stream_names(md, &assoc.recv));
        }
        for (k, v) in &p.extra {
            out.put(&format!("{prefix}{}", snake_case(k)), v);
        }
        for ext in &p.extensions {
            flatten_extension(out, &prefix, ext);
        }
    }
}

/// `stream_N_...` for the first [`MAX_ENTITIES`] streams.
fn stream_keys(out: &mut Out, md: &Metadata) {
    for (i, s) in md.streams.iter().take(MAX_ENTITIES).enumerate() {
        let prefix = format!("stream_{}_", i + 1);
        out.put(&format!("{prefix}id"), &s.id);
        if let Some(label) = &s.label {
            out.put(&format!("{prefix}label"), label);
        }
        for (k, v) in &s.extra {
            out.put(&format!("{prefix}{}", snake_case(k)), v);
        }
        for ext in &s.extensions {
            flatten_extension(out, &prefix, ext);
        }
    }
}

/// Stream references shown by label when the stream is known.
fn stream_names(md: &Metadata, ids: &[String]) -> String {
    ids.iter()
        .map(|id| {
            md.stream(id)
                .and_then(|s| s.label.clone())
                .unwrap_or_else(|| id.clone())
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn flatten_extension(out: &mut Out, prefix: &str, ext: &ExtensionElement) {
    let base = format!("{prefix}ext_{}", namespace_key(&ext.namespace));
    walk_extension(out, &base, ext, 0);
}

fn walk_extension(out: &mut Out, parent: &str, el: &ExtensionElement, depth: usize) {
    let key = format!("{parent}_{}", snake_case(&el.name));
    if let Some(t) = &el.text {
        out.put_unique(&key, t);
    }
    for (name, value) in &el.attributes {
        out.put_unique(&format!("{key}_{}", snake_case(name)), value);
    }
    if depth < 16 {
        for child in &el.children {
            walk_extension(out, &key, child, depth + 1);
        }
    }
}

// ---------------------------------------------------------------------------
// Product keys

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Inbound,
    Outbound,
}

/// The number in an AOR or a name: `+` and digits, visual separators
/// removed, 3 to 20 digits. `sip:+1 (210) 229-8592@host` → `+12102298592`.
pub fn number_in(text: &str) -> Option<String> {
    let text = text.trim();
    let addr = NameAddr::parse(text);
    let uri = addr.as_ref().map_or(text, |a| a.uri.as_str());
    let user = match uri_user(uri) {
        Some(u) => u,
        // A bare number (a name, `tel` without scheme).
        None => uri.split([';', '@']).next().unwrap_or(uri),
    };
    let user = user.trim();
    let mut out = String::new();
    for (i, c) in user.chars().enumerate() {
        match c {
            '+' if i == 0 => out.push('+'),
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let digits = out.trim_start_matches('+').len();
    (3..=20).contains(&digits).then_some(out)
}

fn participant_number(p: &Participant) -> Option<String> {
    p.aor
        .as_deref()
        .and_then(number_in)
        .or_else(|| p.name.as_deref().and_then(number_in))
}

/// E.164 when the number is valid as such (written with `+`, or national in
/// the default region); the cleaned digits otherwise.
fn normalise_number(number: &str, options: &FlattenOptions) -> String {
    let region = if number.starts_with('+') {
        None
    } else {
        options.region
    };
    if (number.starts_with('+') || region.is_some())
        && let Ok(parsed) = phonenumber::parse(region, number)
        && phonenumber::is_valid(&parsed)
    {
        return phonenumber::format(&parsed)
            .mode(phonenumber::Mode::E164)
            .to_string();
    }
    number.to_string()
}

/// A public number rather than an extension: international or 7+ digits.
fn looks_public(number: &str) -> bool {
    number.starts_with('+') || number.len() >= 7
}

fn all_extensions(md: &Metadata) -> Vec<&ExtensionElement> {
    let mut all: Vec<&ExtensionElement> = md.extensions.iter().collect();
    all.extend(md.groups.iter().flat_map(|g| &g.extensions));
    all.extend(md.sessions.iter().flat_map(|s| &s.extensions));
    all.extend(md.participants.iter().flat_map(|p| &p.extensions));
    all.extend(md.streams.iter().flat_map(|s| &s.extensions));
    all
}

/// Depth-first search of extension trees for the first element matching.
fn find_ext<'a>(
    roots: &[&'a ExtensionElement],
    pred: &dyn Fn(&ExtensionElement) -> bool,
) -> Option<&'a ExtensionElement> {
    let mut stack: Vec<&ExtensionElement> = roots.iter().rev().copied().collect();
    while let Some(el) = stack.pop() {
        if pred(el) {
            return Some(el);
        }
        stack.extend(el.children.iter().rev());
    }
    None
}

fn lname(el: &ExtensionElement) -> String {
    el.name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn ext_text<'a>(roots: &[&'a ExtensionElement], name: &str) -> Option<&'a str> {
    find_ext(roots, &|el| lname(el) == name && el.text.is_some()).and_then(|el| el.text.as_deref())
}

/// Whether a participant is flagged as the calling (`Some(true)`) or called
/// (`Some(false)`) party: Oracle/Acme `callingParty`, Asterisk `role`.
fn calling_flag(p: &Participant) -> Option<bool> {
    let roots: Vec<&ExtensionElement> = p.extensions.iter().collect();
    if let Some(flag) = ext_text(&roots, "callingparty") {
        return Some(flag.eq_ignore_ascii_case("true"));
    }
    let role = p
        .extra
        .iter()
        .find(|(k, _)| k == "role")
        .map(|(_, v)| v.to_ascii_lowercase())?;
    match role.as_str() {
        "calling" | "caller" | "originator" | "from" => Some(true),
        "called" | "callee" | "terminator" | "to" => Some(false),
        _ => None,
    }
}

struct Party {
    number: Option<String>,
    name: Option<String>,
}

fn product_keys(out: &mut Out, headers: &[Header], md: Option<&Metadata>, options: &FlattenOptions) {
    let empty = Vec::new();
    let exts = md.map_or(empty, all_extensions);
    let participants: &[Participant] = md.map_or(&[], |m| &m.participants);
    if let Some(secs) = call_datetime(headers, md) {
        out.put("datetime", &format_utc(secs));
    }
    let (caller_number, callee_number) = party_keys(out, participants, &exts, options);
    let direction = call_direction(headers, &exts);
    if let Some(d) = direction {
        out.put(
            "call_direction",
            if d == Direction::Inbound {
                "inbound"
            } else {
                "outbound"
            },
        );
    }
    let phonenumber = external_number(direction, caller_number.as_ref(), callee_number.as_ref());
    if let Some(n) = phonenumber {
        out.put("phonenumber", n);
    }
    original_call_id_keys(out, headers, md, &exts);
}

/// When the call started: the first time in the metadata (associations,
/// sessions, groups, participants, streams), else the request's `Date`.
fn call_datetime(headers: &[Header], md: Option<&Metadata>) -> Option<i64> {
    let mut times: Vec<&str> = Vec::new();
    if let Some(m) = md {
        times.extend(
            m.session_recording_assocs
                .iter()
                .filter_map(|a| a.associate_time.as_deref()),
        );
        times.extend(m.sessions.iter().filter_map(|s| s.start_time.as_deref()));
        times.extend(m.sessions.iter().filter_map(|s| s.associate_time.as_deref()));
        times.extend(m.groups.iter().filter_map(|g| g.associate_time.as_deref()));
        times.extend(
            m.participant_session_assocs
                .iter()
                .filter_map(|a| a.associate_time.as_deref()),
        );
        times.extend(m.participants.iter().filter_map(|p| p.associate_time.as_deref()));
        times.extend(m.streams.iter().filter_map(|s| s.associate_time.as_deref()));
    }
    times.iter().find_map(|t| parse_iso8601(t)).or_else(|| {
        header_values(headers, "Date")
            .into_iter()
            .find_map(parse_http_date)
    })
}

/// The caller and the callee: `caller_number`, `callee_number` (normalised,
/// also returned), `caller_name`, `callee_name`.
fn party_keys(
    out: &mut Out,
    participants: &[Participant],
    exts: &[&ExtensionElement],
    options: &FlattenOptions,
) -> (Option<String>, Option<String>) {
    let flags: Vec<Option<bool>> = participants.iter().map(calling_flag).collect();
    let caller_idx = flags
        .iter()
        .position(|f| *f == Some(true))
        .or_else(|| (0..participants.len()).find(|i| flags[*i] != Some(false)));
    let callee_idx = flags
        .iter()
        .position(|f| *f == Some(false))
        .or_else(|| (0..participants.len()).find(|i| Some(*i) != caller_idx && flags[*i] != Some(true)));
    let party = |idx: Option<usize>| Party {
        number: idx.and_then(|i| participant_number(&participants[i])),
        name: idx.and_then(|i| participants[i].name.clone()),
    };
    let mut caller = party(caller_idx);
    let mut callee = party(callee_idx);
    // Explicit numbers in vendor extension data beat the heuristics above:
    // BroadWorks callingPartyNumber/calledPartyNumber, Ribbon fromhdr/tohdr.
    if let Some(n) = ["callingpartynumber", "fromhdr"]
        .iter()
        .find_map(|name| ext_text(exts, name).and_then(number_in))
    {
        caller.number = Some(n);
    }
    if let Some(n) = ["calledpartynumber", "tohdr"]
        .iter()
        .find_map(|name| ext_text(exts, name).and_then(number_in))
    {
        callee.number = Some(n);
    }
    let caller_number = caller.number.as_deref().map(|n| normalise_number(n, options));
    let callee_number = callee.number.as_deref().map(|n| normalise_number(n, options));
    if let Some(n) = &caller_number {
        out.put("caller_number", n);
    }
    if let Some(n) = &callee_number {
        out.put("callee_number", n);
    }
    if let Some(n) = &caller.name {
        out.put("caller_name", n);
    }
    if let Some(n) = &callee.name {
        out.put("callee_name", n);
    }
    (caller_number, callee_number)
}

/// Inbound or outbound: BroadWorks `termCall`/`origCall`, else an
/// `X-Call-Direction` or `X-Direction` header.
fn call_direction(headers: &[Header], exts: &[&ExtensionElement]) -> Option<Direction> {
    if find_ext(exts, &|el| lname(el) == "termcall").is_some() {
        Some(Direction::Inbound)
    } else if find_ext(exts, &|el| lname(el) == "origcall").is_some() {
        Some(Direction::Outbound)
    } else {
        ["X-Call-Direction", "X-Direction"].iter().find_map(|h| {
            header_values(headers, h)
                .first()
                .and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
                    "incoming" | "inbound" | "in" => Some(Direction::Inbound),
                    "outgoing" | "outbound" | "out" => Some(Direction::Outbound),
                    _ => None,
                })
        })
    }
}

/// The external party's number (`phonenumber`): the caller's on an inbound
/// call, the callee's on an outbound one, if public; else the first public
/// number; else the first number.
fn external_number<'a>(
    direction: Option<Direction>,
    caller_number: Option<&'a String>,
    callee_number: Option<&'a String>,
) -> Option<&'a String> {
    let external = match direction {
        Some(Direction::Inbound) => caller_number,
        Some(Direction::Outbound) => callee_number,
        None => None,
    };
    external
        .filter(|n| looks_public(n))
        .or_else(|| {
            [caller_number, callee_number]
                .into_iter()
                .flatten()
                .find(|n| looks_public(n))
        })
        .or(caller_number)
        .or(callee_number)
}

/// `ucid` (Avaya) and `original_call_id`: the Call-ID of the recorded call,
/// from Acme's header extension, a `callId` extension, the session's SIP
/// session id, a vendor header, or the UCID, in that order.
fn original_call_id_keys(
    out: &mut Out,
    headers: &[Header],
    md: Option<&Metadata>,
    exts: &[&ExtensionElement],
) {
    let acme_call_id = find_ext(exts, &|el| {
        lname(el) == "header"
            && el
                .attributes
                .iter()
                .any(|(k, v)| k == "label" && v.eq_ignore_ascii_case("call-id"))
    })
    .and_then(|el| {
        el.children
            .iter()
            .find(|c| lname(c) == "value")
            .and_then(|c| c.text.as_deref())
    });
    let session_id = md
        .and_then(|m| m.sessions.iter().find_map(|s| s.sip_session_ids.first()))
        .map(|id| id.split(';').next().unwrap_or(id).trim())
        .filter(|id| !id.is_empty());
    let vendor_header = CALL_ID_HEADERS
        .iter()
        .find_map(|h| header_values(headers, h).first().copied());
    let ucid = ext_text(exts, "ucid").and_then(avaya_ucid).or_else(|| {
        header_values(headers, "User-to-User")
            .into_iter()
            .find_map(avaya_ucid)
    });
    if let Some(ucid) = &ucid {
        out.put("ucid", ucid);
    }
    let original = acme_call_id
        .or_else(|| ext_text(exts, "callid"))
        .or(session_id)
        .or(vendor_header)
        .or(ucid.as_deref());
    if let Some(id) = original {
        out.put("original_call_id", id);
    }
}

/// Avaya's Universal Call ID from its hex user-to-user form
/// (`00FA08` + 8 bytes: node, sequence, timestamp), as the 20-digit decimal
/// id Avaya reports shows it: `00FA080001000758A20EFA` →
/// `00001000071487015674`.
pub fn avaya_ucid(uui: &str) -> Option<String> {
    let hex = uui.split(';').next()?.trim();
    let rest = hex
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("00FA08"))
        .and(hex.get(6..22))?;
    let field = |range: std::ops::Range<usize>| u64::from_str_radix(rest.get(range)?, 16).ok();
    Some(format!(
        "{:05}{:05}{:010}",
        field(0..4)?,
        field(4..8)?,
        field(8..16)?
    ))
}

// ---------------------------------------------------------------------------
// Dates, without a date crate: days from the civil calendar (H. Hinnant).

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn num(s: &str) -> Option<i64> {
    (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn valid_date(y: i64, m: i64, d: i64, h: i64, mi: i64, s: i64) -> bool {
    (1..=9999).contains(&y)
        && (1..=12).contains(&m)
        && (1..=31).contains(&d)
        && (0..=23).contains(&h)
        && (0..=59).contains(&mi)
        && (0..=60).contains(&s)
}

/// Seconds since the epoch of an ISO 8601 date-time
/// (`2022-07-21T12:36:06-06:00`, `2017-06-23T12:16:06.040Z`,
/// `2019-11-12T15:57:37`). Without an offset the time is read as UTC;
/// fractions of a second are dropped.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut dp = date.split('-');
    let (y, m, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if dp.next().is_some() {
        return None;
    }
    let (clock, offset) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => (&time[..i], &time[i..]),
        None => (time, ""),
    };
    let clock = clock.split(['.', ',']).next()?;
    let mut tp = clock.split(':');
    let (h, mi) = (num(tp.next()?)?, num(tp.next()?)?);
    let sec = match tp.next() {
        Some(x) => num(x)?,
        None => 0,
    };
    if tp.next().is_some() || !valid_date(y, m, d, h, mi, sec) {
        return None;
    }
    let offset_secs = match offset {
        "" | "Z" | "z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let digits: String = o[1..].chars().filter(|c| *c != ':').collect();
            if (digits.len() != 4 && digits.len() != 2) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let oh = num(&digits[..2])?;
            let om = if digits.len() == 4 { num(&digits[2..])? } else { 0 };
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_secs)
}

/// Seconds since the epoch of a SIP Date header (RFC 1123,
/// `Thu, 21 Jul 2022 18:36:06 GMT`).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.split_once(',').map_or(s, |(_, rest)| rest);
    let mut it = s.split_whitespace();
    let d = num(it.next()?)?;
    let month = it.next()?.to_ascii_lowercase();
    let m = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|n| month.starts_with(n))? as i64
        + 1;
    let y = num(it.next()?)?;
    let mut tp = it.next()?.split(':');
    let (h, mi, sec) = (num(tp.next()?)?, num(tp.next()?)?, num(tp.next()?)?);
    match it.next().map(str::to_ascii_uppercase).as_deref() {
        None | Some("GMT") | Some("UTC") | Some("+0000") | Some("Z") => {}
        _ => return None,
    }
    if !valid_date(y, m, d, h, mi, sec) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(
            parse_iso8601("2022-07-21T12:36:06-06:00")
                .map(format_utc)
                .as_deref(),
            Some("2022-07-21T18:36:06Z")
        );
        assert_eq!(
            parse_iso8601("2017-06-23T12:16:06.040Z")
                .map(format_utc)
                .as_deref(),
            Some("2017-06-23T12:16:06Z")
        );
        assert_eq!(
            parse_iso8601("2019-11-12T15:57:37").map(format_utc).as_deref(),
            Some("2019-11-12T15:57:37Z")
        );
        assert_eq!(
            parse_iso8601("2024-05-13T03:55:43+00:00")
                .map(format_utc)
                .as_deref(),
            Some("2024-05-13T03:55:43Z")
        );
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso8601("2024-02-29T23:59:59+0130")
                .map(format_utc)
                .as_deref(),
            Some("2024-02-29T22:29:59Z")
        );
        assert_eq!(parse_iso8601("not a date"), None);
        assert_eq!(parse_iso8601("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_iso8601("99999-01-01T00:00:00Z"), None);
        assert_eq!(
            parse_http_date("Thu, 21 Jul 2022 18:36:06 GMT")
                .map(format_utc)
                .as_deref(),
            Some("2022-07-21T18:36:06Z")
        );
    }

    #[test]
    fn names() {
        assert_eq!(snake_case("callingPartyNumber"), "calling_party_number");
        assert_eq!(snake_case("sipSessionID"), "sip_session_id");
        assert_eq!(
            snake_case("broadWorksRecordingMetadata"),
            "broad_works_recording_metadata"
        );
        assert_eq!(snake_case("request-uri"), "request_uri");
        assert_eq!(
            snake_case("Cisco-Recording-Participant"),
            "cisco_recording_participant"
        );
        assert_eq!(
            namespace_key("http://acmepacket.com/siprec/extensiondata"),
            "acme"
        );
        assert_eq!(namespace_key("http://example.com/my"), "example_my");
        assert_eq!(namespace_key("urn:ietf:params:xml:ns:callData"), "calldata");
        assert_eq!(namespace_key("urn:ietf:params:xml:ns:callcenter"), "callcenter");
        assert_eq!(namespace_key(""), "none");
    }

    #[test]
    fn numbers() {
        assert_eq!(
            number_in("sip:+12102298592@10.0.0.1;user=phone").as_deref(),
            Some("+12102298592")
        );
        assert_eq!(
            number_in("4058327108@10.105.190.136:5060").as_deref(),
            Some("4058327108")
        );
        assert_eq!(
            number_in("\"Ext\" <sip:2249888500@172.16.198.55>;tag=x").as_deref(),
            Some("2249888500")
        );
        assert_eq!(
            number_in("tel:+33-1-02-03-04-05").as_deref(),
            Some("+33102030405")
        );
        assert_eq!(number_in("sip:ASBCE@asbce.com"), None);
        assert_eq!(number_in("Extension-016190619@speechpath.ie"), None);
        let fr = FlattenOptions::new(Some("fr")).unwrap();
        assert_eq!(normalise_number("0102030405", &fr), "+33102030405");
        assert_eq!(normalise_number("7301", &fr), "7301");
        assert_eq!(
            normalise_number("0102030405", &FlattenOptions::default()),
            "0102030405"
        );
        assert!(FlattenOptions::new(Some("XX")).is_err());
        let nl = FlattenOptions::new(Some("NL")).unwrap();
        assert_eq!(normalise_number("31624895902", &nl), "+31624895902");
        assert_eq!(
            avaya_ucid("00FA080001000758A20EFA;encoding=hex").as_deref(),
            Some("00001000071487015674")
        );
        assert_eq!(
            avaya_ucid("00FA081003B9CF5E7DF7E5").as_deref(),
            Some("04099475671585313765")
        );
        assert_eq!(avaya_ucid("00FA0800"), None);
        assert_eq!(avaya_ucid("hello"), None);
    }
}
