//! A call-creation body (`{"metadata": {...}}`) through the metadata rule. A
//! value is refused only when it has no text form; otherwise every key is
//! kept, a string unchanged and a number or a boolean exactly as written.
#![no_main]

use std::collections::BTreeMap;

use callmeta_core::call_metadata::from_json;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
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
    match from_json(body.metadata) {
        Ok(metadata) => {
            assert_eq!(metadata.len(), sent.len());
            for (key, raw) in &sent {
                let text = &metadata[key];
                match serde_json::from_str::<Value>(raw).expect("the raw value is JSON") {
                    Value::String(s) => assert_eq!(text, &s),
                    // Numbers and booleans: their JSON text, byte for byte.
                    Value::Number(_) | Value::Bool(_) => assert_eq!(text, raw.trim()),
                    other => panic!("{other} was accepted as {text:?}"),
                }
            }
        }
        Err(e) => {
            let raw = sent.get(&e.key).expect("the refused key was sent");
            assert!(matches!(
                serde_json::from_str::<Value>(raw),
                Ok(Value::Null | Value::Array(_) | Value::Object(_))
            ));
        }
    }
});
