//! What a completed upload means, whichever protocol brought it (FTP, FTPS,
//! SFTP): a new version of a reference table, or files of a call drop. Every
//! processed upload gets a report file next to it, in plain text.
//!
//! Files are processed only once complete: the protocol adapters call
//! [`Dropbox::writing`] when a client opens a file for writing and
//! [`Dropbox::completed`] when the transfer ends successfully; a failed
//! transfer calls [`Dropbox::aborted`], which removes the partial file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use callmeta_app::store::{CallSource, Tenant};
use callmeta_app::usecases::audit::{self, Actor};
use callmeta_app::usecases::calls::{NewAudio, NewCall};
use callmeta_app::usecases::tables::{Channel, UploadOutcome};
use callmeta_app::usecases::{AppError, Services, calls, tables, tenants, uploads, users};
use callmeta_core::call_metadata::{self, MetadataValueError};
use callmeta_core::csv::{CsvError, sha256_hex};
use callmeta_core::enrich::{EnrichmentResult, Metadata};
use serde_json::value::RawValue;

use crate::tree::{CALLS_DIR, Destination, DropPath, DropTree};

/// Audio file extensions accepted in `/calls/`.
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "mp3", "ogg", "opus", "flac", "m4a", "gsm", "au"];

/// Why a file of a call drop made no call (written to its report).
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    #[error("reading the upload: {0}")]
    Read(#[source] std::io::Error),
    #[error("the file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// `file`: the sidecar's path in the tenant's tree.
    #[error("{file}: {source}")]
    Sidecar { file: String, source: SidecarError },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("hashing the audio: {0}")]
    Hashing(#[source] tokio::task::JoinError),
    /// The calls use case refused the call.
    #[error(transparent)]
    Call(#[from] AppError),
}

/// A `NAME.json` sidecar that holds no metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidecarError {
    #[error("expected a JSON object of metadata")]
    NotAnObject,
    #[error("invalid JSON at line {line}: {message}")]
    Json { line: usize, message: String },
    /// A value the API would refuse too (null, an array, an object).
    #[error(transparent)]
    Value(#[from] MetadataValueError),
}

/// A CSV manifest that names no calls.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest: {0}")]
    Csv(#[from] CsvError),
    #[error("manifest: expected the audio file name in the first column and metadata after it")]
    NoMetadataColumn,
}

/// A call created (or found again) from a drop: its id and enrichment.
type DroppedCall = Result<(String, Vec<EnrichmentResult>), DropError>;

/// What processing one upload did (also written to its report file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// A table upload: the version written (accepted or not).
    Version {
        table: String,
        version: String,
        active: bool,
    },
    /// An upload with the same content as the active version.
    Unchanged { table: String, version: String },
    /// Calls created (or found again) from a call drop.
    Calls(Vec<String>),
    /// A call-drop file waiting for its other half.
    Waiting,
    /// Refused, with the reason (also in the report).
    Refused(String),
    /// Not processed at all (reports, temporary names).
    Ignored(&'static str),
}

pub struct Dropbox {
    services: Arc<Services>,
    tree: DropTree,
    /// Files open for writing right now (host paths).
    writing: Mutex<HashSet<PathBuf>>,
    /// The peer address that wrote or renamed a file, until it is processed
    /// (host paths): who uploaded it, for the audit log, when the protocol
    /// does not say at completion (FTP's data events).
    sources: Mutex<HashMap<PathBuf, IpAddr>>,
    /// Completed uploads being processed right now.
    processing: std::sync::atomic::AtomicUsize,
}

/// Counts a completed upload out of `processing` however its processing ends.
struct Processing<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Processing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Dropbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dropbox")
            .field("root", &self.tree.root())
            .finish_non_exhaustive()
    }
}

impl Dropbox {
    pub fn new(services: Arc<Services>, tree: DropTree) -> Arc<Self> {
        Arc::new(Self {
            services,
            tree,
            writing: Mutex::new(HashSet::new()),
            sources: Mutex::new(HashMap::new()),
            processing: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Uploads under way: files being written plus completed ones being
    /// processed (a shutdown waits for none to be left).
    pub fn in_flight(&self) -> usize {
        let writing = self.writing.lock().map(|set| set.len()).unwrap_or(0);
        writing + self.processing.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    pub fn tree(&self) -> &DropTree {
        &self.tree
    }

    /// Prepares a tenant's home at login: its folders, one per table.
    pub async fn home(&self, tenant: &Tenant) -> std::io::Result<PathBuf> {
        let slug = tenant.slug.as_str().to_string();
        let home = self.tree.home(&slug)?;
        if let Ok(list) = tables::list_tables(&self.services, &tenant.id).await {
            self.tree
                .ensure_table_dirs(&slug, list.iter().map(|t| t.table.name.as_str()));
        }
        Ok(home)
    }

    /// A client opened `file` (a host path) for writing.
    pub fn writing(&self, file: &Path) {
        if let Ok(mut set) = self.writing.lock() {
            set.insert(file.to_path_buf());
        }
    }

    /// `source` wrote `file` (a host path), or renamed a file to it.
    pub fn written_from(&self, file: &Path, source: IpAddr) {
        if let Ok(mut map) = self.sources.lock() {
            // Entries leave when their file is processed or aborted; one
            // left by a path never processed must not pile up.
            if map.len() >= 10_000 {
                map.clear();
            }
            map.insert(file.to_path_buf(), source);
        }
    }

    fn take_source(&self, file: &Path) -> Option<IpAddr> {
        self.sources.lock().ok().and_then(|mut map| map.remove(file))
    }

    fn done_writing(&self, file: &Path) {
        if let Ok(mut set) = self.writing.lock() {
            set.remove(file);
        }
    }

    fn is_being_written(&self, file: &Path) -> bool {
        self.writing.lock().map(|set| set.contains(file)).unwrap_or(false)
    }

    /// A transfer failed or was cut: the partial file never becomes anything.
    pub async fn aborted(&self, file: &Path) {
        self.done_writing(file);
        self.take_source(file);
        if let Err(e) = tokio::fs::remove_file(file).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %file.display(), error = %e, "removing a partial upload failed");
        }
        tracing::info!(file = %file.display(), "partial upload discarded");
    }

    /// A transfer finished: process the file at `path` (the client's path in
    /// the tenant's namespace) and write its report. `source`: the client's
    /// address, if the protocol knows it here (else the one that wrote the
    /// file, see [`Dropbox::written_from`]); the upload is the login's
    /// (`login`: `alice@acme`, or the tenant's slug) in the audit log.
    pub async fn completed(
        &self,
        login: &str,
        path: &str,
        channel: Channel,
        source: Option<IpAddr>,
    ) -> Processed {
        self.processing.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _done = Processing(&self.processing);
        let (user, slug) = users::parse_login(login);
        let login = users::login_name(slug, user.as_deref());
        self.process(slug, &login, path, channel, source).await
    }

    async fn process(
        &self,
        slug: &str,
        login: &str,
        path: &str,
        channel: Channel,
        source: Option<IpAddr>,
    ) -> Processed {
        let parsed = match DropPath::parse(path) {
            Ok(p) => p,
            // The reason names the path: not for a log line or a reply.
            Err(_) => return Processed::Ignored("an invalid path"),
        };
        let file = self.tree.file(slug, &parsed);
        self.done_writing(&file);
        let written_from = self.take_source(&file);
        let actor = Actor::new(
            login,
            source.or(written_from),
            match channel {
                Channel::Sftp => audit::Channel::Sftp,
                _ => audit::Channel::Ftp,
            },
        );
        let processed = match parsed.destination() {
            Destination::Ignored(why) => return Processed::Ignored(why),
            Destination::Table(table) => {
                let outcome = self
                    .table_upload(slug, &parsed, &file, &table, channel, &actor)
                    .await;
                self.write_report(slug, &parsed, &outcome.1).await;
                outcome.0
            }
            Destination::Calls => self.call_file(slug, &parsed, &file).await,
        };
        tracing::info!(tenant = slug, path, ?processed, "upload processed");
        processed
    }

    async fn write_report(&self, slug: &str, path: &DropPath, text: &str) {
        let report = self.tree.file(slug, &path.report());
        let tmp = report.with_file_name(format!(
            ".{}.writing",
            report.file_name().and_then(|n| n.to_str()).unwrap_or("report")
        ));
        let result = async {
            tokio::fs::write(&tmp, text.as_bytes()).await?;
            tokio::fs::rename(&tmp, &report).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(report = %report.display(), error = %e, "writing a report file failed");
        }
    }

    async fn table_upload(
        &self,
        slug: &str,
        path: &DropPath,
        file: &Path,
        table: &str,
        channel: Channel,
        actor: &Actor,
    ) -> (Processed, String) {
        let name = path.display();
        let refused = |why: String| {
            let text = format!("REJECTED: {why}\n\nfile:       {name}\ntable:      {table}\n");
            (Processed::Refused(why), text)
        };
        let tenant = match tenants::tenant_by_slug(&self.services, slug).await {
            Ok(t) => t,
            Err(e) => return refused(e.to_string()),
        };
        let table_name = match tables::parse_table_name(table) {
            Ok(t) => t,
            Err(e) => return refused(format!("{table:?} is not a table name: {e}")),
        };
        if let Err(AppError::NotFound(_)) =
            tables::require_table(&self.services, &tenant.id, &table_name).await
        {
            return refused(format!(
                "there is no table {table:?}: create it first (PUT /api/v1/tables/{table} with its key \
                 column, or in the web app), then upload again"
            ));
        }
        let upload = match uploads::Received::from_file(&self.services, file).await {
            Ok(u) => u,
            Err(e) => return refused(e.to_string()),
        };
        let filename = path.file_name().map(str::to_string);
        // `NAME.delta.csv`: rows with an `_op` column applied to the active version.
        let delta = filename
            .as_deref()
            .is_some_and(|f| f.to_ascii_lowercase().ends_with(".delta.csv"));
        let outcome = if delta {
            tables::upload_delta(
                &self.services,
                &tenant.id,
                &table_name,
                upload,
                channel,
                filename,
                tables::Guards::Apply,
                actor,
            )
            .await
        } else {
            tables::upload_reference_table(
                &self.services,
                &tenant.id,
                &table_name,
                upload,
                channel,
                filename,
                None,
                actor,
            )
            .await
        };
        match outcome {
            Ok(outcome) => report_upload(&name, table, &outcome),
            Err(e) => refused(e.to_string()),
        }
    }

    async fn call_file(&self, slug: &str, path: &DropPath, file: &Path) -> Processed {
        let Some(name) = path.file_name() else {
            return Processed::Ignored("not a file");
        };
        let (stem, ext) = split_extension(name);
        let ext = ext.to_ascii_lowercase();
        let tenant = match tenants::tenant_by_slug(&self.services, slug).await {
            Ok(t) => t,
            Err(e) => return Processed::Refused(e.to_string()),
        };
        if ext == "json" {
            match self.find_audio(slug, path, stem).await {
                Some(audio) => self.sidecar_pair(&tenant, slug, &audio, path).await,
                None => {
                    let text = format!(
                        "WAITING: no audio file {stem}.wav (or .{}) in /{CALLS_DIR}/ yet; the call is \
                         created when it arrives.\n",
                        AUDIO_EXTENSIONS[1..].join(", .")
                    );
                    self.write_report(slug, path, &text).await;
                    Processed::Waiting
                }
            }
        } else if ext == "csv" {
            self.manifest(&tenant, slug, path, file).await
        } else if AUDIO_EXTENSIONS.contains(&ext.as_str()) {
            let sidecar = path.sibling(&format!("{stem}.json"));
            let sidecar_file = self.tree.file(slug, &sidecar);
            if self.is_complete(&sidecar_file).await {
                return self.sidecar_pair(&tenant, slug, path, &sidecar).await;
            }
            match self.manifest_row(slug, name).await {
                Some((manifest, metadata)) => {
                    let result = self.create_call(&tenant, slug, path, metadata).await;
                    let text = call_report(path, &manifest, &result);
                    self.write_report(slug, path, &text).await;
                    processed_calls(vec![result])
                }
                None => {
                    let text = format!(
                        "WAITING: no metadata for {name} yet: upload {stem}.json beside it, or a CSV \
                         manifest in /{CALLS_DIR}/ whose first column names it.\n"
                    );
                    self.write_report(slug, path, &text).await;
                    Processed::Waiting
                }
            }
        } else {
            let why = format!(
                "{name}: /{CALLS_DIR}/ takes audio files (.{}), NAME.json metadata sidecars and CSV manifests",
                AUDIO_EXTENSIONS.join(", .")
            );
            self.write_report(slug, path, &format!("REJECTED: {why}\n")).await;
            Processed::Refused(why)
        }
    }

    async fn is_complete(&self, file: &Path) -> bool {
        !self.is_being_written(file)
            && tokio::fs::metadata(file)
                .await
                .map(|m| m.is_file())
                .unwrap_or(false)
    }

    async fn find_audio(&self, slug: &str, path: &DropPath, stem: &str) -> Option<DropPath> {
        for ext in AUDIO_EXTENSIONS {
            for candidate in [
                format!("{stem}.{ext}"),
                format!("{stem}.{}", ext.to_ascii_uppercase()),
            ] {
                let audio = path.sibling(&candidate);
                if self.is_complete(&self.tree.file(slug, &audio)).await {
                    return Some(audio);
                }
            }
        }
        None
    }

    async fn sidecar_pair(
        &self,
        tenant: &Tenant,
        slug: &str,
        audio: &DropPath,
        sidecar: &DropPath,
    ) -> Processed {
        let file = self.tree.file(slug, sidecar);
        let result = match read_limited(&file, 1 << 20).await {
            Err(e) => Err(e),
            Ok(bytes) => match sidecar_metadata(&bytes) {
                Err(source) => Err(DropError::Sidecar {
                    file: sidecar.display(),
                    source,
                }),
                Ok(metadata) => self.create_call(tenant, slug, audio, metadata).await,
            },
        };
        let text = call_report(audio, &sidecar.display(), &result);
        self.write_report(slug, audio, &text).await;
        self.write_report(slug, sidecar, &text).await;
        processed_calls(vec![result])
    }

    /// The first manifest in `/calls/` with a row naming `audio_name`.
    async fn manifest_row(&self, slug: &str, audio_name: &str) -> Option<(String, Metadata)> {
        let dir = self.tree.file(slug, &DropPath::parse(CALLS_DIR).ok()?);
        let mut entries = tokio::fs::read_dir(&dir).await.ok()?;
        let mut manifests = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().to_string();
            if split_extension(&name).1.eq_ignore_ascii_case("csv")
                && !crate::tree::is_temporary(&name)
                && self.is_complete(&entry.path()).await
            {
                manifests.push(name);
            }
        }
        manifests.sort();
        for manifest in manifests {
            let Ok(bytes) = read_limited(&dir.join(&manifest), self.services.limits.max_file_bytes).await
            else {
                continue;
            };
            if let Ok(rows) = manifest_rows(&bytes, &self.services.limits)
                && let Some((_, metadata)) = rows.into_iter().find(|(file, _)| file == audio_name)
            {
                return Some((format!("/{CALLS_DIR}/{manifest}"), metadata));
            }
        }
        None
    }

    async fn manifest(&self, tenant: &Tenant, slug: &str, path: &DropPath, file: &Path) -> Processed {
        let rows = match read_limited(file, self.services.limits.max_file_bytes).await {
            Err(e) => Err(e),
            Ok(bytes) => manifest_rows(&bytes, &self.services.limits).map_err(DropError::from),
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                let why = e.to_string();
                self.write_report(slug, path, &format!("REJECTED: {why}\n")).await;
                return Processed::Refused(why);
            }
        };
        let mut text = format!("MANIFEST {}: {} rows\n\n", path.display(), rows.len());
        let mut results = Vec::new();
        for (audio_name, metadata) in rows {
            let audio = path.sibling(&audio_name);
            let complete = DropPath::parse(&audio.display()).is_ok()
                && !audio_name.contains('/')
                && self.is_complete(&self.tree.file(slug, &audio)).await;
            if !complete {
                text.push_str(&format!("{audio_name}: waiting for the audio file\n"));
                continue;
            }
            let result = self.create_call(tenant, slug, &audio, metadata).await;
            let report = call_report(&audio, &path.display(), &result);
            self.write_report(slug, &audio, &report).await;
            match &result {
                Ok((id, _)) => text.push_str(&format!("{audio_name}: call {id}\n")),
                Err(e) => text.push_str(&format!("{audio_name}: REJECTED: {e}\n")),
            }
            results.push(result);
        }
        self.write_report(slug, path, &text).await;
        if results.is_empty() {
            Processed::Waiting
        } else {
            processed_calls(results)
        }
    }

    /// Creates the call of an audio file (idempotent: the same audio file
    /// with the same content is the same call).
    async fn create_call(
        &self,
        tenant: &Tenant,
        slug: &str,
        audio: &DropPath,
        metadata: Metadata,
    ) -> DroppedCall {
        let file = self.tree.file(slug, audio);
        let bytes = read_limited(&file, self.services.limits.max_file_bytes).await?;
        let digest = {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || sha256_hex(&bytes))
                .await
                .map_err(DropError::Hashing)?
        };
        let (_, ext) = split_extension(audio.file_name().unwrap_or(""));
        let external_id = format!("drop:{}:{}", audio.display(), &digest[..32.min(digest.len())]);
        let timestamp_ms = metadata.get("timestamp").and_then(|t| calls::parse_timestamp(t));
        let new = NewCall {
            metadata,
            timestamp_ms,
            external_id: Some(external_id),
            source: CallSource::Ftp,
            audio: Some(NewAudio {
                bytes,
                extension: ext.to_string(),
            }),
        };
        let (call, _) = calls::create_call(&self.services, &tenant.id, new).await?;
        Ok((call.unique_id, call.enrichment))
    }
}

fn processed_calls(results: Vec<DroppedCall>) -> Processed {
    let mut ids = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok((id, _)) => ids.push(id),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (ids.is_empty(), first_error) {
        (true, Some(e)) => Processed::Refused(e.to_string()),
        _ => Processed::Calls(ids),
    }
}

fn report_upload(name: &str, table: &str, outcome: &UploadOutcome) -> (Processed, String) {
    let version = &outcome.version;
    if outcome.unchanged {
        let text = format!(
            "UNCHANGED: same content (sha256 {}) as the active version {} of table {table}; nothing to do.\n\n\
             file:       {name}\n",
            version.sha256, version.id
        );
        return (
            Processed::Unchanged {
                table: table.to_string(),
                version: version.id.clone(),
            },
            text,
        );
    }
    let mut text = version.report.to_text();
    text.push_str(&format!(
        "\nfile:       {name}\ntable:      {table}\nversion:    {}\n",
        version.id
    ));
    text.push_str(if outcome.activated {
        "state:      active (calls are now enriched from this version)\n"
    } else {
        "state:      not active (the previous version stays active)\n"
    });
    (
        Processed::Version {
            table: table.to_string(),
            version: version.id.clone(),
            active: outcome.activated,
        },
        text,
    )
}

fn call_report(audio: &DropPath, metadata_from: &str, result: &DroppedCall) -> String {
    match result {
        Err(e) => format!(
            "REJECTED: {e}\n\naudio:      {}\nmetadata:   {metadata_from}\n",
            audio.display()
        ),
        Ok((id, enrichment)) => {
            let mut text = format!(
                "CALL CREATED: {id}\n\naudio:      {}\nmetadata:   {metadata_from}\n",
                audio.display()
            );
            for r in enrichment {
                text.push_str(&format!(
                    "table {}: {}{}{}\n",
                    r.table,
                    r.status.as_str(),
                    r.version
                        .as_deref()
                        .map(|v| format!(" (version {v})"))
                        .unwrap_or_default(),
                    if r.added.is_empty() {
                        String::new()
                    } else {
                        format!(", added {}", r.added.keys().collect::<Vec<_>>().join(", "))
                    }
                ));
            }
            text
        }
    }
}

fn split_extension(name: &str) -> (&str, &str) {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, ext),
        _ => (name, ""),
    }
}

async fn read_limited(file: &Path, limit: u64) -> Result<Bytes, DropError> {
    let meta = tokio::fs::metadata(file).await.map_err(DropError::Read)?;
    if meta.len() > limit {
        return Err(DropError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    tokio::fs::read(file)
        .await
        .map(Bytes::from)
        .map_err(DropError::Read)
}

/// A sidecar's metadata: either a flat JSON object of values, or the API's
/// shape `{"metadata": {...}, "timestamp": "..."}`. Values become text by
/// the API's rule ([`call_metadata::from_json`]): numbers exactly as
/// written, booleans as `true`/`false`; null, arrays and objects are
/// refused, naming the key.
pub fn sidecar_metadata(bytes: &[u8]) -> Result<Metadata, SidecarError> {
    type Object = BTreeMap<String, Box<RawValue>>;
    let invalid = |e: serde_json::Error| {
        if e.is_data() {
            SidecarError::NotAnObject
        } else {
            SidecarError::Json {
                line: e.line(),
                message: e.to_string(),
            }
        }
    };
    let mut object: Object = serde_json::from_slice(bytes).map_err(invalid)?;
    if let Some(inner) = object
        .get("metadata")
        .filter(|inner| inner.get().trim_start().starts_with('{'))
        .map(|inner| inner.get().to_string())
    {
        let timestamp = object
            .remove("timestamp")
            .filter(|t| t.get().trim_start().starts_with('"'));
        object = serde_json::from_str(&inner).map_err(invalid)?;
        if let Some(t) = timestamp {
            object.entry("timestamp".to_string()).or_insert(t);
        }
    }
    Ok(call_metadata::from_json(object)?)
}

/// A manifest's rows: the audio file name (first column) and the metadata
/// (the other non-empty columns, by header name).
pub fn manifest_rows(
    bytes: &[u8],
    limits: &callmeta_core::csv::Limits,
) -> Result<Vec<(String, Metadata)>, ManifestError> {
    let (header, rows) = callmeta_core::csv::parse_records(bytes, limits)?;
    if header.len() < 2 {
        return Err(ManifestError::NoMetadataColumn);
    }
    Ok(rows
        .into_iter()
        .filter(|row| row.first().is_some_and(|f| !f.is_empty()))
        .map(|row| {
            let mut metadata = Metadata::new();
            for (name, value) in header.iter().zip(row.iter()).skip(1) {
                if !value.is_empty() {
                    metadata.insert(name.clone(), value.clone());
                }
            }
            (row[0].clone(), metadata)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_in_both_shapes() {
        let flat = sidecar_metadata(br#"{"agent_id": "cindy", "duration": 12, "vip": true}"#).unwrap();
        assert_eq!(flat["agent_id"], "cindy");
        assert_eq!(flat["duration"], "12");
        assert_eq!(flat["vip"], "true");
        let api =
            sidecar_metadata(br#"{"metadata": {"agent_id": "bob"}, "timestamp": "2026-01-30T12:34:56Z"}"#)
                .unwrap();
        assert_eq!(api["agent_id"], "bob");
        assert_eq!(api["timestamp"], "2026-01-30T12:34:56Z");
        assert!(sidecar_metadata(b"[1,2]").is_err());
        let err = sidecar_metadata(b"{\n\"a\": ").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn sidecar_numbers_are_kept_exactly_as_written() {
        let m = sidecar_metadata(
            br#"{"big": 9007199254740993, "price": 1.50, "huge": 123456789012345678901234567890}"#,
        )
        .unwrap();
        assert_eq!(m["big"], "9007199254740993");
        assert_eq!(m["price"], "1.50");
        assert_eq!(m["huge"], "123456789012345678901234567890");
    }

    /// A sidecar's values follow the API's rule: what has no text form is
    /// refused with its key, not skipped or kept as JSON.
    #[test]
    fn sidecar_values_the_api_refuses_are_refused() {
        for (sidecar, expected) in [
            (
                &br#"{"agent_id": "cindy", "x": null}"#[..],
                "metadata.x is null; metadata values must be strings",
            ),
            (
                br#"{"nested": {"a": [1, 2]}}"#,
                "metadata.nested is an object; metadata values must be strings",
            ),
            (
                br#"{"metadata": {"list": [1]}, "timestamp": "2026-01-30T12:34:56Z"}"#,
                "metadata.list is an array; metadata values must be strings",
            ),
            (
                br#"{"s": "\udc00"}"#,
                "metadata.s is a string that is not valid Unicode; metadata values must be strings",
            ),
        ] {
            let err = sidecar_metadata(sidecar).unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
    }

    #[test]
    fn manifests() {
        let limits = callmeta_core::csv::Limits::default();
        let rows = manifest_rows(b"file;agent_id;queue\na.wav;cindy;\nb.wav;bob;sales\n", &limits).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "a.wav");
        assert_eq!(rows[0].1.len(), 1);
        assert_eq!(rows[1].1["queue"], "sales");
        assert!(matches!(
            manifest_rows(b"file\na.wav\n", &limits),
            Err(ManifestError::NoMetadataColumn)
        ));
    }
}
