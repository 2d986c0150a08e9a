//! A body split with a boundary taken from the input's first line.
#![no_main]

use callmeta_siprec::multipart;
use callmeta_siprec::sip::MediaType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"multipart/mixed;boundary=b"[..], data),
    };
    let content_type = MediaType::parse(&String::from_utf8_lossy(first));
    if let Ok(parts) = multipart::split(content_type.as_ref(), body) {
        for part in parts {
            let _ = (part.content_type(), part.disposition());
        }
    }
});
