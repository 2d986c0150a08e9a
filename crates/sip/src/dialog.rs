//! Transactions and dialogs of the recording server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callmeta_app::store::{CallSource, TenantId};
use callmeta_app::usecases::calls::{self, NewAudio, NewCall};
use callmeta_app::usecases::recordings::{self, InProgress};
use callmeta_app::usecases::{AppError, Services, siprec};
use callmeta_siprec::flatten::{FlattenOptions, flatten};
use callmeta_siprec::metadata::Metadata as RecordingMetadata;
use callmeta_siprec::recording::{RecordingBody, parse_body};
use callmeta_siprec::sdp::{self, AnswerOptions, SessionDescription};
use callmeta_siprec::sip::{Header, Message, Method};
use tokio::sync::{Mutex, Notify};

use crate::Context;
use crate::rtp::{Parts, PortPool, Recording};
use crate::transport::Reply;

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE";
const ACCEPT: &str = "application/sdp, application/rs-metadata+xml, application/rs-metadata, multipart/mixed";
const SUPPORTED: &str = "timer, replaces";
/// RFC 3261 timers: T1, T2, and 64·T1 for giving up on the ACK.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

pub struct Dialogs {
    context: Arc<Context>,
    ports: PortPool,
    dialogs: std::sync::Mutex<HashMap<String, Arc<Dialog>>>,
    /// Shutting down: calls under way go on, new ones are refused (503).
    draining: std::sync::atomic::AtomicBool,
}

/// One recorded call, keyed by the SIP Call-ID.
struct Dialog {
    state: Mutex<State>,
    /// Signalled by the ACK of the 200 OK (stops its retransmission), or by a
    /// CANCEL before the answer.
    acked: Notify,
    cancelled: Notify,
}

struct State {
    tenant: Option<TenantId>,
    unique_id: Option<String>,
    invite_cseq: u32,
    /// The last final response to the INVITE, for retransmitted INVITEs.
    invite_response: Option<Vec<u8>>,
    answered: bool,
    to_tag: String,
    /// The INVITE's headers (flattened with every metadata snapshot).
    headers: Vec<Header>,
    metadata: Option<RecordingMetadata>,
    offer_plans: Vec<sdp::StreamPlan>,
    ports: Option<(u16, usize)>,
    recording: Option<Recording>,
    /// The recording's job (and its parts in blob storage).
    in_progress: Option<Arc<InProgress>>,
    session_version: u64,
    finished: bool,
}

impl Dialogs {
    pub fn new(context: Arc<Context>) -> Arc<Dialogs> {
        let range = parse_range(&context.settings.rtp_ports);
        Arc::new(Dialogs {
            context,
            ports: PortPool::new(range),
            dialogs: std::sync::Mutex::new(HashMap::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// From now on, new INVITEs are answered `503` with `Retry-After`.
    pub fn drain(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Calls under way (refused and finished dialogs are kept a while for
    /// retransmissions; they do not count).
    pub async fn active(&self) -> usize {
        let dialogs: Vec<Arc<Dialog>> = self
            .dialogs
            .lock()
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default();
        let mut active = 0;
        for dialog in dialogs {
            if !dialog.state.lock().await.finished {
                active += 1;
            }
        }
        active
    }

    /// Ends every call still under way as if its BYE had come: its
    /// recording so far is attached to it (at shutdown, after the grace).
    pub async fn finish_all(&self) {
        let ids: Vec<String> = self
            .dialogs
            .lock()
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default();
        for call_id in ids {
            if let Some(dialog) = self.get(&call_id) {
                let state = dialog.state.lock().await;
                self.finish(&call_id, state).await;
            }
        }
    }

    fn services(&self) -> &Arc<Services> {
        &self.context.services
    }

    fn get(&self, call_id: &str) -> Option<Arc<Dialog>> {
        self.dialogs.lock().ok().and_then(|d| d.get(call_id).cloned())
    }

    fn remove(&self, call_id: &str) {
        if let Ok(mut d) = self.dialogs.lock() {
            d.remove(call_id);
        }
    }

    pub async fn handle(self: Arc<Self>, message: Message, reply: Reply) {
        let Some(method) = message.method().cloned() else {
            return; // responses: we originate no requests
        };
        let call_id = match message.call_id() {
            Ok(id) => id.to_string(),
            Err(e) => return self.respond_error(&message, &reply, 400, &e.to_string()).await,
        };
        if let Err(e) = message
            .cseq()
            .and(message.from())
            .and(message.to())
            .and(message.top_via())
        {
            return self.respond_error(&message, &reply, 400, &e.to_string()).await;
        }
        match method {
            Method::Options => {
                let response = message
                    .response(200)
                    .header("Allow", ALLOW)
                    .header("Accept", ACCEPT)
                    .header("Supported", SUPPORTED)
                    .build();
                reply.send(&response).await;
            }
            Method::Invite => {
                let in_dialog = message
                    .to()
                    .ok()
                    .and_then(|t| t.tag().map(str::to_string))
                    .is_some();
                if in_dialog {
                    self.reinvite_or_update(&call_id, message, reply).await;
                } else {
                    self.invite(call_id, message, reply).await;
                }
            }
            Method::Update => self.reinvite_or_update(&call_id, message, reply).await,
            Method::Ack => {
                if let Some(dialog) = self.get(&call_id) {
                    dialog.acked.notify_waiters();
                    dialog.acked.notify_one();
                }
            }
            Method::Bye => self.bye(&call_id, message, reply).await,
            Method::Cancel => self.cancel(&call_id, message, reply).await,
            _ => {
                let response = message.response(405).header("Allow", ALLOW).build();
                reply.send(&response).await;
            }
        }
    }

    async fn respond_error(&self, message: &Message, reply: &Reply, status: u16, why: &str) {
        tracing::info!(peer = %reply.peer(), status, why, "SIP request refused");
        let why: String = why
            .chars()
            .filter(|c| !c.is_control() && *c != '"')
            .take(200)
            .collect();
        let mut builder = message
            .response(status)
            .header("Warning", &format!("399 callmeta \"{why}\""));
        if status == 415 {
            builder = builder.header("Accept", ACCEPT);
        }
        reply.send(&builder.build()).await;
    }

    async fn invite(self: &Arc<Self>, call_id: String, message: Message, reply: Reply) {
        let cseq = message.cseq().map(|c| c.number).unwrap_or(0);
        // A retransmitted INVITE gets the response already sent.
        if let Some(existing) = self.get(&call_id) {
            let state = existing.state.lock().await;
            if state.invite_cseq == cseq {
                if let Some(response) = &state.invite_response {
                    reply.send(response).await;
                }
                return;
            }
            drop(state);
            return self
                .respond_error(&message, &reply, 482, "a second INVITE for this Call-ID")
                .await;
        }
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::info!(peer = %reply.peer(), "SIP INVITE refused: shutting down");
            let response = message
                .response(503)
                .header("Retry-After", "5")
                .header(
                    "Warning",
                    "399 callmeta \"shutting down; calls in progress finish\"",
                )
                .build();
            return reply.send(&response).await;
        }
        let dialog = Arc::new(Dialog {
            state: Mutex::new(State {
                tenant: None,
                unique_id: None,
                invite_cseq: cseq,
                invite_response: None,
                answered: false,
                to_tag: format!("cm{:016x}", rand_u64()),
                headers: message.headers().to_vec(),
                metadata: None,
                offer_plans: Vec::new(),
                ports: None,
                recording: None,
                in_progress: None,
                session_version: 1,
                finished: false,
            }),
            acked: Notify::new(),
            cancelled: Notify::new(),
        });
        if let Ok(mut d) = self.dialogs.lock() {
            d.insert(call_id.clone(), dialog.clone());
        }
        let mut state = dialog.state.lock().await;
        reply.send(&message.response(100).build()).await;
        let outcome = self
            .answer_invite(&call_id, &message, &reply, &mut state, &dialog)
            .await;
        let response = match outcome {
            Ok(response) => response,
            Err((status, why)) => {
                tracing::info!(call_id, status, why, "INVITE refused");
                let why: String = why
                    .chars()
                    .filter(|c| !c.is_control() && *c != '"')
                    .take(200)
                    .collect();
                let mut b = message
                    .response(status)
                    .to_tag(&state.to_tag)
                    .header("Warning", &format!("399 callmeta \"{why}\""));
                if status == 415 {
                    b = b.header("Accept", ACCEPT);
                }
                state.finished = true;
                self.release(&mut state);
                b.build()
            }
        };
        state.invite_response = Some(response.clone());
        reply.send(&response).await;
        let success = state.answered && !state.finished;
        drop(state);
        if !success {
            // Keep the final response a while for retransmitted INVITEs.
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(T1 * 64).await;
                this.remove(&call_id);
            });
            return;
        }
        if reply.is_udp() {
            // Retransmit the 200 OK until the ACK (RFC 3261 §13.3.1.4).
            let dialog = dialog.clone();
            tokio::spawn(async move {
                let mut interval = T1;
                let mut waited = Duration::ZERO;
                while waited < T1 * 64 {
                    tokio::select! {
                        _ = dialog.acked.notified() => return,
                        _ = tokio::time::sleep(interval) => {}
                    }
                    waited += interval;
                    interval = (interval * 2).min(T2);
                    reply.send(&response).await;
                }
                tracing::warn!("no ACK for the 200 OK of a recording INVITE");
            });
        }
    }

    /// Everything up to the 200 OK, or the status to refuse with.
    async fn answer_invite(
        &self,
        call_id: &str,
        message: &Message,
        reply: &Reply,
        state: &mut State,
        dialog: &Dialog,
    ) -> Result<Vec<u8>, (u16, String)> {
        let services = self.services();
        let tenant = siprec::tenant_for_call(
            services,
            message.request_user(),
            reply.peer().ip(),
            self.context.default_tenant.as_deref(),
        )
        .await
        .map_err(|e| match e {
            AppError::NotFound(m) => (404, format!("no {m}")),
            other => (500, other.to_string()),
        })?;
        let body = parse_body(message).map_err(|e| (e.status(), e.to_string()))?;
        let Some(offer) = body.sdp.clone() else {
            return Err((488, "the INVITE has no SDP offer".into()));
        };
        if self.context.settings.answer_delay_ms > 0 {
            let delay = Duration::from_millis(self.context.settings.answer_delay_ms);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = dialog.cancelled.notified() => {
                    return Err((487, "cancelled".into()));
                }
            }
        }
        state.tenant = Some(tenant.clone());
        state.metadata = body.metadata.clone();
        let plans = sdp::plan(&offer);
        let accepted = plans.iter().filter(|p| p.accepted()).count();
        if accepted == 0 {
            return Err((488, "no m-line offers PCMU or PCMA".into()));
        }
        let local_ip = self.local_ip(reply);
        let (base, sockets) = self
            .ports
            .allocate(local_ip, plans.len())
            .await
            .map_err(|e| (503, format!("no RTP ports: {e}")))?;
        state.ports = Some((base, plans.len()));
        let answer = self.answer(&offer, state, base, reply);
        let metadata = self.flattened(&tenant, state).await;
        let new = NewCall {
            metadata,
            timestamp_ms: None,
            external_id: Some(format!("siprec:{call_id}")),
            source: CallSource::Siprec,
            audio: None,
        };
        let (call, _) = calls::create_call(services, &tenant, new)
            .await
            .map_err(|e| (500, format!("the call could not be stored: {e}")))?;
        let file = self
            .context
            .recordings
            .join(&tenant.0)
            .join(format!("{}.wav", call.unique_id));
        let sockets: Vec<Option<tokio::net::UdpSocket>> = plans
            .iter()
            .zip(sockets)
            .map(|(plan, socket)| plan.accepted().then_some(socket))
            .collect();
        let in_progress = Arc::new(
            recordings::begin(services, &tenant, &call.unique_id)
                .await
                .map_err(|e| {
                    (
                        500,
                        format!("the recording could not be recorded as under way: {e}"),
                    )
                })?,
        );
        let part_secs = self.context.settings.audio_part_secs.unwrap_or(0);
        let parts = (part_secs > 0).then(|| Parts {
            services: services.clone(),
            recording: in_progress.clone(),
            every: u32::try_from(part_secs).unwrap_or(u32::MAX),
        });
        let recording =
            Recording::start(&plans, sockets, file, parts).map_err(|e| (500, format!("recording: {e}")))?;
        tracing::info!(call_id, unique_id = %call.unique_id, streams = accepted, "recording started");
        state.unique_id = Some(call.unique_id);
        state.offer_plans = plans;
        state.recording = Some(recording);
        state.in_progress = Some(in_progress);
        state.answered = true;
        let contact = format!(
            "<sip:callmeta@{};transport={}>",
            self.local_addr_text(reply),
            reply.transport()
        );
        Ok(message
            .response(200)
            .to_tag(&state.to_tag)
            .header("Contact", &contact)
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED)
            .body("application/sdp", answer.into_bytes())
            .build())
    }

    fn local_ip(&self, _reply: &Reply) -> IpAddr {
        self.context.local_ip
    }

    fn local_addr_text(&self, _reply: &Reply) -> String {
        let addr = self.context.local_addr;
        match addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
            IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        }
    }

    fn answer(&self, offer: &SessionDescription, state: &mut State, base: u16, reply: &Reply) -> String {
        let address = self
            .context
            .settings
            .media_address
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| self.local_ip(reply).to_string());
        let options = AnswerOptions {
            address,
            session_id: u64::from(base),
            session_version: state.session_version,
        };
        state.session_version += 1;
        let count = state.ports.map(|(_, n)| n).unwrap_or(0);
        sdp::answer(offer, &options, |plan| {
            if plan.index < count {
                base + 2 * plan.index as u16
            } else {
                0
            }
        })
        .sdp
    }

    async fn flattened(&self, tenant: &TenantId, state: &State) -> callmeta_core::enrich::Metadata {
        let options =
            FlattenOptions::new(self.context.settings.default_region.as_deref()).unwrap_or_default();
        let flat = flatten(&state.headers, state.metadata.as_ref(), &options);
        let settings = siprec::settings(self.services(), tenant)
            .await
            .unwrap_or_default();
        siprec::apply_mapping(&settings, flat.into_iter().collect())
    }

    async fn reinvite_or_update(&self, call_id: &str, message: Message, reply: Reply) {
        let Some(dialog) = self.get(call_id) else {
            return self.respond_error(&message, &reply, 481, "no such call").await;
        };
        let mut state = dialog.state.lock().await;
        let (Some(tenant), Some(unique_id)) = (state.tenant.clone(), state.unique_id.clone()) else {
            drop(state);
            return self
                .respond_error(&message, &reply, 491, "the INVITE is still being answered")
                .await;
        };
        if state.finished {
            drop(state);
            return self
                .respond_error(&message, &reply, 481, "the call has ended")
                .await;
        }
        let body: RecordingBody = match parse_body(&message) {
            Ok(b) => b,
            Err(e) => {
                drop(state);
                return self
                    .respond_error(&message, &reply, e.status(), &e.to_string())
                    .await;
            }
        };
        if let Some(update) = body.metadata {
            match state.metadata.as_mut() {
                Some(current) => current.merge(update),
                None => state.metadata = Some(update),
            }
            let metadata = self.flattened(&tenant, &state).await;
            if let Err(e) = calls::update_call_metadata(self.services(), &tenant, &unique_id, metadata).await
            {
                tracing::warn!(call_id, error = %e, "updating the call's metadata failed");
            } else {
                tracing::info!(call_id, %unique_id, "metadata updated and enriched again");
            }
        }
        let mut response = message.response(200).to_tag(&state.to_tag);
        let answer;
        if let Some(offer) = body.sdp {
            let base = state.ports.map(|(b, _)| b).unwrap_or(0);
            answer = self.answer(&offer, &mut state, base, &reply);
            response = response.body("application/sdp", answer.into_bytes());
        }
        let contact = format!(
            "<sip:callmeta@{};transport={}>",
            self.local_addr_text(&reply),
            reply.transport()
        );
        reply.send(&response.header("Contact", &contact).build()).await;
    }

    async fn bye(&self, call_id: &str, message: Message, reply: Reply) {
        let Some(dialog) = self.get(call_id) else {
            return self.respond_error(&message, &reply, 481, "no such call").await;
        };
        dialog.acked.notify_one();
        let state = dialog.state.lock().await;
        reply
            .send(&message.response(200).to_tag(&state.to_tag).build())
            .await;
        self.finish(call_id, state).await;
    }

    /// Completes a call: its recording stored with it, its ports released.
    async fn finish(&self, call_id: &str, mut state: tokio::sync::MutexGuard<'_, State>) {
        if state.finished {
            return;
        }
        state.finished = true;
        let recording = state.recording.take();
        let in_progress = state.in_progress.take();
        self.release(&mut state);
        drop(state);
        self.remove(call_id);
        if let (Some(recording), Some(in_progress)) = (recording, in_progress) {
            let packets = recording.packets.load(std::sync::atomic::Ordering::Relaxed);
            let unique_id = &in_progress.unique_id;
            match recording.finish().await {
                Ok(file) => {
                    store_recording(self.services(), &in_progress, &file).await;
                    tracing::info!(call_id, %unique_id, packets, "recording completed");
                }
                Err(e) => tracing::warn!(call_id, error = %e, "finishing a recording failed"),
            }
        }
    }

    async fn cancel(&self, call_id: &str, message: Message, reply: Reply) {
        let Some(dialog) = self.get(call_id) else {
            return self
                .respond_error(&message, &reply, 481, "no such transaction")
                .await;
        };
        // 200 to the CANCEL; the INVITE, if not answered yet, ends with 487.
        reply.send(&message.response(200).build()).await;
        dialog.cancelled.notify_one();
    }

    fn release(&self, state: &mut State) {
        if let Some((base, count)) = state.ports.take() {
            self.ports.release(base, count);
        }
    }
}

async fn read_audio(file: &Path) -> Option<NewAudio> {
    match tokio::fs::read(file).await {
        Ok(b) => Some(NewAudio {
            bytes: bytes::Bytes::from(b),
            extension: "wav".into(),
        }),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "reading a recording failed");
            None
        }
    }
}

/// Stores a finished recording with its call and removes the file.
async fn store_recording(services: &Services, in_progress: &InProgress, file: &Path) {
    let Some(audio) = read_audio(file).await else {
        return;
    };
    match recordings::complete(services, in_progress, audio).await {
        Ok(_) => {
            let _ = tokio::fs::remove_file(file).await;
        }
        Err(e) => tracing::warn!(unique_id = %in_progress.unique_id, error = %e,
            "storing a recording failed; the file is kept"),
    }
}

/// Attaches the recordings a previous run of this node left unfinished (a
/// crash or a kill mid-call) to their calls: the audio received until then,
/// from the local files. A recording another node finished meanwhile (from
/// its stored parts) is left as it is.
pub async fn recover_recordings(services: Arc<Services>, recordings: &Path) -> usize {
    let mut recovered = 0;
    let Ok(mut tenants) = tokio::fs::read_dir(recordings).await else {
        return 0;
    };
    while let Ok(Some(tenant_dir)) = tenants.next_entry().await {
        let Ok(mut files) = tokio::fs::read_dir(tenant_dir.path()).await else {
            continue;
        };
        while let Ok(Some(entry)) = files.next_entry().await {
            let path = entry.path();
            let Some(unique_id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wav"))
                .map(str::to_string)
            else {
                continue;
            };
            let tenant = TenantId(tenant_dir.file_name().to_string_lossy().into_owned());
            let unfinished = match recordings::take(&services, &unique_id).await {
                Ok(Some(unfinished)) => unfinished,
                Ok(None) => {
                    // Its job is gone: finished elsewhere, or given up with
                    // no audio while this file stayed here (storing it had
                    // failed). The file is attached only if the call has none.
                    match calls::get_call(&services, &tenant, &unique_id).await {
                        Ok(call) if call.audio_key.is_none() => {
                            if attach_local(&services, &tenant, &unique_id, &path).await {
                                recovered += 1;
                            }
                        }
                        Ok(_) | Err(AppError::NotFound(_)) => {
                            tracing::info!(%unique_id, "an interrupted recording was finished by another node");
                            let _ = tokio::fs::remove_file(&path).await;
                        }
                        Err(e) => {
                            tracing::warn!(%unique_id, error = %e, "an interrupted recording's call could not be read; kept")
                        }
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%unique_id, error = %e, "an interrupted recording could not be claimed; kept");
                    continue;
                }
            };
            let audio = local_audio(&path).await;
            match recordings::finish(&services, unfinished, audio).await {
                Ok(()) => {
                    let _ = tokio::fs::remove_file(&path).await;
                    tracing::info!(%unique_id, "recording of an interrupted call recovered");
                    recovered += 1;
                }
                Err(e) => {
                    tracing::warn!(%unique_id, error = %e, "recovering a recording failed; the file is kept")
                }
            }
        }
    }
    recovered
}

/// A recording a previous run left, its WAV header completed.
async fn local_audio(path: &Path) -> Option<NewAudio> {
    let finalized = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || crate::rtp::finalize(&path)).await
    };
    match finalized {
        Ok(Ok(())) => read_audio(path).await,
        _ => None,
    }
}

/// Attaches a local file whose recording job is gone; true if it was.
async fn attach_local(services: &Services, tenant: &TenantId, unique_id: &str, path: &Path) -> bool {
    let Some(audio) = local_audio(path).await else {
        return false;
    };
    match calls::attach_audio(services, tenant, unique_id, audio).await {
        Ok(_) => {
            let _ = tokio::fs::remove_file(path).await;
            tracing::info!(%unique_id, "recording of an interrupted call recovered");
            true
        }
        Err(e) => {
            tracing::warn!(%unique_id, error = %e, "recovering a recording failed; the file is kept");
            false
        }
    }
}

/// Finishes the recordings of calls whose node stopped mid-call, from the
/// parts it stored: each is claimed by exactly one node. Returns how many.
pub async fn finish_stale_recordings(services: &Services) -> Result<usize, AppError> {
    let mut finished = 0;
    while let Some(unfinished) = recordings::claim_stale(services).await? {
        let unique_id = unfinished.unique_id.clone();
        let audio = if unfinished.has_audio {
            None
        } else {
            let parts = recordings::parts(services, &unfinished).await?;
            if parts.is_empty() {
                tracing::warn!(%unique_id, "a call's node stopped before any of its audio was stored; it has none");
                None
            } else {
                Some(NewAudio {
                    bytes: bytes::Bytes::from(crate::rtp::wav_of_parts(&parts)),
                    extension: "wav".into(),
                })
            }
        };
        let attached = audio.is_some();
        recordings::finish(services, unfinished, audio).await?;
        if attached {
            tracing::info!(%unique_id, "finished the recording of a call whose node stopped");
        }
        finished += 1;
    }
    Ok(finished)
}

fn parse_range(text: &str) -> std::ops::RangeInclusive<u16> {
    let parse = || {
        let (a, b) = text.split_once('-')?;
        let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (a > 0 && a < b).then_some(a..=b)
    };
    parse().unwrap_or(30000..=39999)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
