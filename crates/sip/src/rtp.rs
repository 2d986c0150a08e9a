//! RTP: ports for the streams of a call, a receiving task per stream, and
//! the call's stereo WAV written to disk as the audio arrives.

use std::collections::HashSet;
use std::io::{Seek, SeekFrom, Write};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callmeta_app::usecases::Services;
use callmeta_app::usecases::recordings::{self, InProgress};
use callmeta_siprec::media::{self, RecorderConfig, StreamRecorder};
use callmeta_siprec::sdp::StreamPlan;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// RTP ports: each call takes a block (stream k on base + 2k; the odd ports
/// are left for RTCP).
pub(crate) struct PortPool {
    range: RangeInclusive<u16>,
    state: Mutex<(u16, HashSet<u16>)>,
}

impl PortPool {
    pub(crate) fn new(range: RangeInclusive<u16>) -> Self {
        let start = *range.start() + (*range.start() % 2);
        Self {
            range,
            state: Mutex::new((start, HashSet::new())),
        }
    }

    /// Binds `count` sockets on `ip`: base, base + 2, ...
    pub(crate) async fn allocate(&self, ip: IpAddr, count: usize) -> std::io::Result<(u16, Vec<UdpSocket>)> {
        let span = (count.max(1) * 2) as u32;
        let size = (*self.range.end() as u32 + 1).saturating_sub(*self.range.start() as u32);
        if span > size {
            return Err(std::io::Error::other("the RTP port range is too small"));
        }
        // Ports another process holds fail to bind and stay marked used
        // here: every block of the range may be tried once.
        for _ in 0..(size / span).max(1) {
            let base = {
                let Ok(mut state) = self.state.lock() else {
                    return Err(std::io::Error::other("port pool poisoned"));
                };
                let mut base = state.0;
                let mut tries = 0;
                while (base as u32 + span - 1 > *self.range.end() as u32
                    || (0..count as u16).any(|k| state.1.contains(&(base + 2 * k))))
                    && tries < size
                {
                    base = if base as u32 + span > *self.range.end() as u32 {
                        *self.range.start() + (*self.range.start() % 2)
                    } else {
                        base + 2
                    };
                    tries += 2;
                }
                if tries >= size {
                    return Err(std::io::Error::other("no free RTP ports"));
                }
                for k in 0..count as u16 {
                    state.1.insert(base + 2 * k);
                }
                state.0 = if base as u32 + span > *self.range.end() as u32 {
                    *self.range.start()
                } else {
                    base + span as u16
                };
                base
            };
            let mut sockets = Vec::with_capacity(count);
            for k in 0..count as u16 {
                match UdpSocket::bind(SocketAddr::new(ip, base + 2 * k)).await {
                    Ok(s) => sockets.push(s),
                    Err(_) => break,
                }
            }
            if sockets.len() == count {
                for s in &sockets {
                    let _ = socket2::SockRef::from(s).set_recv_buffer_size(1 << 20);
                }
                return Ok((base, sockets));
            }
            // Taken by something else: try the next block (the cursor has
            // moved on), and this one again some other time.
            drop(sockets);
            self.release(base, count);
        }
        Err(std::io::Error::other("no free RTP ports"))
    }

    pub(crate) fn release(&self, base: u16, count: usize) {
        if let Ok(mut state) = self.state.lock() {
            for k in 0..count as u16 {
                state.1.remove(&(base + 2 * k));
            }
        }
    }
}

type Shared = Arc<Mutex<StreamRecorder>>;

/// The recording of one call.
pub(crate) struct Recording {
    /// One per answered m-line (`None`: rejected, or not recorded).
    recorders: Vec<Option<Shared>>,
    receivers: Vec<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
    /// Indices (in `recorders`) of the left and right channels.
    channels: (Option<usize>, Option<usize>),
    file: PathBuf,
    /// Packets received, for the logs.
    pub packets: Arc<std::sync::atomic::AtomicU64>,
}

/// How often the received audio is appended to the file.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where and how often a recording also stores its audio in parts, for
/// another node to finish it.
pub(crate) struct Parts {
    pub services: Arc<Services>,
    pub recording: Arc<InProgress>,
    /// Every this many flushes (seconds).
    pub every: u32,
}

/// Appends what each channel received to the file every second (and, with
/// `parts`, stores the audio as a part in blob storage every `parts.every`
/// seconds), until the task is aborted.
async fn flush_every_second(
    left: Option<Shared>,
    right: Option<Shared>,
    file: PathBuf,
    parts: Option<Parts>,
) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Audio written to the file but not yet stored as a part.
    let mut pending: Vec<u8> = Vec::new();
    let mut ticks = 0u32;
    loop {
        tick.tick().await;
        let (left, right, file) = (left.clone(), right.clone(), file.clone());
        if let Ok(Ok(written)) = tokio::task::spawn_blocking(move || flush(&left, &right, &file, false)).await
            && parts.is_some()
        {
            pending.extend_from_slice(&written);
        }
        ticks += 1;
        if let Some(parts) = &parts
            && ticks.is_multiple_of(parts.every.max(1))
            && !pending.is_empty()
        {
            let audio = bytes::Bytes::from(std::mem::take(&mut pending));
            if let Err(e) = recordings::save_part(&parts.services, &parts.recording, audio.clone()).await {
                // Kept, and tried again with the next part.
                tracing::warn!(unique_id = %parts.recording.unique_id, error = %e, "storing a recording part failed");
                pending = audio.to_vec();
            }
        }
    }
}

impl Recording {
    /// Starts receiving on `sockets` (one per plan, in order; `None` for
    /// rejected m-lines) and writing `file` (and `parts`, if given).
    ///
    /// Each stream takes packets from one address only: the first that
    /// comes from the address its offer named or from the SIP peer's
    /// address is latched (symmetric RTP), and packets from anywhere else
    /// are dropped, so nobody else can inject audio into the call.
    pub(crate) fn start(
        plans: &[StreamPlan],
        sockets: Vec<Option<UdpSocket>>,
        file: PathBuf,
        parts: Option<Parts>,
        peer: IpAddr,
        services: Arc<Services>,
    ) -> std::io::Result<Recording> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&file, media::wav_header(2, media::SAMPLE_RATE, 0))?;
        let started = Instant::now();
        let packets = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut recorders = Vec::new();
        let mut receivers = Vec::new();
        let mut audio = Vec::new();
        for (index, (plan, socket)) in plans.iter().zip(sockets).enumerate() {
            let Some(socket) = socket else {
                recorders.push(None);
                continue;
            };
            let recorder = Arc::new(Mutex::new(StreamRecorder::new(RecorderConfig::for_stream(plan))));
            if plan.kind.eq_ignore_ascii_case("audio") {
                audio.push(index);
            }
            let mut allowed = vec![peer.to_canonical()];
            if let Some(ip) = plan
                .remote
                .as_ref()
                .and_then(|(host, _)| host.parse::<IpAddr>().ok())
                .filter(|ip| !ip.is_unspecified())
            {
                allowed.push(ip.to_canonical());
            }
            receivers.push(tokio::spawn(receive(
                socket,
                recorder.clone(),
                started,
                packets.clone(),
                allowed,
                services.clone(),
            )));
            recorders.push(Some(recorder));
        }
        let channels = (audio.first().copied(), audio.get(1).copied());
        let mut recording = Recording {
            recorders,
            receivers,
            flusher: None,
            channels,
            file,
            packets,
        };
        let (left, right) = recording.channel_recorders();
        recording.flusher = Some(tokio::spawn(flush_every_second(
            left,
            right,
            recording.file.clone(),
            parts,
        )));
        Ok(recording)
    }

    fn channel_recorders(&self) -> (Option<Shared>, Option<Shared>) {
        let get = |i: Option<usize>| i.and_then(|i| self.recorders.get(i).cloned().flatten());
        (get(self.channels.0), get(self.channels.1))
    }

    /// Stops receiving, writes the rest and finalises the file; returns its
    /// path (the caller stores it and removes it).
    pub(crate) async fn finish(mut self) -> std::io::Result<PathBuf> {
        for task in self.receivers.drain(..) {
            task.abort();
        }
        if let Some(flusher) = self.flusher.take() {
            flusher.abort();
        }
        let (left, right) = self.channel_recorders();
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            flush(&left, &right, &file, true)?;
            finalize(&file)?;
            Ok(file)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        for task in &self.receivers {
            task.abort();
        }
        if let Some(flusher) = &self.flusher {
            flusher.abort();
        }
    }
}

async fn receive(
    socket: UdpSocket,
    recorder: Shared,
    started: Instant,
    packets: Arc<std::sync::atomic::AtomicU64>,
    allowed: Vec<IpAddr>,
    services: Arc<Services>,
) {
    let mut buf = vec![0u8; 2048];
    let mut latched: Option<SocketAddr> = None;
    let mut foreign = 0u64;
    let mut losses = Losses::default();
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let accepted = match latched {
            Some(source) => source == from,
            None if allowed.contains(&from.ip().to_canonical()) => {
                latched = Some(from);
                true
            }
            None => false,
        };
        if !accepted {
            foreign += 1;
            if foreign.is_power_of_two() {
                tracing::info!(%from, dropped = foreign, "RTP from an address other than the call's peer dropped");
            }
            continue;
        }
        packets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let metrics = &services.metrics;
        metrics.rtp_packets_received.inc();
        if n >= 12 && buf[0] >> 6 == 2 {
            let lost = losses.next(u16::from_be_bytes([buf[2], buf[3]]));
            if lost > 0 {
                metrics.rtp_packets_lost.inc_by(lost);
            }
        }
        let arrival = started.elapsed();
        if let Ok(mut r) = recorder.lock() {
            let _ = r.push_datagram(&buf[..n], Some(arrival));
        }
    }
}

/// Packets lost on one stream, from its sequence numbers: a jump forward
/// counts the numbers skipped. A late packet (one of those, arriving after
/// all) is not taken back: the count is of packets missing when expected,
/// as a receiver report's loss is close to.
#[derive(Default)]
struct Losses {
    last: Option<u16>,
}

impl Losses {
    /// The packets lost before `seq`.
    fn next(&mut self, seq: u16) -> u64 {
        let Some(last) = self.last else {
            self.last = Some(seq);
            return 0;
        };
        let ahead = seq.wrapping_sub(last);
        // Up to half the sequence space ahead is new; the rest is a late
        // or repeated packet.
        if ahead == 0 || ahead >= 0x8000 {
            return 0;
        }
        self.last = Some(seq);
        // A jump of more than a minute of 20 ms packets is the sender
        // starting over, not a loss.
        if ahead > 3_000 { 0 } else { u64::from(ahead - 1) }
    }
}

/// Appends what both channels have ready (everything, at the end), aligned;
/// returns the bytes appended.
fn flush(left: &Option<Shared>, right: &Option<Shared>, file: &Path, all: bool) -> std::io::Result<Vec<u8>> {
    let end = |r: &Option<Shared>| {
        r.as_ref()
            .and_then(|r| r.lock().ok().map(|r| r.end()))
            .unwrap_or(0)
    };
    let newest = end(left).max(end(right));
    let jitter = u64::from(media::SAMPLE_RATE); // one second, as the recorders allow
    let position = if all {
        newest
    } else {
        newest.saturating_sub(jitter)
    };
    let take = |r: &Option<Shared>| {
        r.as_ref()
            .and_then(|r| r.lock().ok().map(|mut r| r.take_until(position)))
            .unwrap_or_default()
    };
    let (l, r) = (take(left), take(right));
    if l.is_empty() && r.is_empty() {
        return Ok(Vec::new());
    }
    let audio = media::interleave(&l, &r);
    let mut f = std::fs::OpenOptions::new().append(true).open(file)?;
    f.write_all(&audio)?;
    f.sync_data()?;
    Ok(audio)
}

/// A playable WAV of parts stored by a recording (audio as [`flush`]
/// writes it).
pub(crate) fn wav_of_parts(parts: &[bytes::Bytes]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut wav = Vec::with_capacity(44 + len);
    wav.extend_from_slice(&media::wav_header(
        2,
        media::SAMPLE_RATE,
        u32::try_from(len).unwrap_or(u32::MAX),
    ));
    for part in parts {
        wav.extend_from_slice(part);
    }
    wav
}

/// Writes the sizes into the header of a file written incrementally.
pub(crate) fn finalize(file: &Path) -> std::io::Result<()> {
    let len = std::fs::metadata(file)?.len();
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(file)?;
    let mut header = [0u8; 44];
    std::io::Read::read_exact(&mut f, &mut header)?;
    media::finalize_wav_header(&mut header, len).map_err(std::io::Error::other)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&header)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::Losses;

    #[test]
    fn losses_count_the_sequence_numbers_skipped() {
        let mut l = Losses::default();
        let seqs = [65_533u16, 65_534, 1, 2, 0, 5, 5, 6, 5_006, 5_008];
        let lost: Vec<u64> = seqs.iter().map(|s| l.next(*s)).collect();
        // 65535 and 0 skipped at the wrap (0 arrives late: not taken back),
        // 3 and 4 skipped, a repeat, a restart far ahead, then 5007 lost.
        assert_eq!(lost, [0, 0, 2, 0, 0, 2, 0, 0, 0, 1]);
    }
}
