//! SIPREC recordings in progress, so that a call's audio survives the node
//! that took its INVITE.
//!
//! When a call is answered, a recording job (the call's id, leased to this
//! node) is written ([`begin`]). As audio arrives, the node appends it to its
//! local file and, every few seconds, stores what came since as the next
//! numbered part in blob storage ([`save_part`]). At the BYE the whole
//! recording is attached to the call and the parts and the job are removed
//! ([`complete`]).
//!
//! If the node stops mid-call, its lease runs out and another node claims the
//! job ([`claim_stale`]), joins the parts stored so far and attaches them
//! ([`finish`]). The node itself, restarted with the same name, takes its
//! jobs back at once ([`take`]) and attaches its local file, which holds the
//! audio up to the last second.
//!
//! Parts are raw audio as the recorder wrote it; making a playable file of
//! them (a WAV header) is the SIP adapter's business.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

use super::calls::{self, NewAudio};
use super::jobs::{self, Held};
use super::{AppError, Services};
use crate::blobs::BlobError;
use crate::store::{CallRecord, Job, JobKind, TenantId};

/// A recording this node is making.
pub struct InProgress {
    pub tenant: TenantId,
    pub unique_id: String,
    held: Mutex<Option<Held>>,
    /// Parts stored so far.
    parts: AtomicU32,
}

/// Where a recording's parts are kept: `{n:08}.part` under it.
pub(crate) fn parts_prefix(tenant: &TenantId, unique_id: &str) -> String {
    format!("tenants/{tenant}/recordings/{unique_id}")
}

fn part_key(tenant: &TenantId, unique_id: &str, n: u32) -> String {
    format!("{}/{n:08}.part", parts_prefix(tenant, unique_id))
}

/// Records that the call's recording is under way on this node.
#[tracing::instrument(skip_all, fields(tenant = %tenant, call_id = unique_id))]
pub async fn begin(services: &Services, tenant: &TenantId, unique_id: &str) -> Result<InProgress, AppError> {
    let held = jobs::start(
        services,
        JobKind::Recording,
        unique_id,
        tenant,
        serde_json::json!({}),
    )
    .await?;
    Ok(InProgress {
        tenant: tenant.clone(),
        unique_id: unique_id.to_string(),
        held: Mutex::new(Some(held)),
        parts: AtomicU32::new(0),
    })
}

/// Stores the audio received since the last part as the next part. Parts
/// are stored one at a time, in order.
#[tracing::instrument(skip_all, fields(tenant = %recording.tenant, call_id = %recording.unique_id))]
pub async fn save_part(services: &Services, recording: &InProgress, audio: Bytes) -> Result<(), AppError> {
    if audio.is_empty() {
        return Ok(());
    }
    let n = recording.parts.load(Ordering::SeqCst);
    services
        .blobs
        .put(&part_key(&recording.tenant, &recording.unique_id, n), audio)
        .await?;
    recording.parts.store(n + 1, Ordering::SeqCst);
    Ok(())
}

/// Attaches the whole recording to its call and forgets the parts and the
/// job.
#[tracing::instrument(skip_all, fields(tenant = %recording.tenant, call_id = %recording.unique_id))]
pub async fn complete(
    services: &Services,
    recording: &InProgress,
    audio: NewAudio,
) -> Result<CallRecord, AppError> {
    let call = match calls::attach_audio(services, &recording.tenant, &recording.unique_id, audio).await {
        Ok(call) => call,
        // The call was erased while it was recorded: what the recording
        // left (parts stored since, its job) goes too.
        Err(e @ AppError::NotFound(_)) => {
            remove_parts(services, &recording.tenant, &recording.unique_id).await;
            let held = recording.held.lock().ok().and_then(|mut h| h.take());
            if let Some(held) = held {
                jobs::done(services, held).await?;
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if recording.parts.load(Ordering::SeqCst) > 0 {
        remove_parts(services, &recording.tenant, &recording.unique_id).await;
    }
    let held = recording.held.lock().ok().and_then(|mut h| h.take());
    if let Some(held) = held {
        jobs::done(services, held).await?;
    }
    Ok(call)
}

/// Gives up a recording whose dialog never started (its `200 OK` was never
/// acknowledged and no audio came): the call is removed with its parts and
/// its job, as if the INVITE had been refused.
#[tracing::instrument(skip_all, fields(tenant = %recording.tenant, call_id = %recording.unique_id))]
pub async fn discard(services: &Services, recording: &InProgress) -> Result<(), AppError> {
    services
        .store
        .erase_call(&recording.tenant, &recording.unique_id, &[])
        .await?;
    if recording.parts.load(Ordering::SeqCst) > 0 {
        remove_parts(services, &recording.tenant, &recording.unique_id).await;
    }
    let held = recording.held.lock().ok().and_then(|mut h| h.take());
    if let Some(held) = held {
        jobs::done(services, held).await?;
    }
    Ok(())
}

async fn remove_parts(services: &Services, tenant: &TenantId, unique_id: &str) {
    if let Err(e) = services
        .blobs
        .delete_prefix(&parts_prefix(tenant, unique_id))
        .await
    {
        tracing::warn!(unique_id, error = %e, "removing a recording's parts failed");
    }
}

/// A recording whose node stopped, claimed by this node.
pub struct Unfinished {
    pub tenant: TenantId,
    pub unique_id: String,
    /// The call already has audio: nothing to attach, only leftovers to
    /// remove.
    pub has_audio: bool,
    held: Held,
}

/// Claims a recording left by a node that stopped, if any.
#[tracing::instrument(skip_all)]
pub async fn claim_stale(services: &Services) -> Result<Option<Unfinished>, AppError> {
    match jobs::claim_stale(services, JobKind::Recording).await? {
        Some((job, held)) => unfinished(services, job, held).await.map(Some),
        None => Ok(None),
    }
}

/// Claims the recording of one call, found in this node's local files after
/// a restart; `None` if it was finished (by this node or another) or another
/// node is finishing it.
#[tracing::instrument(skip_all, fields(call_id = unique_id))]
pub async fn take(services: &Services, unique_id: &str) -> Result<Option<Unfinished>, AppError> {
    match jobs::take(services, unique_id).await? {
        Some((job, held)) if job.kind == JobKind::Recording => {
            unfinished(services, job, held).await.map(Some)
        }
        Some(_) => Err(AppError::Conflict(format!("job {unique_id} is not a recording"))),
        None => Ok(None),
    }
}

async fn unfinished(services: &Services, job: Job, held: Held) -> Result<Unfinished, AppError> {
    let has_audio = match services.store.call(&job.tenant, &job.id).await {
        Ok(call) => call.audio_key.is_some(),
        Err(crate::store::StoreError::NotFound) => true, // nothing to attach to
        Err(e) => return Err(e.into()),
    };
    Ok(Unfinished {
        tenant: job.tenant,
        unique_id: job.id,
        has_audio,
        held,
    })
}

/// The parts stored so far, in order.
#[tracing::instrument(skip_all, fields(tenant = %recording.tenant, call_id = %recording.unique_id))]
pub async fn parts(services: &Services, recording: &Unfinished) -> Result<Vec<Bytes>, AppError> {
    let mut parts = Vec::new();
    loop {
        let key = part_key(&recording.tenant, &recording.unique_id, parts.len() as u32);
        match services.blobs.get(&key).await {
            Ok(bytes) => parts.push(bytes),
            Err(BlobError::NotFound(_)) => return Ok(parts),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Attaches what could be recovered (unless the call already has audio or
/// nothing was), then forgets the parts and the job.
#[tracing::instrument(skip_all, fields(tenant = %recording.tenant, call_id = %recording.unique_id))]
pub async fn finish(
    services: &Services,
    recording: Unfinished,
    audio: Option<NewAudio>,
) -> Result<(), AppError> {
    if let (false, Some(audio)) = (recording.has_audio, audio) {
        calls::attach_audio(services, &recording.tenant, &recording.unique_id, audio).await?;
    }
    remove_parts(services, &recording.tenant, &recording.unique_id).await;
    jobs::done(services, recording.held).await
}
