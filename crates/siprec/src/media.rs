//! Recorded media without I/O: RTP header parsing, G.711 decoding, placing
//! decoded samples on a timeline, and WAV bytes.
//!
//! A [`StreamRecorder`] holds one direction of a call (one m-line). Samples
//! are placed by RTP timestamp relative to the stream's first packet, which
//! itself is placed by its arrival time since the call started, so the two
//! directions line up. Gaps are silence; reordered and duplicated packets
//! land where they belong. A new SSRC (the client switched sources) resumes
//! at the later of where the stream ended and its arrival time. Timestamps
//! that jump further than [`RecorderConfig::max_gap`] from where the stream
//! is (or from its arrival time) are treated as a new source too, so a
//! hostile peer cannot make us allocate hours of silence; the whole
//! recording is capped at [`RecorderConfig::max_samples`].
//!
//! Arrival times are arguments, never read from a clock here.
//!
//! A long call should not sit in memory: the listener drains settled
//! samples with [`StreamRecorder::take_until`] (both directions to the same
//! position), appends [`interleave`]d frames to a file after a
//! [`wav_header`], and fixes the sizes with [`finalize_wav_header`] at the
//! end. Short recordings can use [`stereo_wav`] directly.

use std::collections::VecDeque;
use std::time::Duration;

use crate::sdp::{Codec, StreamPlan};

/// The sample rate of everything recorded (G.711).
pub const SAMPLE_RATE: u32 = 8000;

/// Why a datagram is not an RTP packet we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet of {0} bytes is shorter than an RTP header")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("RTCP packet (type {0}) on the RTP port")]
    Rtcp(u8),
    #[error("CSRC list or header extension runs past the packet")]
    Truncated,
    #[error("padding length {0} is larger than the payload")]
    BadPadding(u8),
}

/// An RTP packet (RFC 3550 §5.1), borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub version: u8,
    pub padding: bool,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc: Vec<u32>,
    /// The header extension's profile id and data, if the X bit is set.
    pub extension: Option<(u16, &'a [u8])>,
    /// The payload, padding removed.
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Parses an RTP packet. RTCP multiplexed on the same port (RFC 5761:
/// second byte 192–223) is reported as [`RtpError::Rtcp`].
pub fn parse_rtp(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if buf.len() < 12 {
        return Err(RtpError::TooShort(buf.len()));
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    if (192..=223).contains(&buf[1]) {
        return Err(RtpError::Rtcp(buf[1]));
    }
    let padding = buf[0] & 0x20 != 0;
    let has_extension = buf[0] & 0x10 != 0;
    let csrc_count = usize::from(buf[0] & 0x0f);
    let mut pos = 12;
    let mut csrc = Vec::with_capacity(csrc_count);
    for i in 0..csrc_count {
        csrc.push(be32(buf, 12 + 4 * i).ok_or(RtpError::Truncated)?);
    }
    pos += 4 * csrc_count;
    let mut extension = None;
    if has_extension {
        let profile = be16(buf, pos).ok_or(RtpError::Truncated)?;
        let words = usize::from(be16(buf, pos + 2).ok_or(RtpError::Truncated)?);
        let start = pos + 4;
        let end = start + 4 * words;
        let data = buf.get(start..end).ok_or(RtpError::Truncated)?;
        extension = Some((profile, data));
        pos = end;
    }
    let mut end = buf.len();
    if pos > end {
        return Err(RtpError::Truncated);
    }
    if padding {
        let pad = buf[end - 1];
        if pad == 0 || usize::from(pad) > end - pos {
            return Err(RtpError::BadPadding(pad));
        }
        end -= usize::from(pad);
    }
    Ok(RtpPacket {
        version,
        padding,
        marker: buf[1] & 0x80 != 0,
        payload_type: buf[1] & 0x7f,
        sequence: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        csrc,
        extension,
        payload: &buf[pos..end],
    })
}

/// G.711 µ-law to 16-bit linear (ITU-T G.711, as in the reference `g711.c`).
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let mut t = (i32::from(u & 0x0f) << 3) + 0x84;
    t <<= (u & 0x70) >> 4;
    let v = if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 };
    v as i16
}

/// G.711 A-law to 16-bit linear.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    let v = if a & 0x80 != 0 { t } else { -t };
    v as i16
}

/// What a recorder decodes, and its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderConfig {
    /// Payload types decoded as µ-law.
    pub pcmu: Vec<u8>,
    /// Payload types decoded as A-law.
    pub pcma: Vec<u8>,
    /// The largest timestamp jump (either way) still read as the same
    /// timeline; beyond it the packet starts a new one, as a new SSRC does.
    pub max_gap: Duration,
    /// How long after a sample's position late packets may still land,
    /// for [`StreamRecorder::take_ready`].
    pub jitter: Duration,
    /// The most samples one stream records (from the call start).
    pub max_samples: u64,
}

impl Default for RecorderConfig {
    /// Static PCMU (0) and PCMA (8); everything else (telephone-event,
    /// comfort noise 13, other codecs) ignored; 5 s jumps; 1 s jitter;
    /// 4 hours.
    fn default() -> Self {
        RecorderConfig {
            pcmu: vec![0],
            pcma: vec![8],
            max_gap: Duration::from_secs(5),
            jitter: Duration::from_secs(1),
            max_samples: 4 * 3600 * u64::from(SAMPLE_RATE),
        }
    }
}

impl RecorderConfig {
    /// Decodes the payload type the answer chose (plus the static G.711
    /// types, which some clients send regardless); the negotiated
    /// telephone-event and comfort-noise types are never decoded, whatever
    /// number the offer gave them.
    pub fn for_stream(plan: &StreamPlan) -> RecorderConfig {
        let mut config = RecorderConfig::default();
        if let Some((pt, codec)) = plan.codec {
            match codec {
                Codec::Pcmu => config.pcmu.push(pt),
                Codec::Pcma => config.pcma.push(pt),
            }
        }
        let ignored = [plan.telephone_event, plan.comfort_noise, Some(13)];
        for list in [&mut config.pcmu, &mut config.pcma] {
            list.retain(|pt| !ignored.contains(&Some(*pt)));
            list.sort_unstable();
            list.dedup();
        }
        config
    }
}

/// What happened to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Its samples were placed at `position` (from the call start).
    Placed { position: u64, samples: usize },
    /// Not a payload type we decode (telephone-event, comfort noise...).
    Ignored,
    /// Its place was already taken out of the recorder.
    Late,
    /// Beyond [`RecorderConfig::max_samples`].
    OverLimit,
}

/// Counters for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    pub placed: u64,
    pub ignored: u64,
    pub late: u64,
    pub over_limit: u64,
    pub ssrc_changes: u64,
    /// Timestamp jumps beyond `max_gap` that started a new timeline.
    pub discontinuities: u64,
}

#[derive(Debug, Clone)]
struct Timeline {
    ssrc: u32,
    /// The highest timestamp seen and its extended (unwrapped) offset from
    /// the anchor.
    last_ts: u32,
    last_ext: i64,
    /// The absolute position of the anchor packet's timestamp.
    anchor_pos: i64,
}

/// One direction of a recorded call.
#[derive(Debug, Clone)]
pub struct StreamRecorder {
    config: RecorderConfig,
    /// Samples from `base` (absolute) onwards; earlier ones were taken.
    window: VecDeque<i16>,
    base: u64,
    /// One past the last sample written.
    end: u64,
    timeline: Option<Timeline>,
    stats: RecorderStats,
}

fn samples_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis().saturating_mul(u128::from(SAMPLE_RATE)) / 1000).unwrap_or(i64::MAX)
}

impl StreamRecorder {
    /// An empty recorder.
    pub fn new(config: RecorderConfig) -> StreamRecorder {
        StreamRecorder {
            config,
            window: VecDeque::new(),
            base: 0,
            end: 0,
            timeline: None,
            stats: RecorderStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> RecorderStats {
        self.stats
    }

    /// One past the last sample written, from the call start.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Parses and pushes one datagram.
    pub fn push_datagram(
        &mut self,
        datagram: &[u8],
        arrival: Option<Duration>,
    ) -> Result<PushOutcome, RtpError> {
        let packet = parse_rtp(datagram)?;
        Ok(self.push(&packet, arrival))
    }

    /// Places one packet. `arrival` is when it arrived since the call
    /// started (the listener's clock); without it, a new timeline starts
    /// where the stream ended.
    pub fn push(&mut self, packet: &RtpPacket, arrival: Option<Duration>) -> PushOutcome {
        let decode: fn(u8) -> i16 = if self.config.pcmu.contains(&packet.payload_type) {
            ulaw_to_linear
        } else if self.config.pcma.contains(&packet.payload_type) {
            alaw_to_linear
        } else {
            self.stats.ignored += 1;
            return PushOutcome::Ignored;
        };
        if packet.payload.is_empty() {
            self.stats.ignored += 1;
            return PushOutcome::Ignored;
        }
        let position = self.position(packet, arrival.map(samples_of));
        let Ok(position) = u64::try_from(position) else {
            self.stats.late += 1;
            return PushOutcome::Late;
        };
        if position < self.base {
            self.stats.late += 1;
            return PushOutcome::Late;
        }
        let count = packet.payload.len() as u64;
        if position + count > self.config.max_samples {
            self.stats.over_limit += 1;
            return PushOutcome::OverLimit;
        }
        let offset = (position - self.base) as usize;
        let needed = offset + packet.payload.len();
        if self.window.len() < needed {
            self.window.resize(needed, 0);
        }
        for (slot, byte) in self.window.range_mut(offset..needed).zip(packet.payload) {
            *slot = decode(*byte);
        }
        self.end = self.end.max(position + count);
        self.stats.placed += 1;
        PushOutcome::Placed {
            position,
            samples: packet.payload.len(),
        }
    }

    /// Where `packet` goes, in samples from the call start: along its
    /// stream's timeline, or where a new timeline starts (a new SSRC, or a
    /// jump of more than `max_gap` from the stream's end or from the
    /// packet's arrival at `arrival_pos`).
    fn position(&mut self, packet: &RtpPacket, arrival_pos: Option<i64>) -> i64 {
        let max_gap = samples_of(self.config.max_gap);
        let end = i64::try_from(self.end).unwrap_or(i64::MAX);
        let restart_pos = arrival_pos.map_or(end, |a| a.max(end));
        let restart = Timeline {
            ssrc: packet.ssrc,
            last_ts: packet.timestamp,
            last_ext: 0,
            anchor_pos: restart_pos,
        };
        match &mut self.timeline {
            Some(t) if t.ssrc == packet.ssrc => {
                let delta = i64::from(packet.timestamp.wrapping_sub(t.last_ts) as i32);
                let ext = t.last_ext + delta;
                let pos = t.anchor_pos + ext;
                let far_from_stream = pos > end + max_gap || pos < end - max_gap;
                let far_from_clock = arrival_pos.is_some_and(|a| pos > a + max_gap || pos < a - max_gap);
                if far_from_stream || far_from_clock {
                    self.stats.discontinuities += 1;
                    *t = restart;
                    restart_pos
                } else {
                    if delta > 0 {
                        t.last_ts = packet.timestamp;
                        t.last_ext = ext;
                    }
                    pos
                }
            }
            previous => {
                if previous.is_some() {
                    self.stats.ssrc_changes += 1;
                }
                *previous = Some(restart);
                restart_pos
            }
        }
    }

    /// Takes the samples before `position` (from the call start) out of the
    /// recorder, silence where nothing arrived; packets for them are late
    /// from now on. Call it with the same position on both directions to
    /// keep them aligned.
    pub fn take_until(&mut self, position: u64) -> Vec<i16> {
        let position = position.min(self.config.max_samples);
        if position <= self.base {
            return Vec::new();
        }
        let count = (position - self.base) as usize;
        let mut out: Vec<i16> = self.window.drain(..count.min(self.window.len())).collect();
        out.resize(count, 0);
        self.base = position;
        self.end = self.end.max(position);
        out
    }

    /// Takes what is older than the jitter allowance behind the newest
    /// sample.
    pub fn take_ready(&mut self) -> Vec<i16> {
        let jitter = samples_of(self.config.jitter) as u64;
        self.take_until(self.end.saturating_sub(jitter))
    }

    /// Takes everything still held.
    pub fn finish(&mut self) -> Vec<i16> {
        self.take_until(self.end)
    }

    /// The samples still held, from [`StreamRecorder::base`].
    pub fn samples(&self) -> Vec<i16> {
        let held = ((self.end - self.base) as usize).saturating_sub(self.window.len());
        self.window
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0, held))
            .collect()
    }

    /// The absolute position of the first sample still held.
    pub fn base(&self) -> u64 {
        self.base
    }
}

/// Interleaves two channels into 16-bit little-endian stereo frames, the
/// shorter padded with silence.
pub fn interleave(left: &[i16], right: &[i16]) -> Vec<u8> {
    let frames = left.len().max(right.len());
    let mut out = Vec::with_capacity(frames * 4);
    for i in 0..frames {
        out.extend_from_slice(&left.get(i).copied().unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&right.get(i).copied().unwrap_or(0).to_le_bytes());
    }
    out
}

/// The 44-byte header of a 16-bit PCM WAV file. `data_bytes` is the size
/// of the sample data (use 0 when writing incrementally, then
/// [`finalize_wav_header`]).
pub fn wav_header(channels: u16, sample_rate: u32, data_bytes: u32) -> [u8; 44] {
    let block_align = channels * 2;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_bytes.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

/// Why a WAV header could not be finalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("not a 44-byte canonical WAV header")]
    NotCanonical,
}

/// Rewrites the RIFF and data sizes of a canonical header (as written by
/// [`wav_header`]) for a file of `file_len` bytes, header included. Sizes
/// past 4 GiB are clamped (the format cannot say more), and a data size is
/// rounded down to whole frames.
pub fn finalize_wav_header(header: &mut [u8], file_len: u64) -> Result<(), WavError> {
    if header.len() < 44
        || &header[0..4] != b"RIFF"
        || &header[8..12] != b"WAVE"
        || &header[36..40] != b"data"
    {
        return Err(WavError::NotCanonical);
    }
    let block_align = u64::from(u16::from_le_bytes([header[32], header[33]]).max(1));
    let data = file_len.saturating_sub(44).min(u64::from(u32::MAX) - 36);
    let data = data - data % block_align;
    header[4..8].copy_from_slice(&((data + 36) as u32).to_le_bytes());
    header[40..44].copy_from_slice(&(data as u32).to_le_bytes());
    Ok(())
}

/// A whole stereo 16-bit 8 kHz WAV file from two recorders' held samples,
/// aligned by position (left: the first m-line, right: the second).
pub fn stereo_wav(left: &StreamRecorder, right: &StreamRecorder) -> Vec<u8> {
    let start = left.base().min(right.base());
    let end = left.end().max(right.end());
    let channel = |r: &StreamRecorder| -> Vec<i16> {
        let mut v = vec![0i16; (r.base() - start) as usize];
        v.extend(r.samples());
        v.resize((end - start) as usize, 0);
        v
    };
    let data = interleave(&channel(left), &channel(right));
    let mut out = wav_header(2, SAMPLE_RATE, u32::try_from(data.len()).unwrap_or(u32::MAX)).to_vec();
    out.extend_from_slice(&data);
    out
}
