//! Transactions and dialogs of the recording server.
//!
//! A dialog belongs to its peer: in-dialog requests (ACK, re-INVITE,
//! UPDATE, BYE, CANCEL) must carry its Call-ID, the peer's From tag and our
//! To tag, and come from the peer's address (UDP) or connection or address
//! (TCP); anything else gets `481` and changes nothing. A dialog ends: its
//! `200 OK` unacknowledged after 64×T1, no RTP for `rtp_timeout_secs`, or
//! longer than `max_call_secs` ([`Dialogs::sweep`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use callmeta_app::store::{CallSource, TenantId};
use callmeta_app::usecases::calls::{self, NewCall};
use callmeta_app::usecases::recordings::{self, InProgress};
use callmeta_app::usecases::{AppError, Services, siprec};
use callmeta_siprec::flatten::{FlattenOptions, flatten};
use callmeta_siprec::metadata::Metadata as RecordingMetadata;
use callmeta_siprec::recording::{RecordingBody, parse_body};
use callmeta_siprec::sdp::{self, AnswerOptions, SessionDescription};
use callmeta_siprec::sip::{Header, Message, Method};
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use crate::Context;
use crate::admission::{Admission, Ticket};
use crate::recovery::store_recording;
use crate::rtp::{Parts, PortPool, Recording};
use crate::transport::Reply;

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE";
const ACCEPT: &str = "application/sdp, application/rs-metadata+xml, application/rs-metadata, multipart/mixed";
const SUPPORTED: &str = "timer, replaces";
/// RFC 3261 T2: the longest interval between retransmissions of a 200 OK.
const T2: Duration = Duration::from_secs(4);
/// How long the operator's routing table is reused before it is read again
/// (a source registered with the CLI takes effect within this).
const ROUTES_TTL: Duration = Duration::from_secs(1);

pub(crate) struct Dialogs {
    context: Arc<Context>,
    ports: PortPool,
    dialogs: std::sync::Mutex<HashMap<String, Arc<Dialog>>>,
    /// Shutting down: calls under way go on, new ones are refused (503).
    draining: AtomicBool,
    admission: Admission,
    routes: Mutex<Option<(Instant, Arc<siprec::Routes>)>>,
}

/// One recorded call, keyed by the SIP Call-ID.
struct Dialog {
    /// The peer's From tag, our To tag.
    from_tag: Option<String>,
    to_tag: String,
    /// Where the INVITE came from, and on which TCP connection.
    peer: SocketAddr,
    connection: Option<u64>,
    udp: bool,
    state: Mutex<State>,
    /// Set by the ACK of the 200 OK (stops its retransmission).
    acked: AtomicBool,
    ack: Notify,
    /// A CANCEL before the answer.
    cancelled: Notify,
}

struct State {
    tenant: Option<TenantId>,
    unique_id: Option<String>,
    invite_cseq: u32,
    /// The last final response to the INVITE, for retransmitted INVITEs.
    invite_response: Option<Vec<u8>>,
    answered: bool,
    /// When the 200 OK was first sent.
    answered_at: Option<Instant>,
    /// The last RTP packet or in-dialog request, and the packet count then.
    last_activity: Instant,
    packets_seen: u64,
    /// The INVITE's headers (flattened with every metadata snapshot).
    headers: Vec<Header>,
    metadata: Option<RecordingMetadata>,
    offer_plans: Vec<sdp::StreamPlan>,
    ports: Option<(u16, usize)>,
    recording: Option<Recording>,
    /// The recording's job (and its parts in blob storage).
    in_progress: Option<Arc<InProgress>>,
    /// Counts the call against its source and tenant while it lasts.
    ticket: Option<Ticket>,
    session_version: u64,
    finished: bool,
}

/// Why a dialog is ended without its BYE.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    NoAck,
    NoRtp,
    TooLong,
}

impl Dialogs {
    pub(crate) fn new(context: Arc<Context>) -> Arc<Dialogs> {
        let range = parse_range(&context.settings.rtp_ports);
        let admission = Admission::new(context.settings.admission_limits());
        Arc::new(Dialogs {
            context,
            ports: PortPool::new(range),
            dialogs: std::sync::Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            admission,
            routes: Mutex::new(None),
        })
    }

    fn t1(&self) -> Duration {
        Duration::from_millis(self.context.settings.t1_ms.max(1))
    }

    /// From now on, new INVITEs are answered `503` with `Retry-After`.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn snapshot(&self) -> Vec<(String, Arc<Dialog>)> {
        self.dialogs
            .lock()
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Calls under way (refused and finished dialogs are kept a while for
    /// retransmissions; they do not count).
    pub(crate) async fn active(&self) -> usize {
        let mut active = 0;
        for (_, dialog) in self.snapshot() {
            if !dialog.state.lock().await.finished {
                active += 1;
            }
        }
        active
    }

    /// Ends every call still under way as if its BYE had come: its
    /// recording so far is attached to it (at shutdown, after the grace).
    pub(crate) async fn finish_all(&self) {
        for (call_id, dialog) in self.snapshot() {
            let state = dialog.state.lock().await;
            self.finish(&call_id, state).await;
        }
    }

    /// Ends the dialogs that are over without a BYE; run every second (or
    /// every 4×T1 when T1 is shorter). A dialog being answered is left
    /// alone.
    pub(crate) async fn sweep(&self) {
        let now = Instant::now();
        let settings = &self.context.settings;
        let rtp_timeout = Duration::from_secs(settings.rtp_timeout_secs.max(1));
        let max_call = Duration::from_secs(settings.max_call_secs.max(1));
        for (call_id, dialog) in self.snapshot() {
            let Ok(mut state) = dialog.state.try_lock() else {
                continue;
            };
            if state.finished || !state.answered {
                continue;
            }
            let Some(answered_at) = state.answered_at else {
                continue;
            };
            let packets = state
                .recording
                .as_ref()
                .map(|r| r.packets.load(Ordering::Relaxed))
                .unwrap_or(0);
            if packets != state.packets_seen {
                state.packets_seen = packets;
                state.last_activity = now;
            }
            let ending = if !dialog.acked.load(Ordering::SeqCst) {
                // Not started yet: only the wait for the ACK can end it.
                (now - answered_at >= self.t1() * 64).then_some(Ending::NoAck)
            } else if now - answered_at >= max_call {
                Some(Ending::TooLong)
            } else if now - state.last_activity >= rtp_timeout {
                Some(Ending::NoRtp)
            } else {
                None
            };
            let Some(ending) = ending else {
                continue;
            };
            let unique_id = state.unique_id.clone().unwrap_or_default();
            match ending {
                Ending::NoAck if packets == 0 => {
                    tracing::info!(call_id, %unique_id, "no ACK for the 200 OK and no audio: the call is released and removed");
                    self.discard(&call_id, state).await;
                }
                _ => {
                    tracing::info!(call_id, %unique_id, ?ending, packets, "ending a call without its BYE; its audio so far is kept");
                    self.finish(&call_id, state).await;
                }
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

    pub(crate) async fn handle(self: Arc<Self>, mut message: Message, reply: Reply) {
        let Some(method) = message.method().cloned() else {
            return; // responses: we originate no requests
        };
        message.mark_received(reply.peer());
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
                // An in-dialog OPTIONS is a sign of life of its call.
                if let Some(dialog) = self.get(&call_id)
                    && dialog.belongs(&message, &reply, true)
                    && let Ok(mut state) = dialog.state.try_lock()
                {
                    state.last_activity = Instant::now();
                }
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
                if let Some(dialog) = self.get(&call_id)
                    && dialog.belongs(&message, &reply, true)
                {
                    dialog.acked.store(true, Ordering::SeqCst);
                    dialog.ack.notify_waiters();
                    dialog.ack.notify_one();
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
        let mut builder = message.response(status).header("Warning", &warning(why));
        if status == 415 {
            builder = builder.header("Accept", ACCEPT);
        }
        reply.send(&builder.build()).await;
    }

    /// The operator's routing table, read again once it is [`ROUTES_TTL`] old.
    async fn routes(&self) -> Result<Arc<siprec::Routes>, AppError> {
        let mut cached = self.routes.lock().await;
        if let Some((at, routes)) = cached.as_ref()
            && at.elapsed() < ROUTES_TTL
        {
            return Ok(routes.clone());
        }
        match siprec::Routes::load(self.services(), self.context.default_tenant.as_deref()).await {
            Ok(routes) => {
                let routes = Arc::new(routes);
                *cached = Some((Instant::now(), routes.clone()));
                Ok(routes)
            }
            Err(e) => match cached.as_ref() {
                // The store is briefly unavailable: keep routing as before.
                Some((_, routes)) => Ok(routes.clone()),
                None => Err(e),
            },
        }
    }

    async fn invite(self: &Arc<Self>, call_id: String, message: Message, reply: Reply) {
        let cseq = message.cseq().map(|c| c.number).unwrap_or(0);
        let Some((dialog, fresh)) = self.dialog_for_invite(&call_id, &message, &reply, cseq) else {
            return;
        };
        if !fresh {
            return self.invite_again(&dialog, &message, &reply, cseq).await;
        }
        let mut state = dialog.state.lock().await;
        // Who the call is for, and whether its source and tenant may start
        // one now: a refusal is sent and the dialog forgotten at once.
        match self.admit(&message, &reply).await {
            Ok(ticket) => state.ticket = Some(ticket),
            Err(response) => {
                state.invite_response = Some(response.clone());
                state.finished = true;
                drop(state);
                self.remove(&call_id);
                return reply.send(&response).await;
            }
        }
        let tenant = match state.ticket.as_ref() {
            Some(ticket) => ticket.tenant().clone(),
            None => return,
        };
        tracing::Span::current().record("tenant", tenant.0.as_str());
        reply.send(&message.response(100).build()).await;
        let outcome = self
            .answer_invite(&call_id, tenant, &message, &reply, &mut state, &dialog)
            .await;
        let response = match outcome {
            Ok(response) => response,
            Err((status, why)) => {
                tracing::info!(call_id, status, why, "INVITE refused");
                state.finished = true;
                self.release(&mut state);
                invite_refusal(&message, &dialog, status, &why)
            }
        };
        state.invite_response = Some(response.clone());
        reply.send(&response).await;
        let success = state.answered && !state.finished;
        if success {
            state.answered_at = Some(Instant::now());
            state.last_activity = Instant::now();
        }
        drop(state);
        if !success {
            // Keep the final response a while for retransmitted INVITEs.
            let this = self.clone();
            let t1 = self.t1();
            tokio::spawn(async move {
                tokio::time::sleep(t1 * 64).await;
                this.remove(&call_id);
            });
        } else if reply.is_udp() {
            retransmit_until_ack(dialog, reply, response, self.t1());
        }
    }

    /// The dialog of an INVITE's Call-ID and whether it is new. It is looked
    /// up and, if new, inserted at once, so that a retransmission arriving
    /// while the INVITE is being answered finds it (and waits for its
    /// answer) instead of starting a second call.
    fn dialog_for_invite(
        &self,
        call_id: &str,
        message: &Message,
        reply: &Reply,
        cseq: u32,
    ) -> Option<(Arc<Dialog>, bool)> {
        let mut dialogs = self.dialogs.lock().ok()?;
        Some(match dialogs.get(call_id) {
            Some(existing) => (existing.clone(), false),
            None => {
                let dialog = Arc::new(Dialog::new(message, reply, cseq));
                dialogs.insert(call_id.to_string(), dialog.clone());
                (dialog, true)
            }
        })
    }

    /// An INVITE for a known Call-ID: a retransmission gets the response
    /// already sent; anything else is refused without touching the dialog.
    async fn invite_again(&self, dialog: &Dialog, message: &Message, reply: &Reply, cseq: u32) {
        if !dialog.belongs(message, reply, false) {
            return self
                .respond_error(message, reply, 482, "this Call-ID belongs to another dialog")
                .await;
        }
        let state = dialog.state.lock().await;
        if state.invite_cseq == cseq {
            if let Some(response) = &state.invite_response {
                reply.send(response).await;
            }
            return;
        }
        drop(state);
        self.respond_error(message, reply, 482, "a second INVITE for this Call-ID")
            .await
    }

    /// The routing and admission of a new INVITE: its place in the counts,
    /// or the response that refuses it.
    async fn admit(&self, message: &Message, reply: &Reply) -> Result<Ticket, Vec<u8>> {
        let refuse = |status: u16, why: &str, retry_after: Option<u64>| {
            tracing::info!(peer = %reply.peer(), status, why, "SIP INVITE refused");
            let mut b = message.response(status).header("Warning", &warning(why));
            if let Some(secs) = retry_after {
                b = b.header("Retry-After", &secs.to_string());
            }
            b.build()
        };
        if self.draining.load(Ordering::SeqCst) {
            return Err(refuse(503, "shutting down; calls in progress finish", Some(5)));
        }
        let routes = self
            .routes()
            .await
            .map_err(|e| refuse(500, &format!("the routing table could not be read: {e}"), None))?;
        let tenant = siprec::route_call(
            self.services(),
            &routes,
            message.request_user(),
            reply.peer().ip(),
        )
        .await
        .map_err(|refused| refuse(403, &refused.0, None))?;
        self.admission
            .admit(reply.peer().ip(), &tenant, Instant::now())
            .map_err(|refused| refuse(503, &refused.why, Some(refused.retry_after_secs)))
    }

    /// Everything up to the 200 OK, or the status to refuse with.
    async fn answer_invite(
        &self,
        call_id: &str,
        tenant: TenantId,
        message: &Message,
        reply: &Reply,
        state: &mut State,
        dialog: &Dialog,
    ) -> Result<Vec<u8>, (u16, String)> {
        let (body, offer, plans) = self.offer(message)?;
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
        let accepted = plans.iter().filter(|p| p.accepted()).count();
        if accepted == 0 {
            return Err((488, "no m-line offers PCMU or PCMA".into()));
        }
        let media_ip = self.context.rtp_bind_ip(reply);
        let (base, sockets) = self
            .ports
            .allocate(media_ip, plans.len())
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
        let (call, created) = calls::create_call(self.services(), &tenant, new)
            .await
            .map_err(|e| (500, format!("the call could not be stored: {e}")))?;
        if !created {
            // A finished call's Call-ID again: that recording stays as it is.
            return Err((
                482,
                format!("this Call-ID was already recorded as call {}", call.unique_id),
            ));
        }
        let sockets: Vec<Option<tokio::net::UdpSocket>> = plans
            .iter()
            .zip(sockets)
            .map(|(plan, socket)| plan.accepted().then_some(socket))
            .collect();
        let (recording, in_progress) = self
            .start_recording(&tenant, &call.unique_id, &plans, sockets, dialog)
            .await?;
        tracing::info!(call_id, unique_id = %call.unique_id, streams = accepted, "recording started");
        state.unique_id = Some(call.unique_id);
        state.offer_plans = plans;
        state.recording = Some(recording);
        state.in_progress = Some(in_progress);
        state.answered = true;
        self.services().metrics.sip_calls_in_progress.inc();
        Ok(message
            .response(200)
            .to_tag(&dialog.to_tag)
            .header("Contact", &self.context.contact(reply))
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED)
            .body("application/sdp", answer.into_bytes())
            .build())
    }

    /// The INVITE's body, its SDP offer and the plan of each offered stream,
    /// or why it cannot be recorded (no offer, too many streams).
    fn offer(
        &self,
        message: &Message,
    ) -> Result<(RecordingBody, SessionDescription, Vec<sdp::StreamPlan>), (u16, String)> {
        let body = parse_body(message).map_err(|e| (e.status(), e.to_string()))?;
        let Some(offer) = body.sdp.clone() else {
            return Err((488, "the INVITE has no SDP offer".into()));
        };
        let plans = sdp::plan(&offer);
        let max_streams = self.context.settings.max_streams.max(1);
        if plans.len() > max_streams {
            return Err((
                488,
                format!(
                    "{} media streams offered; at most {max_streams} are recorded",
                    plans.len()
                ),
            ));
        }
        Ok((body, offer, plans))
    }

    /// The call's recording job, then its recording into
    /// `<recordings>/<tenant>/<call>.wav` (and in parts, when configured).
    async fn start_recording(
        &self,
        tenant: &TenantId,
        unique_id: &str,
        plans: &[sdp::StreamPlan],
        sockets: Vec<Option<tokio::net::UdpSocket>>,
        dialog: &Dialog,
    ) -> Result<(Recording, Arc<InProgress>), (u16, String)> {
        let services = self.services();
        let file = self
            .context
            .recordings
            .join(&tenant.0)
            .join(format!("{unique_id}.wav"));
        let in_progress = Arc::new(
            recordings::begin(services, tenant, unique_id)
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
        let recording = Recording::start(plans, sockets, file, parts, dialog.peer.ip(), services.clone())
            .map_err(|e| (500, format!("recording: {e}")))?;
        Ok((recording, in_progress))
    }

    fn answer(&self, offer: &SessionDescription, state: &mut State, base: u16, reply: &Reply) -> String {
        let options = AnswerOptions {
            address: self.context.sdp_address(reply),
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
        let Some(dialog) = self.get(call_id).filter(|d| d.belongs(&message, &reply, true)) else {
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
        state.last_activity = Instant::now();
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
        let mut response = message.response(200).to_tag(&dialog.to_tag);
        let answer;
        if let Some(offer) = body.sdp {
            let base = state.ports.map(|(b, _)| b).unwrap_or(0);
            answer = self.answer(&offer, &mut state, base, &reply);
            response = response.body("application/sdp", answer.into_bytes());
        }
        reply
            .send(&response.header("Contact", &self.context.contact(&reply)).build())
            .await;
    }

    async fn bye(&self, call_id: &str, message: Message, reply: Reply) {
        let Some(dialog) = self.get(call_id).filter(|d| d.belongs(&message, &reply, true)) else {
            return self.respond_error(&message, &reply, 481, "no such call").await;
        };
        dialog.acked.store(true, Ordering::SeqCst);
        dialog.ack.notify_one();
        let state = dialog.state.lock().await;
        reply
            .send(&message.response(200).to_tag(&dialog.to_tag).build())
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
        if in_progress.is_some() {
            self.services().metrics.sip_calls_in_progress.dec();
        }
        self.release(&mut state);
        drop(state);
        self.remove(call_id);
        if let (Some(recording), Some(in_progress)) = (recording, in_progress) {
            let packets = recording.packets.load(Ordering::Relaxed);
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

    /// Gives up a dialog that never started (no ACK, no audio): ports,
    /// file, call and job are all released.
    async fn discard(&self, call_id: &str, mut state: tokio::sync::MutexGuard<'_, State>) {
        state.finished = true;
        let recording = state.recording.take();
        let in_progress = state.in_progress.take();
        if in_progress.is_some() {
            self.services().metrics.sip_calls_in_progress.dec();
        }
        self.release(&mut state);
        drop(state);
        self.remove(call_id);
        if let Some(recording) = recording
            && let Ok(file) = recording.finish().await
        {
            let _ = tokio::fs::remove_file(&file).await;
        }
        if let Some(in_progress) = in_progress
            && let Err(e) = recordings::discard(self.services(), &in_progress).await
        {
            tracing::warn!(call_id, unique_id = %in_progress.unique_id, error = %e, "removing an unanswered call failed");
        }
    }

    async fn cancel(&self, call_id: &str, message: Message, reply: Reply) {
        let Some(dialog) = self.get(call_id).filter(|d| d.belongs(&message, &reply, false)) else {
            return self
                .respond_error(&message, &reply, 481, "no such transaction")
                .await;
        };
        // 200 to the CANCEL; the INVITE, if not answered yet, ends with 487.
        reply.send(&message.response(200).build()).await;
        dialog.cancelled.notify_one();
    }

    /// Releases what the call holds: its RTP ports and its place in the
    /// admission counts.
    fn release(&self, state: &mut State) {
        if let Some((base, count)) = state.ports.take() {
            self.ports.release(base, count);
        }
        state.ticket = None;
    }
}

impl Dialog {
    fn new(message: &Message, reply: &Reply, cseq: u32) -> Dialog {
        Dialog {
            from_tag: message.from().ok().and_then(|f| f.tag().map(str::to_string)),
            to_tag: format!("cm{:016x}", rand_u64()),
            peer: reply.peer(),
            connection: reply.connection(),
            udp: reply.is_udp(),
            state: Mutex::new(State {
                tenant: None,
                unique_id: None,
                invite_cseq: cseq,
                invite_response: None,
                answered: false,
                answered_at: None,
                last_activity: Instant::now(),
                packets_seen: 0,
                headers: message.headers().to_vec(),
                metadata: None,
                offer_plans: Vec::new(),
                ports: None,
                recording: None,
                in_progress: None,
                ticket: None,
                session_version: 1,
                finished: false,
            }),
            acked: AtomicBool::new(false),
            ack: Notify::new(),
            cancelled: Notify::new(),
        }
    }

    /// Whether an in-dialog request is this dialog's: the peer's From tag,
    /// our To tag (when `to_tag` is asked for; a CANCEL and a retransmitted
    /// INVITE have none) and the peer's address or TCP connection.
    fn belongs(&self, message: &Message, reply: &Reply, to_tag: bool) -> bool {
        let from_tag = message.from().ok().and_then(|f| f.tag().map(str::to_string));
        if from_tag != self.from_tag {
            return false;
        }
        if to_tag {
            let theirs = message.to().ok().and_then(|t| t.tag().map(str::to_string));
            if theirs.as_deref() != Some(self.to_tag.as_str()) {
                return false;
            }
        }
        if self.udp {
            reply.is_udp() && canonical(reply.peer()) == canonical(self.peer)
        } else {
            !reply.is_udp()
                && (reply.connection() == self.connection
                    || reply.peer().ip().to_canonical() == self.peer.ip().to_canonical())
        }
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// A `Warning` header's value: why, without quotes or control characters.
/// The final response refusing an INVITE the dialog had started on.
fn invite_refusal(message: &Message, dialog: &Dialog, status: u16, why: &str) -> Vec<u8> {
    let mut b = message
        .response(status)
        .to_tag(&dialog.to_tag)
        .header("Warning", &warning(why));
    if status == 415 {
        b = b.header("Accept", ACCEPT);
    }
    b.build()
}

/// Retransmits the 200 OK over UDP until the ACK (RFC 3261 §13.3.1.4); the
/// sweep ends the dialog if none comes within 64×T1.
fn retransmit_until_ack(dialog: Arc<Dialog>, reply: Reply, response: Vec<u8>, t1: Duration) {
    tokio::spawn(async move {
        let mut interval = t1;
        let mut waited = Duration::ZERO;
        while waited < t1 * 64 && !dialog.acked.load(Ordering::SeqCst) {
            tokio::select! {
                _ = dialog.ack.notified() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if dialog.acked.load(Ordering::SeqCst) || dialog.state.lock().await.finished {
                return;
            }
            waited += interval;
            interval = (interval * 2).min(T2);
            reply.send(&response).await;
        }
    });
}
fn warning(why: &str) -> String {
    let why: String = why
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    format!("399 callmeta \"{why}\"")
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
