//! `"as_of"`: how a table says which version enriches a call, and the
//! provenance a result keeps (the choice itself is made by the application,
//! from the store's activation history).

use callmeta_core::csv::{AsOf, TableOptions};
use callmeta_core::enrich::{AsOfChoice, AsOfReason, EnrichmentResult};
use expect_test::expect;

#[test]
fn options_read_as_of() {
    let render = |json: &str| match serde_json::from_str::<TableOptions>(json) {
        Ok(o) => format!(
            "{} stored as {}",
            o.as_of.as_str(),
            serde_json::to_string(&o).unwrap()
        ),
        Err(e) => format!("error: {e}"),
    };
    let all = [
        r#"{"key": "agent_id"}"#,
        r#"{"key": "agent_id", "as_of": "processing"}"#,
        r#"{"key": "agent_id", "as_of": "call_time"}"#,
        r#"{"key": "agent_id", "as_of": "yesterday"}"#,
    ];
    let out: Vec<String> = all
        .iter()
        .map(|json| format!("{json}\n  {}", render(json)))
        .collect();
    expect![[r#"
        {"key": "agent_id"}
          processing stored as {"key":"agent_id","match":"exact","region":null,"duplicates":"first","bad_rows":"reject"}
        {"key": "agent_id", "as_of": "processing"}
          processing stored as {"key":"agent_id","match":"exact","region":null,"duplicates":"first","bad_rows":"reject"}
        {"key": "agent_id", "as_of": "call_time"}
          call_time stored as {"key":"agent_id","match":"exact","region":null,"duplicates":"first","bad_rows":"reject","as_of":"call_time"}
        {"key": "agent_id", "as_of": "yesterday"}
          error: unknown variant `yesterday`, expected `processing` or `call_time` at line 1 column 40"#]]
    .assert_eq(&out.join("\n"));
    let o: TableOptions = serde_json::from_str(r#"{"key": "k", "as_of": "call_time"}"#).unwrap();
    assert_eq!(o.as_of, AsOf::CallTime);
}

/// A result stored before results had `as_of` reads back without it; one
/// with it keeps it.
#[test]
fn results_keep_their_provenance() {
    let old = r#"{"table":"crm","version":"v1","status":"matched","key":"agent_id","key_value":"alice",
        "normalized_key":"alice","added":{"team":"diamond"},"collisions":[],"at_ms":5}"#;
    let mut result: EnrichmentResult = serde_json::from_str(old).unwrap();
    assert_eq!(result.as_of, None);
    result.as_of = Some(AsOfChoice {
        call_ms: 4,
        reason: AsOfReason::ActiveAtCallTime,
        activated_ms: Some(3),
    });
    let json = serde_json::to_string(&result).unwrap();
    expect![[r#"{"table":"crm","version":"v1","status":"matched","key":"agent_id","key_value":"alice","normalized_key":"alice","added":{"team":"diamond"},"collisions":[],"at_ms":5,"as_of":{"call_ms":4,"reason":"active_at_call_time","activated_ms":3}}"#]]
        .assert_eq(&json);
    let back: EnrichmentResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back, result);
}
