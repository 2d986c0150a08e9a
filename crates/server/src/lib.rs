//! The `callmeta` server: configuration and wiring. `App::build` opens the
//! store and blob storage, loads the active versions and binds every adapter's
//! listener; `App::run_until` serves until shutdown. The binary (`main.rs`)
//! and the integration tests start the application the same way.
//!
//! - [`config`]: defaults < config file < `CALLMETA_*` environment < flags.
//! - [`startup`]: `open_services`, `App`.
//! - [`memory`]: the allocator's set-up (a fixed mmap threshold).
//! - [`telemetry`]: trace export over OTLP when the environment asks for it.
//! - [`http_server`]: the HTTP listener and its limits on slow and idle
//!   clients (timeouts, body rate floor, connection caps).

pub mod config;
pub mod http_server;
pub mod memory;
pub mod startup;
pub mod telemetry;
