//! Recording metadata (RFC 7865) in the dialects real recording clients send.
//!
//! Elements are recognised by namespace URI and local name, never by prefix,
//! and local names are compared without case, `-` or `_` (`dataMode`,
//! `datamode`, `associate-time`). The recording namespaces accepted are:
//!
//! - `urn:ietf:params:xml:ns:recording:1` (RFC 7865),
//! - `urn:ietf:params:xml:ns:recording` (the pre-RFC drafts: Oracle/Acme
//!   Packet, Ribbon/Sonus; `id`/`session` attributes and `send` inside
//!   `participant`),
//! - `urn:ietf:params:xml:ns:siprec` with a `recording_metadata` root
//!   (BroadWorks/Webex: `<aor>` elements, `<send><id>` lists,
//!   `extensiondata parent=`),
//! - no namespace at all.
//!
//! Elements of any other namespace are extension data, kept as trees on the
//! entity they appear in ([`ExtensionElement`]). Recording-namespace elements
//! we do not model (`role`, `channel`, `mode`...) are kept as `extra`
//! name/value pairs.
//!
//! Cisco network-based recording sends no XML; [`from_cisco_headers`] builds
//! the same model from its `X-Cisco-Recording-Participant` headers.
//!
//! The parser never expands entities beyond XML's predefined ones: a
//! document with a DTD is refused, so billion-laughs documents are an error.

use crate::sip::{Message, NameAddr};

/// The largest metadata document we parse.
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;
/// The most XML nodes in one document.
pub const MAX_NODES: u32 = 100_000;
/// The deepest element nesting accepted.
pub const MAX_DEPTH: usize = 32;

/// Why a metadata document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata of {0} bytes is too large")]
    TooLarge(usize),
    #[error("metadata documents may not contain a DTD")]
    DtdNotAllowed,
    #[error("metadata nests elements deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("malformed metadata XML: {0}")]
    Xml(String),
    #[error("root element {0:?} is not recording metadata")]
    NotRecordingMetadata(String),
}

/// Which flavour of metadata a document was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `urn:ietf:params:xml:ns:recording:1`.
    Rfc7865,
    /// `urn:ietf:params:xml:ns:recording` (drafts).
    Draft,
    /// BroadWorks `recording_metadata` (`urn:ietf:params:xml:ns:siprec`).
    BroadWorks,
    /// A recording root element without a namespace.
    Unqualified,
    /// Built from Cisco `X-Cisco-Recording-Participant` headers.
    CiscoHeaders,
}

impl Dialect {
    /// A stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Rfc7865 => "rfc7865",
            Dialect::Draft => "draft",
            Dialect::BroadWorks => "broadworks",
            Dialect::Unqualified => "unqualified",
            Dialect::CiscoHeaders => "cisco_headers",
        }
    }
}

/// `complete` replaces what we knew; `partial` updates it (RFC 7865 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataMode {
    #[default]
    Complete,
    Partial,
}

/// An element of a foreign namespace, with its attributes, text and
/// children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionElement {
    /// The namespace URI (empty when none).
    pub namespace: String,
    /// The local name, as written.
    pub name: String,
    /// Attributes by local name (namespace declarations excluded).
    pub attributes: Vec<(String, String)>,
    /// The element's own text, trimmed, when not empty.
    pub text: Option<String>,
    pub children: Vec<ExtensionElement>,
}

/// A communication session group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    pub id: String,
    pub associate_time: Option<String>,
    pub extensions: Vec<ExtensionElement>,
    pub extra: Vec<(String, String)>,
}

/// A recorded communication session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    pub id: String,
    pub group_ref: Option<String>,
    /// `sipSessionID` values (RFC 7989 Session-ID of the recorded call).
    pub sip_session_ids: Vec<String>,
    pub start_time: Option<String>,
    pub stop_time: Option<String>,
    pub associate_time: Option<String>,
    pub extensions: Vec<ExtensionElement>,
    pub extra: Vec<(String, String)>,
}

/// A participant of the recorded session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Participant {
    pub id: String,
    /// The nameID `aor` (or BroadWorks `<aor>`), as sent (with or without
    /// `sip:`).
    pub aor: Option<String>,
    /// The display name, when not blank.
    pub name: Option<String>,
    /// The session it belongs to, when the document says so inline.
    pub session: Option<String>,
    pub associate_time: Option<String>,
    pub extensions: Vec<ExtensionElement>,
    /// Unmodelled recording-namespace elements (`role`, `channel`...) and,
    /// for Cisco, `media_index`.
    pub extra: Vec<(String, String)>,
}

/// A media stream, tied to an SDP m-line by its label.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stream {
    pub id: String,
    pub session: Option<String>,
    pub label: Option<String>,
    pub associate_time: Option<String>,
    pub extensions: Vec<ExtensionElement>,
    pub extra: Vec<(String, String)>,
}

/// `sessionrecordingassoc`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionRecordingAssoc {
    pub session_id: String,
    pub associate_time: Option<String>,
    pub disassociate_time: Option<String>,
}

/// `participantsessionassoc`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParticipantSessionAssoc {
    pub participant_id: String,
    pub session_id: String,
    pub associate_time: Option<String>,
    pub disassociate_time: Option<String>,
}

/// `participantstreamassoc`: the streams a participant sends and receives.
/// Draft and BroadWorks documents put `send`/`recv` inside `participant`;
/// they land here too.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParticipantStreamAssoc {
    pub participant_id: String,
    pub send: Vec<String>,
    pub recv: Vec<String>,
}

/// One metadata document, or the merge of several snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub dialect: Dialect,
    pub data_mode: DataMode,
    /// BroadWorks' `<recording id=...>`.
    pub recording_id: Option<String>,
    pub groups: Vec<Group>,
    pub sessions: Vec<Session>,
    pub participants: Vec<Participant>,
    pub streams: Vec<Stream>,
    pub session_recording_assocs: Vec<SessionRecordingAssoc>,
    pub participant_session_assocs: Vec<ParticipantSessionAssoc>,
    pub participant_stream_assocs: Vec<ParticipantStreamAssoc>,
    /// Extension data attached to the recording itself (or to a parent id we
    /// could not find).
    pub extensions: Vec<ExtensionElement>,
    /// Unmodelled recording-namespace elements at the top level.
    pub extra: Vec<(String, String)>,
}

impl Metadata {
    fn empty(dialect: Dialect) -> Metadata {
        Metadata {
            dialect,
            data_mode: DataMode::Complete,
            recording_id: None,
            groups: Vec::new(),
            sessions: Vec::new(),
            participants: Vec::new(),
            streams: Vec::new(),
            session_recording_assocs: Vec::new(),
            participant_session_assocs: Vec::new(),
            participant_stream_assocs: Vec::new(),
            extensions: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// The stream association of a participant, if any.
    pub fn stream_assoc(&self, participant_id: &str) -> Option<&ParticipantStreamAssoc> {
        self.participant_stream_assocs
            .iter()
            .find(|a| a.participant_id == participant_id)
    }

    /// A stream by id.
    pub fn stream(&self, id: &str) -> Option<&Stream> {
        self.streams.iter().find(|s| s.id == id)
    }

    /// Folds a later snapshot into this one.
    ///
    /// A `complete` snapshot replaces everything. A `partial` one updates by
    /// id: known entities get the fields the update carries (a participant's
    /// stream association is replaced as a whole, as in RFC 7865's hold
    /// example), unknown ones are added. Entities without an id are added.
    pub fn merge(&mut self, update: Metadata) {
        if update.data_mode == DataMode::Complete {
            *self = update;
            return;
        }
        if self.recording_id.is_none() {
            self.recording_id = update.recording_id;
        }
        merge_by(&mut self.groups, update.groups, |g| &g.id, merge_group);
        merge_by(&mut self.sessions, update.sessions, |s| &s.id, merge_session);
        merge_by(
            &mut self.participants,
            update.participants,
            |p| &p.id,
            merge_participant,
        );
        merge_by(&mut self.streams, update.streams, |s| &s.id, merge_stream);
        merge_by(
            &mut self.session_recording_assocs,
            update.session_recording_assocs,
            |a| &a.session_id,
            |old, new| {
                set_opt(&mut old.associate_time, new.associate_time);
                set_opt(&mut old.disassociate_time, new.disassociate_time);
            },
        );
        for new in update.participant_session_assocs {
            match self
                .participant_session_assocs
                .iter_mut()
                .find(|a| a.participant_id == new.participant_id && a.session_id == new.session_id)
            {
                Some(old) => {
                    set_opt(&mut old.associate_time, new.associate_time);
                    set_opt(&mut old.disassociate_time, new.disassociate_time);
                }
                None => self.participant_session_assocs.push(new),
            }
        }
        merge_by(
            &mut self.participant_stream_assocs,
            update.participant_stream_assocs,
            |a| &a.participant_id,
            |old, new| {
                *old = new;
            },
        );
        self.extensions.extend(update.extensions);
        merge_extra(&mut self.extra, update.extra);
    }
}

// A partial update of a known entity: the fields it carries replace the old.

fn merge_group(old: &mut Group, new: Group) {
    set_opt(&mut old.associate_time, new.associate_time);
    replace_nonempty(&mut old.extensions, new.extensions);
    merge_extra(&mut old.extra, new.extra);
}

fn merge_session(old: &mut Session, new: Session) {
    set_opt(&mut old.group_ref, new.group_ref);
    replace_nonempty(&mut old.sip_session_ids, new.sip_session_ids);
    set_opt(&mut old.start_time, new.start_time);
    set_opt(&mut old.stop_time, new.stop_time);
    set_opt(&mut old.associate_time, new.associate_time);
    replace_nonempty(&mut old.extensions, new.extensions);
    merge_extra(&mut old.extra, new.extra);
}

fn merge_participant(old: &mut Participant, new: Participant) {
    set_opt(&mut old.aor, new.aor);
    set_opt(&mut old.name, new.name);
    set_opt(&mut old.session, new.session);
    set_opt(&mut old.associate_time, new.associate_time);
    replace_nonempty(&mut old.extensions, new.extensions);
    merge_extra(&mut old.extra, new.extra);
}

fn merge_stream(old: &mut Stream, new: Stream) {
    set_opt(&mut old.session, new.session);
    set_opt(&mut old.label, new.label);
    set_opt(&mut old.associate_time, new.associate_time);
    replace_nonempty(&mut old.extensions, new.extensions);
    merge_extra(&mut old.extra, new.extra);
}

fn merge_by<T>(old: &mut Vec<T>, new: Vec<T>, id: impl Fn(&T) -> &String, update: impl Fn(&mut T, T)) {
    for item in new {
        let key = id(&item).clone();
        match old.iter_mut().find(|o| !key.is_empty() && *id(o) == key) {
            Some(existing) => update(existing, item),
            None => old.push(item),
        }
    }
}

fn set_opt<T>(old: &mut Option<T>, new: Option<T>) {
    if new.is_some() {
        *old = new;
    }
}

fn replace_nonempty<T>(old: &mut Vec<T>, new: Vec<T>) {
    if !new.is_empty() {
        *old = new;
    }
}

fn merge_extra(old: &mut Vec<(String, String)>, new: Vec<(String, String)>) {
    for (k, v) in new {
        match old.iter_mut().find(|(ok, _)| *ok == k) {
            Some(slot) => slot.1 = v,
            None => old.push((k, v)),
        }
    }
}

const NS_RFC: &str = "urn:ietf:params:xml:ns:recording:1";
const NS_DRAFT: &str = "urn:ietf:params:xml:ns:recording";
const NS_BROADWORKS: &str = "urn:ietf:params:xml:ns:siprec";

fn dialect_of(ns: Option<&str>) -> Option<Dialect> {
    let ns = ns.map(|n| n.trim().to_ascii_lowercase());
    match ns.as_deref() {
        None | Some("") => Some(Dialect::Unqualified),
        Some(NS_RFC) => Some(Dialect::Rfc7865),
        Some(NS_DRAFT) => Some(Dialect::Draft),
        Some(NS_BROADWORKS) => Some(Dialect::BroadWorks),
        _ => None,
    }
}

/// Local names compared without case, `-` or `_`.
fn norm(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The name we keep for an unmodelled element: lower case, `-` as `_`.
fn extra_name(name: &str) -> String {
    name.chars()
        .map(|c| if c == '-' { '_' } else { c.to_ascii_lowercase() })
        .collect()
}

type Node<'a, 'i> = roxmltree::Node<'a, 'i>;

fn is_recording_ns(node: Node) -> bool {
    dialect_of(node.tag_name().namespace()).is_some()
}

fn attr(node: Node, names: &[&str]) -> Option<String> {
    for wanted in names {
        for a in node.attributes() {
            if norm(a.name()) == *wanted {
                return Some(a.value().trim().to_string());
            }
        }
    }
    None
}

/// The element's own text (its direct text children), trimmed; `None` when
/// blank.
fn text(node: Node) -> Option<String> {
    let mut out = String::new();
    for child in node.children().filter(|c| c.is_text()) {
        out.push_str(child.text().unwrap_or_default());
    }
    let t = out.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(|c| c.is_element())
}

fn extension(node: Node, depth: usize) -> ExtensionElement {
    let children = if depth >= MAX_DEPTH {
        Vec::new()
    } else {
        elements(node)
            .take(256)
            .map(|c| extension(c, depth + 1))
            .collect()
    };
    ExtensionElement {
        namespace: node.tag_name().namespace().unwrap_or_default().to_string(),
        name: node.tag_name().name().to_string(),
        attributes: node
            .attributes()
            .take(64)
            .map(|a| (a.name().to_string(), a.value().trim().to_string()))
            .collect(),
        text: text(node),
        children,
    }
}

/// The common handling of a child element of group/session/participant/
/// stream: foreign elements and `extensiondata` contents become extensions,
/// unknown simple recording elements become extras. Returns `true` when
/// handled.
fn common_child(child: Node, extensions: &mut Vec<ExtensionElement>, extra: &mut Vec<(String, String)>) {
    if !is_recording_ns(child) {
        extensions.push(extension(child, 2));
    } else if norm(child.tag_name().name()) == "extensiondata" {
        extensions.extend(elements(child).map(|c| extension(c, 3)));
    } else if elements(child).next().is_none() {
        if let Some(t) = text(child) {
            extra.push((extra_name(child.tag_name().name()), t));
        }
    } else {
        // A recording-namespace element with structure we do not model.
        extensions.push(extension(child, 2));
    }
}

/// Stream ids in a `send`/`recv` element: its text, or BroadWorks' `<id>`
/// children.
fn stream_refs(node: Node) -> Vec<String> {
    let mut ids: Vec<String> = text(node).into_iter().collect();
    ids.extend(
        elements(node)
            .filter(|c| norm(c.tag_name().name()) == "id")
            .filter_map(text),
    );
    ids
}

fn push_assoc(
    assocs: &mut Vec<ParticipantStreamAssoc>,
    participant_id: &str,
    send: Vec<String>,
    recv: Vec<String>,
) {
    match assocs.iter_mut().find(|a| a.participant_id == participant_id) {
        Some(a) => {
            a.send.extend(send);
            a.recv.extend(recv);
        }
        None => assocs.push(ParticipantStreamAssoc {
            participant_id: participant_id.to_string(),
            send,
            recv,
        }),
    }
}

/// Parses one metadata document.
pub fn parse(body: &[u8]) -> Result<Metadata, MetadataError> {
    if body.len() > MAX_METADATA_BYTES {
        return Err(MetadataError::TooLarge(body.len()));
    }
    let text_body = String::from_utf8_lossy(body);
    let text_body = text_body.trim_start_matches('\u{feff}');
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(text_body, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => MetadataError::DtdNotAllowed,
        other => MetadataError::Xml(other.to_string()),
    })?;
    check_depth(&doc)?;
    let root = doc.root_element();
    let mut md = Metadata::empty(root_dialect(root)?);
    // extensiondata with a parent attribute, attached once every id is known.
    let mut parented: Vec<(String, Vec<ExtensionElement>)> = Vec::new();
    for child in elements(root) {
        if is_recording_ns(child) {
            read_element(&mut md, &mut parented, child);
        } else {
            md.extensions.push(extension(child, 1));
        }
    }
    attach_parented(&mut md, parented);
    Ok(md)
}

/// The dialect of a document, from its root element (`recording`, or
/// BroadWorks' `recordingMetadata`) and its namespace.
fn root_dialect(root: Node) -> Result<Dialect, MetadataError> {
    let root_name = norm(root.tag_name().name());
    match dialect_of(root.tag_name().namespace()) {
        Some(_) if root_name == "recordingmetadata" => Ok(Dialect::BroadWorks),
        Some(d) if root_name == "recording" => Ok(d),
        _ => Err(MetadataError::NotRecordingMetadata(
            root.tag_name().name().chars().take(80).collect(),
        )),
    }
}

/// One child of the root in the recording namespace, into `md`;
/// `extensiondata` naming a parent is kept in `parented` for later.
fn read_element(md: &mut Metadata, parented: &mut Vec<(String, Vec<ExtensionElement>)>, child: Node) {
    match norm(child.tag_name().name()).as_str() {
        "datamode" => {
            if text(child).is_some_and(|t| t.eq_ignore_ascii_case("partial")) {
                md.data_mode = DataMode::Partial;
            }
        }
        "recording" => {
            md.recording_id = attr(child, &["id"]);
            for c in elements(child) {
                if let Some(t) = text(c) {
                    md.extra
                        .push((format!("recording_{}", extra_name(c.tag_name().name())), t));
                }
            }
        }
        "group" => md.groups.push(parse_group(child)),
        "session" => md.sessions.push(parse_session(child)),
        "participant" => {
            let (p, send, recv) = parse_participant(child);
            if !send.is_empty() || !recv.is_empty() {
                push_assoc(&mut md.participant_stream_assocs, &p.id, send, recv);
            }
            md.participants.push(p);
        }
        "stream" => md.streams.push(parse_stream(child)),
        "sessionrecordingassoc" => md.session_recording_assocs.push(SessionRecordingAssoc {
            session_id: attr(child, &["sessionid", "session", "id"]).unwrap_or_default(),
            associate_time: child_text(child, "associatetime"),
            disassociate_time: child_text(child, "disassociatetime"),
        }),
        "participantsessionassoc" => md.participant_session_assocs.push(ParticipantSessionAssoc {
            participant_id: attr(child, &["participantid", "participant"]).unwrap_or_default(),
            session_id: attr(child, &["sessionid", "session"]).unwrap_or_default(),
            associate_time: child_text(child, "associatetime"),
            disassociate_time: child_text(child, "disassociatetime"),
        }),
        "participantstreamassoc" => {
            let id = attr(child, &["participantid", "participant", "id"]).unwrap_or_default();
            let (mut send, mut recv) = (Vec::new(), Vec::new());
            for c in elements(child) {
                match norm(c.tag_name().name()).as_str() {
                    "send" => send.extend(stream_refs(c)),
                    "recv" => recv.extend(stream_refs(c)),
                    _ => {}
                }
            }
            push_assoc(&mut md.participant_stream_assocs, &id, send, recv);
        }
        "extensiondata" => {
            let ext: Vec<ExtensionElement> = elements(child).map(|c| extension(c, 2)).collect();
            match attr(child, &["parent"]) {
                Some(parent) if !parent.is_empty() => parented.push((parent, ext)),
                _ => md.extensions.extend(ext),
            }
        }
        _ => {
            if let Some(t) = text(child)
                && elements(child).next().is_none()
            {
                md.extra.push((extra_name(child.tag_name().name()), t));
            } else if elements(child).next().is_some() {
                md.extensions.push(extension(child, 1));
            }
        }
    }
}

/// Extension data goes to the session, participant, group or stream it
/// names (in that order), or to the recording when it names none.
fn attach_parented(md: &mut Metadata, parented: Vec<(String, Vec<ExtensionElement>)>) {
    for (parent, ext) in parented {
        if let Some(s) = md.sessions.iter_mut().find(|s| s.id == parent) {
            s.extensions.extend(ext);
        } else if let Some(p) = md.participants.iter_mut().find(|p| p.id == parent) {
            p.extensions.extend(ext);
        } else if let Some(g) = md.groups.iter_mut().find(|g| g.id == parent) {
            g.extensions.extend(ext);
        } else if let Some(s) = md.streams.iter_mut().find(|s| s.id == parent) {
            s.extensions.extend(ext);
        } else {
            md.extensions.extend(ext);
        }
    }
}

/// Refuses documents nested deeper than [`MAX_DEPTH`], in one pass over the
/// nodes in document order (a parent always comes before its children).
fn check_depth(doc: &roxmltree::Document) -> Result<(), MetadataError> {
    let mut depth: Vec<u16> = vec![0; doc.descendants().count() + 1];
    for node in doc.descendants() {
        let d = node
            .parent()
            .and_then(|p| depth.get(p.id().get_usize()).copied())
            .unwrap_or(0)
            + 1;
        if usize::from(d) > MAX_DEPTH + 1 {
            return Err(MetadataError::TooDeep);
        }
        if let Some(slot) = depth.get_mut(node.id().get_usize()) {
            *slot = d;
        }
    }
    Ok(())
}

fn child_text(node: Node, name: &str) -> Option<String> {
    elements(node)
        .find(|c| is_recording_ns(*c) && norm(c.tag_name().name()) == name)
        .and_then(text)
}

fn parse_group(node: Node) -> Group {
    let mut g = Group {
        id: attr(node, &["groupid", "id"]).unwrap_or_default(),
        ..Default::default()
    };
    for c in elements(node) {
        match (is_recording_ns(c), norm(c.tag_name().name()).as_str()) {
            (true, "associatetime") => g.associate_time = text(c),
            _ => common_child(c, &mut g.extensions, &mut g.extra),
        }
    }
    g
}

fn parse_session(node: Node) -> Session {
    let mut s = Session {
        id: attr(node, &["sessionid", "id"]).unwrap_or_default(),
        group_ref: attr(node, &["group", "groupref"]),
        ..Default::default()
    };
    for c in elements(node) {
        match (is_recording_ns(c), norm(c.tag_name().name()).as_str()) {
            (true, "sipsessionid") => s.sip_session_ids.extend(text(c)),
            (true, "groupref") => s.group_ref = text(c),
            (true, "starttime") => s.start_time = text(c),
            (true, "stoptime") => s.stop_time = text(c),
            (true, "associatetime") => s.associate_time = text(c),
            _ => common_child(c, &mut s.extensions, &mut s.extra),
        }
    }
    s
}

fn parse_participant(node: Node) -> (Participant, Vec<String>, Vec<String>) {
    let mut p = Participant {
        id: attr(node, &["participantid", "id"]).unwrap_or_default(),
        session: attr(node, &["session", "sessionid"]),
        ..Default::default()
    };
    let (mut send, mut recv) = (Vec::new(), Vec::new());
    for c in elements(node) {
        match (is_recording_ns(c), norm(c.tag_name().name()).as_str()) {
            (true, "nameid") => {
                if p.aor.is_none() {
                    p.aor = attr(c, &["aor"]).filter(|a| !a.is_empty());
                }
                if p.name.is_none() {
                    p.name = elements(c)
                        .find(|n| norm(n.tag_name().name()) == "name")
                        .and_then(text);
                }
            }
            (true, "aor") => {
                if p.aor.is_none() {
                    p.aor = text(c);
                }
            }
            (true, "name") => {
                if p.name.is_none() {
                    p.name = text(c);
                }
            }
            (true, "send") => send.extend(stream_refs(c)),
            (true, "recv") => recv.extend(stream_refs(c)),
            (true, "associatetime") => p.associate_time = text(c),
            _ => common_child(c, &mut p.extensions, &mut p.extra),
        }
    }
    (p, send, recv)
}

fn parse_stream(node: Node) -> Stream {
    let mut s = Stream {
        id: attr(node, &["streamid", "id"]).unwrap_or_default(),
        session: attr(node, &["sessionid", "session"]),
        ..Default::default()
    };
    for c in elements(node) {
        match (is_recording_ns(c), norm(c.tag_name().name()).as_str()) {
            (true, "label") => s.label = text(c),
            (true, "associatetime") => s.associate_time = text(c),
            _ => common_child(c, &mut s.extensions, &mut s.extra),
        }
    }
    s
}

/// The header Cisco network-based recording uses to name the participants.
pub const CISCO_PARTICIPANT_HEADER: &str = "X-Cisco-Recording-Participant";

/// Builds metadata from Cisco network-based recording headers
/// (`X-Cisco-Recording-Participant: sip:2164485925@ccf.org;media-index="0"`),
/// participants ordered by media index. `None` when the message has none.
pub fn from_cisco_headers(message: &Message) -> Option<Metadata> {
    let mut found: Vec<(u32, usize, Participant)> = Vec::new();
    for (k, value) in message.header_all(CISCO_PARTICIPANT_HEADER).take(64).enumerate() {
        let Some(addr) = NameAddr::parse(value) else {
            continue;
        };
        let index = addr
            .param("media-index")
            .and_then(|i| i.trim().parse::<u32>().ok());
        let mut p = Participant {
            id: format!("cisco-participant-{}", index.map_or(k as u64 + 1000, u64::from)),
            aor: Some(addr.uri.clone()),
            name: addr.display_name.clone(),
            ..Default::default()
        };
        if let Some(i) = index {
            p.extra.push(("media_index".to_string(), i.to_string()));
        }
        found.push((index.unwrap_or(u32::MAX), k, p));
    }
    if found.is_empty() {
        return None;
    }
    found.sort_by_key(|(index, k, _)| (*index, *k));
    let mut md = Metadata::empty(Dialect::CiscoHeaders);
    md.participants = found.into_iter().map(|(_, _, p)| p).collect();
    Some(md)
}
