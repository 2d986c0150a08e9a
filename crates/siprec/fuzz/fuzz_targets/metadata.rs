//! A metadata document, merged onto itself and flattened.
#![no_main]

use callmeta_siprec::flatten::{FlattenOptions, flatten};
use callmeta_siprec::metadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(md) = metadata::parse(data) else { return };
    let mut merged = md.clone();
    merged.merge(md);
    let _ = flatten(&[], Some(&merged), &FlattenOptions::default());
});
