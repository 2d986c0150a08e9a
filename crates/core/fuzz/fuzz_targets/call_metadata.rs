//! A call-creation body (`{"metadata": {...}}`) through the metadata rule. A
//! value is refused only when it has no text form; otherwise every key is
//! kept, a string unchanged and a number as text that reads back as the same
//! number.
#![no_main]

use std::collections::BTreeMap;

use callmeta_core::call_metadata::from_json;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // Deserialised as the API does: the metadata object into a map of values.
    #[derive(serde::Deserialize)]
    struct Body {
        metadata: BTreeMap<String, Value>,
    }
    let Ok(body) = serde_json::from_slice::<Body>(data) else { return };
    let sent = body.metadata.clone();
    match from_json(body.metadata) {
        Ok(metadata) => {
            assert_eq!(metadata.len(), sent.len());
            for (key, value) in &sent {
                let text = &metadata[key];
                match value {
                    Value::String(s) => assert_eq!(text, s),
                    Value::Bool(b) => assert_eq!(text, &b.to_string()),
                    // The text is the number as the server holds it: an
                    // integer exactly, a float as the shortest text that reads
                    // back (correctly rounded, by the standard library) as
                    // the same double.
                    Value::Number(n) => {
                        if let Some(i) = n.as_i64() {
                            assert_eq!(text.parse::<i64>().ok(), Some(i), "{n} became {text}");
                        } else if let Some(u) = n.as_u64() {
                            assert_eq!(text.parse::<u64>().ok(), Some(u), "{n} became {text}");
                        } else {
                            let f = n.as_f64().expect("a JSON number is an integer or a double");
                            assert_eq!(text.parse::<f64>().ok(), Some(f), "{n} became {text}");
                        }
                    }
                    other => panic!("{other} was accepted as {text:?}"),
                }
            }
        }
        Err(e) => assert!(matches!(
            sent.get(&e.key),
            Some(Value::Null | Value::Array(_) | Value::Object(_))
        )),
    }
});
