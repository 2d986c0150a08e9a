//! Recordings left by a previous run or another node: attached to their
//! calls at start ([`recover_recordings`]) or from the parts a stopped node
//! stored ([`finish_stale_recordings`]).

use std::path::Path;
use std::sync::Arc;

use callmeta_app::store::TenantId;
use callmeta_app::usecases::calls::{self, NewAudio};
use callmeta_app::usecases::recordings::{self, InProgress};
use callmeta_app::usecases::{AppError, Services};

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
pub(crate) async fn store_recording(services: &Services, in_progress: &InProgress, file: &Path) {
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
