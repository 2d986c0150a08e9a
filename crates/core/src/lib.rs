//! The enrichment core: everything callmeta knows about CSV exports, reference
//! tables and matching, with no I/O. Functions here take bytes and values and
//! return values; they never touch a file, a socket or a clock (time comes in as
//! an argument), so their tests run in microseconds.
//!
//! - [`domain`]: validated names (`TenantSlug`, `TableName`, `ColumnName`).
//! - [`csv`]: decoding a CRM export (encoding, delimiter, pipe tables, quoting,
//!   limits, policies) into a [`index::TableIndex`] plus a [`csv::Report`].
//! - [`index`]: the in-memory, immutable form of one version of a table.
//! - [`matching`]: how a key value is normalised (`exact`, `case_insensitive`,
//!   `phone`, `prefix`, `phone_prefix`).
//! - [`validity`]: rows valid over an interval (`valid_from`, `valid_to`).
//! - [`delta`]: delta uploads (`_op`: upsert, delete) applied to the active rows.
//! - [`enrich`]: the enrichment rule: one result per table for a call's metadata.
//! - [`call_metadata`]: a call's own metadata from the JSON a client sends.

pub mod call_metadata;
pub mod csv;
pub mod delta;
pub mod domain;
pub mod enrich;
pub mod index;
pub mod matching;
pub mod validity;
