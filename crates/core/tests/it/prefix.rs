//! Longest-prefix matching (`"match": "prefix"` and `"phone_prefix"`):
//! number ranges, the longest range that holds a number winning.

use callmeta_core::csv::{self, Limits};
use callmeta_core::index::{Lookup, TableIndex};
use expect_test::{Expect, expect};

use crate::{check, options};

const RANGES: &str = "range,area\n+33,France\n+331,Paris\n+3314,Paris centre\n+334,Lyon\n+44,UK\n";

fn table(csv_text: &str, options_json: &str) -> TableIndex {
    csv::ingest(csv_text.as_bytes(), &options(options_json), &Limits::default())
        .expect("table ingests")
        .index
}

fn lookups(index: &TableIndex, values: &[&str], expect: Expect) {
    let mut out = String::new();
    for value in values {
        let found = match index.lookup(value) {
            Lookup::Found(row) => format!("{} ({})", row.match_key(), row.get(1)),
            other => format!("{other:?}"),
        };
        out.push_str(&format!("{value:?} -> {found}\n"));
    }
    expect.assert_eq(&out);
}

#[test]
fn the_longest_prefix_wins() {
    let index = table(RANGES, r#"{"key": "range", "match": "prefix"}"#);
    lookups(
        &index,
        &[
            "+33102030405",
            "+33142",
            "+3340000",
            "+33999",
            "+33",
            "+3",
            "+44 20",
            "+1650",
            "",
            "+331",
        ],
        expect![[r#"
            "+33102030405" -> +331 (Paris)
            "+33142" -> +3314 (Paris centre)
            "+3340000" -> +334 (Lyon)
            "+33999" -> +33 (France)
            "+33" -> +33 (France)
            "+3" -> NotFound
            "+44 20" -> +44 (UK)
            "+1650" -> NotFound
            "" -> Unnormalizable
            "+331" -> +331 (Paris)
        "#]],
    );
}

#[test]
fn a_prefix_that_is_not_in_the_chain_is_skipped() {
    // `+3312` sorts right before `+3315...` but does not hold it; `+331`
    // does. And `abc` < `abd` < `abda` with `ab` their parent.
    let index = table(
        "p,v\n+33,a\n+331,b\n+3312,c\n+33129,d\nab,e\nabc,f\nabda,g\n",
        r#"{"key": "p", "match": "prefix"}"#,
    );
    lookups(
        &index,
        &["+3315", "+33129", "+331299", "+3313", "abd", "abdb", "abcz", "a"],
        expect![[r#"
        "+3315" -> +331 (b)
        "+33129" -> +33129 (d)
        "+331299" -> +33129 (d)
        "+3313" -> +331 (b)
        "abd" -> ab (e)
        "abdb" -> ab (e)
        "abcz" -> abc (f)
        "a" -> NotFound
    "#]],
    );
}

#[test]
fn phone_prefix_reads_cells_as_e164_prefixes() {
    let index = table(
        "range,area\n+33,France\n01,Paris\n0033 4,Lyon\n+44,UK\n",
        r#"{"key": "range", "match": "phone_prefix", "region": "FR"}"#,
    );
    lookups(
        &index,
        &[
            "01 02 03 04 05",
            "+33 4 72 00 00 00",
            "06 12 34 56 78",
            "+44 20 7946 0000",
            "not a number",
        ],
        expect![[r#"
            "01 02 03 04 05" -> +331 (Paris)
            "+33 4 72 00 00 00" -> +334 (Lyon)
            "06 12 34 56 78" -> +33 (France)
            "+44 20 7946 0000" -> +44 (UK)
            "not a number" -> Unnormalizable
        "#]],
    );
    check(
        "range,area\nParis,x\n",
        r#"{"key": "range", "match": "phone_prefix", "region": "FR"}"#,
        expect![[r#"
            REJECTED: line 2: the key "Paris" is not a phone number (default region FR)

            size:       19 bytes
            encoding:   UTF-8
            delimiter:  comma
            columns:    range (key), area
            key:        range (match: phone_prefix)
            rows:       1 read, 0 accepted, 1 rejected
            problems:   1
              line 2: the key "Paris" is not a phone number (default region FR)
            duplicates: none
            sha256:     97d38a99b5bef60d0ec458f522aa08e6250feaa134499760c81248b317006c27
        "#]],
    );
}

#[test]
fn duplicate_prefixes_follow_the_policy() {
    let csv_text = "range,area\n+33,France\n+33,Francia\n+331,Paris\n";
    let first = table(csv_text, r#"{"key": "range", "match": "prefix"}"#);
    lookups(
        &first,
        &["+339"],
        expect![[r#"
        "+339" -> +33 (France)
    "#]],
    );
    let ambiguous = table(
        csv_text,
        r#"{"key": "range", "match": "prefix", "duplicates": "ambiguous"}"#,
    );
    lookups(
        &ambiguous,
        &["+339", "+3319"],
        expect![[r#"
        "+339" -> Ambiguous { rows: 2 }
        "+3319" -> +331 (Paris)
    "#]],
    );
}

#[test]
fn many_ranges_agree_with_a_scan() {
    // Ranges of every length over a few digits, and values around them.
    let mut csv_text = String::from("p,v\n");
    let mut ranges = Vec::new();
    for i in 0..2000u32 {
        let digits = format!("{}", i * 7919 % 100_000);
        let range = &digits[..(1 + i as usize % digits.len())];
        if !ranges.iter().any(|r| r == range) {
            ranges.push(range.to_string());
            csv_text.push_str(&format!("{range},{i}\n"));
        }
    }
    let index = table(&csv_text, r#"{"key": "p", "match": "prefix"}"#);
    for n in 0..5000u32 {
        let value = format!("{}", n * 104_729 % 1_000_000);
        let expected = ranges
            .iter()
            .filter(|r| value.starts_with(r.as_str()))
            .max_by_key(|r| r.len());
        let found = match index.lookup(&value) {
            Lookup::Found(row) => Some(row.match_key().to_string()),
            _ => None,
        };
        assert_eq!(found.as_deref(), expected.map(String::as_str), "{value}");
    }
}
