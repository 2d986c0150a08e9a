//! The application layer of callmeta: the use cases every channel shares and
//! the storage they need. Adapters (HTTP, FTP/SFTP, SIP, web, CLI) live in
//! their own crates and call [`usecases`] only; they never call each other.
//!
//! - [`usecases`]: what a tenant can do, whatever the channel.
//! - [`clock`]: the `Clock` port the use cases take their time from.
//! - [`metrics`]: the Prometheus metrics the use cases and adapters count.
//! - [`store`]: durable state behind the `Store` trait (SQLite by default).
//! - [`blobs`]: CSV originals, reports and audio behind the `BlobStore` trait.
//! - [`spool`]: a received upload's file, read in chunks by the CSV parser.

pub mod blobs;
pub mod clock;
pub mod metrics;
pub mod spool;
pub mod store;
pub mod usecases;
