//! A stream of RTP packets (length-prefixed) through one recorder, then
//! drained to WAV bytes.
#![no_main]

use std::time::Duration;

use callmeta_siprec::media::{RecorderConfig, StreamRecorder, stereo_wav};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = RecorderConfig { max_samples: 8000 * 30, ..RecorderConfig::default() };
    let mut recorder = StreamRecorder::new(config);
    let mut rest = data;
    let mut clock = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (packet, tail) = tail.split_at(len);
        clock += 20;
        let arrival = (clock % 3 != 0).then(|| Duration::from_millis(clock));
        let _ = recorder.push_datagram(packet, arrival);
        rest = tail;
    }
    let other = StreamRecorder::new(RecorderConfig::default());
    let _ = stereo_wav(&recorder, &other);
    let _ = recorder.take_ready();
    let _ = recorder.finish();
});
