//! A call's own metadata from the JSON object a client sends
//! (`{"metadata": {...}}` when a call is created through the API).
//!
//! Every value becomes text, because metadata is compared and looked up as
//! text: a string is kept as sent, a number or a boolean becomes its JSON
//! text (`42`, `1.5`, `true`). Null, arrays and objects are refused, naming
//! the key, rather than dropped or flattened, so nothing a client sends is
//! silently lost or reshaped.

use serde_json::Value;

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

/// The metadata of the JSON object's entries, or the first entry (by key
/// order of `object`) whose value is not a string, a number or a boolean.
pub fn from_json(object: impl IntoIterator<Item = (String, Value)>) -> Result<Metadata, MetadataValueError> {
    let mut metadata = Metadata::new();
    for (key, value) in object {
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => return Err(MetadataValueError { key, kind: "null" }),
            Value::Array(_) => {
                return Err(MetadataValueError {
                    key,
                    kind: "an array",
                });
            }
            Value::Object(_) => {
                return Err(MetadataValueError {
                    key,
                    kind: "an object",
                });
            }
        };
        metadata.insert(key, text);
    }
    Ok(metadata)
}
