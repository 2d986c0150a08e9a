//! A call-creation body (`{"metadata": {...}}`) through the metadata rule. A
//! value is refused only when it has no text form; otherwise every key is
//! kept, a string unchanged and a number or a boolean exactly as written.
#![no_main]

use std::collections::BTreeMap;

use callmeta_core::call_metadata::from_json;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    // Deserialised as the API does: the metadata object into a map of raw values.
    #[derive(serde::Deserialize)]
    struct Body {
        metadata: BTreeMap<String, Box<RawValue>>,
    }
    let Ok(body) = serde_json::from_slice::<Body>(data) else { return };
    let sent: BTreeMap<String, String> = body
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.get().to_string()))
        .collect();
    // What a raw value is, by its first byte (serde_json has checked its
    // syntax); a string is text only if it decodes (no lone surrogate).
    let decodes = |raw: &str| serde_json::from_str::<String>(raw).ok();
    match from_json(body.metadata) {
        Ok(metadata) => {
            assert_eq!(metadata.len(), sent.len());
            for (key, raw) in &sent {
                let (raw, text) = (raw.trim(), &metadata[key]);
                match raw.as_bytes().first() {
                    Some(b'"') => assert_eq!(Some(text.clone()), decodes(raw), "{raw}"),
                    // Numbers (even beyond a double's range) and booleans:
                    // their JSON text, byte for byte.
                    Some(b't' | b'f' | b'-' | b'0'..=b'9') => assert_eq!(text, raw),
                    _ => panic!("{raw} was accepted as {text:?}"),
                }
            }
        }
        Err(e) => {
            let raw = sent.get(&e.key).expect("the refused key was sent").trim();
            let refusable = match raw.as_bytes().first() {
                Some(b'n' | b'[' | b'{') => true,
                Some(b'"') => decodes(raw).is_none(),
                _ => false,
            };
            assert!(refusable, "{raw} was refused: {e}");
        }
    }
});
