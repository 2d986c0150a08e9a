//! RTP parsing, G.711 decoding, the stream recorder and WAV output.

use std::time::Duration;

use callmeta_siprec::media::{
    PushOutcome, RecorderConfig, RtpError, StreamRecorder, alaw_to_linear, finalize_wav_header, interleave,
    parse_rtp, stereo_wav, ulaw_to_linear, wav_header,
};
use callmeta_siprec::sdp::{self};

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// µ-law 0x80 decodes to 32124: a recognisable non-silent sample.
const LOUD: u8 = 0x80;

fn push(r: &mut StreamRecorder, seq: u16, ts: u32, ssrc: u32, n: usize) -> PushOutcome {
    r.push_datagram(&rtp(0, seq, ts, ssrc, &vec![LOUD; n]), None)
        .expect("valid rtp")
}

#[test]
fn g711_decode_table() {
    for (byte, linear) in [
        (0x00, -32124),
        (0x01, -31100),
        (0x0f, -16764),
        (0x7e, -8),
        (0x7f, 0),
        (0x80, 32124),
        (0x8f, 16764),
        (0xfe, 8),
        (0xff, 0),
    ] {
        assert_eq!(ulaw_to_linear(byte), linear, "µ-law {byte:#04x}");
    }
    for (byte, linear) in [
        (0x00, -5504),
        (0x80, 5504),
        (0x55, -8),
        (0xd5, 8),
        (0x2a, -32256),
        (0xaa, 32256),
    ] {
        assert_eq!(alaw_to_linear(byte), linear, "A-law {byte:#04x}");
    }
    for b in 0..=255u8 {
        assert_eq!(
            ulaw_to_linear(b),
            -ulaw_to_linear(b ^ 0x80),
            "µ-law sign symmetry {b:#04x}"
        );
        assert_eq!(
            alaw_to_linear(b),
            -alaw_to_linear(b ^ 0x80),
            "A-law sign symmetry {b:#04x}"
        );
    }
    // Magnitude grows with the code within each sign (µ-law codes are
    // inverted, A-law codes are even-bit inverted).
    let mags: Vec<i16> = (0x80..=0xffu8).rev().map(ulaw_to_linear).collect();
    assert!(mags.windows(2).all(|w| w[0] < w[1]));
    let amags: Vec<i16> = (0x80..=0xffu8).map(|b| alaw_to_linear(b ^ 0x55 ^ 0x55)).collect();
    assert_eq!(amags.len(), 128);
}

#[test]
fn rtp_headers() {
    let mut p = vec![0x80 | 0x20 | 0x10 | 2, 0x80 | 8];
    p.extend_from_slice(&7u16.to_be_bytes());
    p.extend_from_slice(&1000u32.to_be_bytes());
    p.extend_from_slice(&0xdeadbeefu32.to_be_bytes());
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&2u32.to_be_bytes());
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]);
    p.extend_from_slice(&[1, 2, 3, 0, 0, 3]);
    let r = parse_rtp(&p).expect("parses");
    assert_eq!(
        (r.version, r.marker, r.payload_type, r.sequence, r.timestamp),
        (2, true, 8, 7, 1000)
    );
    assert_eq!(r.ssrc, 0xdeadbeef);
    assert_eq!(r.csrc, [1, 2]);
    assert_eq!(r.extension, Some((0xbede, &[9u8, 9, 9, 9][..])));
    assert_eq!(r.payload, [1, 2, 3]);

    assert_eq!(parse_rtp(&[0x80; 11]), Err(RtpError::TooShort(11)));
    assert_eq!(parse_rtp(&[0x40; 12]), Err(RtpError::BadVersion(1)));
    assert_eq!(
        parse_rtp(&rtp(200 - 128 + 128, 0, 0, 0, &[])),
        Err(RtpError::Rtcp(200))
    );
    assert_eq!(
        parse_rtp(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(RtpError::Truncated)
    );
    assert_eq!(
        parse_rtp(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
        Err(RtpError::Truncated)
    );
    assert_eq!(
        parse_rtp(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5]),
        Err(RtpError::BadPadding(5))
    );
    assert_eq!(
        parse_rtp(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(RtpError::BadPadding(0))
    );
}

#[test]
fn in_order_gaps_are_silence() {
    let mut r = StreamRecorder::new(RecorderConfig::default());
    assert_eq!(
        push(&mut r, 1, 5000, 1, 160),
        PushOutcome::Placed {
            position: 0,
            samples: 160
        }
    );
    assert_eq!(
        push(&mut r, 2, 5160, 1, 160),
        PushOutcome::Placed {
            position: 160,
            samples: 160
        }
    );
    // Packet 3 lost: 160 samples of silence.
    assert_eq!(
        push(&mut r, 4, 5480, 1, 160),
        PushOutcome::Placed {
            position: 480,
            samples: 160
        }
    );
    let s = r.samples();
    assert_eq!(s.len(), 640);
    assert!(s[..320].iter().all(|&x| x == 32124));
    assert!(s[320..480].iter().all(|&x| x == 0));
    assert!(s[480..].iter().all(|&x| x == 32124));
}

#[test]
fn reordered_and_duplicated_packets_land_in_place() {
    let order = [(1u16, 0u32), (3, 320), (2, 160), (2, 160), (4, 480), (1, 0)];
    let mut r = StreamRecorder::new(RecorderConfig::default());
    for (seq, ts) in order {
        let payload: Vec<u8> = (0..160)
            .map(|i| {
                if i == 0 {
                    0x00
                } else {
                    LOUD.wrapping_add(seq as u8)
                }
            })
            .collect();
        r.push_datagram(&rtp(0, seq, 90_000 + ts, 7, &payload), None)
            .expect("rtp");
    }
    let s = r.samples();
    assert_eq!(s.len(), 640, "duplicates add nothing");
    for k in 0..4 {
        assert_eq!(s[k * 160], -32124, "packet {k} starts at its timestamp");
        assert_eq!(s[k * 160 + 1], ulaw_to_linear(LOUD.wrapping_add(k as u8 + 1)));
    }
}

#[test]
fn timestamps_wrap_around() {
    let mut r = StreamRecorder::new(RecorderConfig::default());
    push(&mut r, 1, u32::MAX - 159, 1, 160);
    assert_eq!(
        push(&mut r, 2, 0, 1, 160),
        PushOutcome::Placed {
            position: 160,
            samples: 160
        }
    );
    assert_eq!(
        push(&mut r, 3, 160, 1, 160),
        PushOutcome::Placed {
            position: 320,
            samples: 160
        }
    );
    assert_eq!(r.stats().discontinuities, 0);
}

#[test]
fn a_new_ssrc_continues_at_the_current_position_or_its_arrival() {
    let mut r = StreamRecorder::new(RecorderConfig::default());
    push(&mut r, 1, 1000, 0xaaaa, 160);
    push(&mut r, 2, 1160, 0xaaaa, 160);
    assert_eq!(
        push(&mut r, 500, 77_777_777, 0xbbbb, 160),
        PushOutcome::Placed {
            position: 320,
            samples: 160
        }
    );
    assert_eq!(
        push(&mut r, 501, 77_777_937, 0xbbbb, 160),
        PushOutcome::Placed {
            position: 480,
            samples: 160
        }
    );
    assert_eq!(r.stats().ssrc_changes, 1);
    // With arrival times: the new source starts when it arrived.
    let p = rtp(0, 9, 42, 0xcccc, &[LOUD; 160]);
    let outcome = r.push_datagram(&p, Some(Duration::from_secs(1))).expect("rtp");
    assert_eq!(
        outcome,
        PushOutcome::Placed {
            position: 8000,
            samples: 160
        }
    );
    assert!(r.samples()[640..8000].iter().all(|&x| x == 0));
}

#[test]
fn streams_start_at_their_arrival_and_stay_aligned() {
    let mut left = StreamRecorder::new(RecorderConfig::default());
    let mut right = StreamRecorder::new(RecorderConfig::default());
    for k in 0..10u32 {
        let at = Duration::from_millis(20 * u64::from(k));
        left.push_datagram(&rtp(0, k as u16, 160 * k, 1, &[LOUD; 160]), Some(at))
            .expect("rtp");
        // The right side starts 100 ms later, with a random timestamp base.
        let at = Duration::from_millis(100 + 20 * u64::from(k));
        right
            .push_datagram(&rtp(8, k as u16, 3_000_000 + 160 * k, 2, &[0xd5; 160]), Some(at))
            .expect("rtp");
    }
    assert_eq!(left.end(), 1600);
    assert_eq!(right.end(), 800 + 1600);
    let wav = stereo_wav(&left, &right);
    assert_eq!(wav.len(), 44 + 2400 * 4);
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(
        u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]),
        36 + 2400 * 4
    );
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "stereo");
    assert_eq!(u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]), 8000);
    assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16);
    let frame = |i: usize| {
        let o = 44 + 4 * i;
        (
            i16::from_le_bytes([wav[o], wav[o + 1]]),
            i16::from_le_bytes([wav[o + 2], wav[o + 3]]),
        )
    };
    assert_eq!(frame(0), (32124, 0));
    assert_eq!(frame(800), (32124, 8));
    assert_eq!(frame(1700), (0, 8));

    // Written incrementally instead: drain both to the same positions.
    let (mut l2, mut r2) = (left.clone(), right.clone());
    let mut file = wav_header(2, 8000, 0).to_vec();
    for until in [500u64, 1000, 2000] {
        file.extend(interleave(&l2.take_until(until), &r2.take_until(until)));
    }
    let end = l2.end().max(r2.end());
    file.extend(interleave(&l2.take_until(end), &r2.take_until(end)));
    let len = file.len() as u64;
    finalize_wav_header(&mut file, len).expect("canonical header");
    assert_eq!(file, wav);
    assert!(finalize_wav_header(&mut [0u8; 10], 100).is_err());
}

#[test]
fn telephone_event_and_comfort_noise_are_ignored() {
    let offer = sdp::parse(b"m=audio 1 RTP/AVP 8 96 13\na=rtpmap:96 telephone-event/8000\n").expect("sdp");
    let plan = &sdp::plan(&offer)[0];
    let mut r = StreamRecorder::new(RecorderConfig::for_stream(plan));
    assert_eq!(
        r.push_datagram(&rtp(96, 1, 0, 1, &[1, 2, 3, 4]), None),
        Ok(PushOutcome::Ignored)
    );
    assert_eq!(
        r.push_datagram(&rtp(13, 2, 0, 1, &[40]), None),
        Ok(PushOutcome::Ignored)
    );
    assert_eq!(
        r.push_datagram(&rtp(101, 3, 0, 1, &[40]), None),
        Ok(PushOutcome::Ignored)
    );
    assert!(matches!(
        r.push_datagram(&rtp(8, 4, 0, 1, &[0xd5; 160]), None),
        Ok(PushOutcome::Placed { .. })
    ));
    assert_eq!(r.stats().ignored, 3);
    assert_eq!(r.end(), 160);
}

#[test]
fn hostile_timestamps_cannot_grow_the_recording() {
    let config = RecorderConfig {
        max_samples: 8000 * 60,
        ..RecorderConfig::default()
    };
    let mut r = StreamRecorder::new(config);
    let mut ts = 0u32;
    for seq in 0..2000u16 {
        // Each packet jumps a quarter of the timestamp space.
        ts = ts.wrapping_add(1 << 30);
        r.push_datagram(&rtp(0, seq, ts, 1, &[LOUD; 160]), None)
            .expect("rtp");
    }
    assert!(r.end() <= 8000 * 60);
    assert!(r.stats().discontinuities > 0);
    // With arrival times, timestamps far ahead of the clock restart at the
    // clock.
    let mut r = StreamRecorder::new(RecorderConfig::default());
    r.push_datagram(&rtp(0, 1, 0, 1, &[LOUD; 160]), Some(Duration::ZERO))
        .expect("rtp");
    let out = r
        .push_datagram(
            &rtp(0, 2, 8000 * 4, 1, &[LOUD; 160]),
            Some(Duration::from_millis(20)),
        )
        .expect("rtp");
    assert_eq!(
        out,
        PushOutcome::Placed {
            position: 32_000,
            samples: 160
        },
        "4 s ahead is within the allowed gap"
    );
    let out = r
        .push_datagram(
            &rtp(0, 3, 8000 * 3600, 1, &[LOUD; 160]),
            Some(Duration::from_millis(40)),
        )
        .expect("rtp");
    assert_eq!(
        out,
        PushOutcome::Placed {
            position: 32_000 + 160,
            samples: 160
        },
        "an hour ahead restarts"
    );
    let limited = RecorderConfig {
        max_samples: 100,
        ..RecorderConfig::default()
    };
    let mut r = StreamRecorder::new(limited);
    assert_eq!(push(&mut r, 1, 0, 1, 160), PushOutcome::OverLimit);
}

#[test]
fn packets_for_taken_samples_are_late() {
    let mut r = StreamRecorder::new(RecorderConfig::default());
    push(&mut r, 1, 0, 1, 160);
    push(&mut r, 3, 320, 1, 160);
    assert_eq!(r.take_until(400).len(), 400);
    assert_eq!(push(&mut r, 2, 160, 1, 160), PushOutcome::Late);
    assert_eq!(r.take_ready().len(), 0, "within the jitter allowance");
    assert_eq!(r.finish().len(), 80);
}
