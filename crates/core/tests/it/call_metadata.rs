//! A call's metadata from the JSON a client sends: every value as text, or
//! the key whose value has none.

use std::collections::BTreeMap;

use callmeta_core::call_metadata::from_json;
use expect_test::{Expect, expect};

fn check(json: &str, expect: Expect) {
    let object: BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(json).expect("test JSON");
    let out = match from_json(object) {
        Ok(metadata) => format!("{metadata:?}"),
        Err(e) => format!("error: {e}"),
    };
    expect.assert_eq(&out);
}

#[test]
fn strings_are_kept_as_sent() {
    check(
        r#"{"agent_id": " cindy ", "city": "Zürich", "empty": ""}"#,
        expect![[r#"{"agent_id": " cindy ", "city": "Zürich", "empty": ""}"#]],
    );
}

#[test]
fn numbers_are_kept_exactly_as_written_and_booleans_as_text() {
    check(
        r#"{"n": 42, "neg": -7, "big": 9007199254740993, "f": 1.50, "e": 1e3, "tiny": 1e-400, "yes": true, "no": false}"#,
        expect![[
            r#"{"big": "9007199254740993", "e": "1e3", "f": "1.50", "n": "42", "neg": "-7", "no": "false", "tiny": "1e-400", "yes": "true"}"#
        ]],
    );
}

#[test]
fn values_without_a_text_form_are_refused_by_key() {
    check(
        r#"{"a": "x", "b": null}"#,
        expect!["error: metadata.b is null; metadata values must be strings"],
    );
    check(
        r#"{"list": [1]}"#,
        expect!["error: metadata.list is an array; metadata values must be strings"],
    );
    check(
        r#"{"obj": {"k": 1}}"#,
        expect!["error: metadata.obj is an object; metadata values must be strings"],
    );
}

#[test]
fn a_string_that_is_no_unicode_text_is_refused() {
    check(
        r#"{"a": "x\udc00y"}"#,
        expect!["error: metadata.a is a string that is not valid Unicode; metadata values must be strings"],
    );
}
