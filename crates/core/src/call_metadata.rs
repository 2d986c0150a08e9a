//! A call's own metadata from the JSON object a client sends
//! (`{"metadata": {...}}` when a call is created through the API, or an
//! FTP/SFTP drop's `NAME.json` sidecar).
//!
//! Every value becomes text, because metadata is compared and looked up as
//! text: a string is kept as sent, a number exactly as it was written
//! (`9007199254740993` and `1.50` stay that: a number is never read into a
//! float and printed back), a boolean as `true` or `false`. Null, arrays and
//! objects have no text form: [`from_json`] refuses them, naming the key,
//! rather than dropping or flattening them, so nothing a client sends is
//! silently lost or reshaped.

use serde_json::value::RawValue;

use crate::enrich::Metadata;

/// A metadata value that has no text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata.{key} is {kind}; metadata values must be strings")]
pub struct MetadataValueError {
    /// The offending key, as sent.
    pub key: String,
    /// `null`, `an array` or `an object`.
    pub kind: &'static str,
}

/// One JSON value's text, or what it is when it has none (`null`, `an
/// array`, `an object`, or a string that is no Unicode text: a lone
/// surrogate escape such as `"\udc00"` passes JSON's syntax but not its
/// decoding). `raw` is JSON already parsed by serde_json.
pub fn text_of(raw: &RawValue) -> Result<String, &'static str> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text).map_err(|_| "a string that is not valid Unicode"),
        Some(b'n') => Err("null"),
        Some(b'[') => Err("an array"),
        Some(b'{') => Err("an object"),
        _ => Ok(text.to_string()),
    }
}

/// The metadata of the JSON object's entries, or the first entry (in the
/// order given) whose value is not a string, a number or a boolean.
pub fn from_json(
    object: impl IntoIterator<Item = (String, Box<RawValue>)>,
) -> Result<Metadata, MetadataValueError> {
    let mut metadata = Metadata::new();
    for (key, value) in object {
        match text_of(&value) {
            Ok(text) => {
                metadata.insert(key, text);
            }
            Err(kind) => return Err(MetadataValueError { key, kind }),
        }
    }
    Ok(metadata)
}
