//! The application layer of callmeta: the use cases every channel shares and
//! the storage they need. Adapters (HTTP, FTP/SFTP, SIP, web, CLI) live in
//! their own crates and call [`usecases`] only; they never call each other.
//!
//! - [`usecases`]: what a tenant can do, whatever the channel.
//! - [`clock`]: the `Clock` port the use cases take their time from.
//! - [`store`]: durable state behind the `Store` trait (SQLite by default).
//! - [`blobs`]: CSV originals, reports and audio behind the `BlobStore` trait.
//! - [`mapped`]: a received upload's file, mapped read-only for the parser.

pub mod blobs;
pub mod clock;
pub mod mapped;
pub mod store;
pub mod usecases;
