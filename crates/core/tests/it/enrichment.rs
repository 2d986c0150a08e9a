//! Calls enriched from reference tables: statuses, matching modes, collisions.

use std::fmt::Write as _;

use callmeta_core::csv::{self, Limits};
use callmeta_core::enrich::{self, EnrichmentResult, Metadata, TableView};
use callmeta_core::index::TableIndex;
use expect_test::{Expect, expect};

use crate::options;

const CRM: &str = "| agent_id | team_name | expertise | city |
|---|---|---|---|
| alice | diamond | sales | Helsinki |
| bob | ruby | support | Helsinki |
| cindy | diamond | sales | Helsinki |
| dylan | saphire | sales | Cape Town |
";

fn table(csv_text: &str, options_json: &str) -> TableIndex {
    csv::ingest(csv_text.as_bytes(), &options(options_json), &Limits::default())
        .expect("table ingests")
        .index
}

fn metadata(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn render(own: &Metadata, results: &[EnrichmentResult]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(
            out,
            "{} v={} {:?} {}={:?} normalized={:?} at={}",
            r.table,
            r.version.as_deref().unwrap_or("-"),
            r.status,
            r.key,
            r.key_value,
            r.normalized_key,
            r.at_ms
        );
        for (k, v) in &r.added {
            let _ = writeln!(out, "  + {k}={v}");
        }
        for c in &r.collisions {
            let _ = writeln!(
                out,
                "  ! {}: kept {:?} from {}, dropped {:?}",
                c.key,
                c.kept_value,
                c.kept_from.as_deref().unwrap_or("the call"),
                c.dropped_value
            );
        }
    }
    let merged = enrich::merged_metadata(own, results);
    let _ = writeln!(out, "metadata: {merged:?}");
    out
}

fn check(own: &[(&str, &str)], tables: &[TableView<'_>], expect: Expect) {
    let own = metadata(own);
    let results = enrich::enrich(&own, tables, 1_769_776_496_000);
    assert_eq!(results.len(), tables.len());
    expect.assert_eq(&render(&own, &results));
}

fn view<'a>(index: Option<&'a TableIndex>, key: &'a str) -> TableView<'a> {
    TableView {
        table: "crm",
        key_column: key,
        version: index.map(|_| "v1"),
        index,
    }
}

#[test]
fn the_spec_example() {
    let crm = table(CRM, r#"{"key": "agent_id"}"#);
    check(
        &[
            ("datetime", "2026-01-30T12:34:56Z"),
            ("phonenumber", "+33102030405"),
            ("agent_id", "cindy"),
        ],
        &[view(Some(&crm), "agent_id")],
        expect![[r#"
            crm v=v1 Matched agent_id=Some("cindy") normalized=Some("cindy") at=1769776496000
              + city=Helsinki
              + expertise=sales
              + team_name=diamond
            metadata: {"agent_id": "cindy", "city": "Helsinki", "datetime": "2026-01-30T12:34:56Z", "expertise": "sales", "phonenumber": "+33102030405", "team_name": "diamond"}
        "#]],
    );
}

#[test]
fn statuses() {
    let crm = table(CRM, r#"{"key": "agent_id"}"#);
    let amb = table(
        "agent_id,team\nalice,red\nalice,blue\n",
        r#"{"key": "agent_id", "duplicates": "ambiguous"}"#,
    );
    check(
        &[("agent_id", "zoe")],
        &[view(Some(&crm), "agent_id")],
        expect![[r#"
        crm v=v1 NoMatch agent_id=Some("zoe") normalized=Some("zoe") at=1769776496000
        metadata: {"agent_id": "zoe"}
    "#]],
    );
    check(
        &[("agent", "alice")],
        &[view(Some(&crm), "agent_id")],
        expect![[r#"
        crm v=v1 KeyMissing agent_id=None normalized=None at=1769776496000
        metadata: {"agent": "alice"}
    "#]],
    );
    check(
        &[("agent_id", "  ")],
        &[view(Some(&crm), "agent_id")],
        expect![[r#"
        crm v=v1 KeyMissing agent_id=Some("  ") normalized=None at=1769776496000
        metadata: {"agent_id": "  "}
    "#]],
    );
    check(
        &[("agent_id", "alice")],
        &[view(Some(&amb), "agent_id")],
        expect![[r#"
        crm v=v1 Ambiguous agent_id=Some("alice") normalized=Some("alice") at=1769776496000
        metadata: {"agent_id": "alice"}
    "#]],
    );
    check(
        &[("agent_id", "alice")],
        &[view(None, "agent_id")],
        expect![[r#"
        crm v=- NoVersion agent_id=Some("alice") normalized=None at=1769776496000
        metadata: {"agent_id": "alice"}
    "#]],
    );
    // Exact matching trims but keeps case.
    check(
        &[("agent_id", " bob ")],
        &[view(Some(&crm), "agent_id")],
        expect![[r#"
        crm v=v1 Matched agent_id=Some(" bob ") normalized=Some("bob") at=1769776496000
          + city=Helsinki
          + expertise=support
          + team_name=ruby
        metadata: {"agent_id": " bob ", "city": "Helsinki", "expertise": "support", "team_name": "ruby"}
    "#]],
    );
    check(
        &[("agent_id", "Bob")],
        &[view(Some(&crm), "agent_id")],
        expect![[r#"
        crm v=v1 NoMatch agent_id=Some("Bob") normalized=Some("Bob") at=1769776496000
        metadata: {"agent_id": "Bob"}
    "#]],
    );
}

#[test]
fn phone_matching() {
    let by_phone = table(
        "phonenumber,account_tier\n01 02 03 04 05,gold\n+33 6 12 34 56 78,silver\n",
        r#"{"key": "phonenumber", "match": "phone", "region": "FR"}"#,
    );
    check(
        &[("phonenumber", "+33102030405")],
        &[view(Some(&by_phone), "phonenumber")],
        expect![[r#"
        crm v=v1 Matched phonenumber=Some("+33102030405") normalized=Some("+33102030405") at=1769776496000
          + account_tier=gold
        metadata: {"account_tier": "gold", "phonenumber": "+33102030405"}
    "#]],
    );
    check(
        &[("phonenumber", "06.12.34.56.78")],
        &[view(Some(&by_phone), "phonenumber")],
        expect![[r#"
        crm v=v1 Matched phonenumber=Some("06.12.34.56.78") normalized=Some("+33612345678") at=1769776496000
          + account_tier=silver
        metadata: {"account_tier": "silver", "phonenumber": "06.12.34.56.78"}
    "#]],
    );
    check(
        &[("phonenumber", "anonymous")],
        &[view(Some(&by_phone), "phonenumber")],
        expect![[r#"
        crm v=v1 NoMatch phonenumber=Some("anonymous") normalized=None at=1769776496000
        metadata: {"phonenumber": "anonymous"}
    "#]],
    );
}

#[test]
fn case_insensitive_matching() {
    let streets = table(
        "street,district\nstraße,Mitte\nRUE DE LA PAIX,2e\n",
        r#"{"key": "street", "match": "case_insensitive"}"#,
    );
    check(
        &[("street", "STRASSE")],
        &[view(Some(&streets), "street")],
        expect![[r#"
        crm v=v1 Matched street=Some("STRASSE") normalized=Some("strasse") at=1769776496000
          + district=Mitte
        metadata: {"district": "Mitte", "street": "STRASSE"}
    "#]],
    );
    check(
        &[("street", "Rue de la Paix")],
        &[view(Some(&streets), "street")],
        expect![[r#"
        crm v=v1 Matched street=Some("Rue de la Paix") normalized=Some("rue de la paix") at=1769776496000
          + district=2e
        metadata: {"district": "2e", "street": "Rue de la Paix"}
    "#]],
    );
}

#[test]
fn own_metadata_wins_and_collisions_are_recorded() {
    let crm = table(
        "agent_id,city,team,phonenumber,empty\nalice,Helsinki,diamond,+358,\n",
        r#"{"key": "agent_id"}"#,
    );
    let sites = table("team,city,floor\ndiamond,Espoo,3\n", r#"{"key": "team"}"#);
    let tables = [
        view(Some(&crm), "agent_id"),
        TableView {
            table: "sites",
            key_column: "team",
            version: Some("v7"),
            index: Some(&sites),
        },
    ];
    // `team` comes from crm and is not in the call: the sites table is not
    // keyed on added metadata, only on the call's own.
    check(
        &[("agent_id", "alice"), ("city", "Paris")],
        &tables,
        expect![[r#"
        crm v=v1 Matched agent_id=Some("alice") normalized=Some("alice") at=1769776496000
          + phonenumber=+358
          + team=diamond
          ! city: kept "Paris" from the call, dropped "Helsinki"
        sites v=v7 KeyMissing team=None normalized=None at=1769776496000
        metadata: {"agent_id": "alice", "city": "Paris", "phonenumber": "+358", "team": "diamond"}
    "#]],
    );
    check(
        &[("agent_id", "alice"), ("city", "Paris"), ("team", "diamond")],
        &tables,
        expect![[r#"
        crm v=v1 Matched agent_id=Some("alice") normalized=Some("alice") at=1769776496000
          + phonenumber=+358
          ! city: kept "Paris" from the call, dropped "Helsinki"
          ! team: kept "diamond" from the call, dropped "diamond"
        sites v=v7 Matched team=Some("diamond") normalized=Some("diamond") at=1769776496000
          + floor=3
          ! city: kept "Paris" from the call, dropped "Espoo"
        metadata: {"agent_id": "alice", "city": "Paris", "floor": "3", "phonenumber": "+358", "team": "diamond"}
    "#]],
    );

    // An earlier table's added key wins over a later table's.
    let teams = table("agent_id,team,floor\nalice,ruby,3\n", r#"{"key": "agent_id"}"#);
    let tables = [
        view(Some(&crm), "agent_id"),
        TableView {
            table: "teams",
            key_column: "agent_id",
            version: Some("v2"),
            index: Some(&teams),
        },
    ];
    check(
        &[("agent_id", "alice")],
        &tables,
        expect![[r#"
        crm v=v1 Matched agent_id=Some("alice") normalized=Some("alice") at=1769776496000
          + city=Helsinki
          + phonenumber=+358
          + team=diamond
        teams v=v2 Matched agent_id=Some("alice") normalized=Some("alice") at=1769776496000
          + floor=3
          ! team: kept "diamond" from crm, dropped "ruby"
        metadata: {"agent_id": "alice", "city": "Helsinki", "floor": "3", "phonenumber": "+358", "team": "diamond"}
    "#]],
    );
}
