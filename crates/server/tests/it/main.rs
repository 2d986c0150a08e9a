//! The integration tests: one binary, a module per feature. Each test starts
//! the real application on port 0 with a temporary data directory and drives
//! it as users do (an HTTP client, the `callmeta` CLI, FTP and SFTP clients,
//! sipp, a headless Chromium).

mod helpers;

mod api_errors;
mod as_of;
mod audit;
mod bounds;
mod calls;
mod calls_volume;
mod cli;
mod erasure;
mod export_push;
mod filedrop;
mod limits;
mod logins;
mod metrics;
mod ops;
mod refdata;
mod retention;
mod s3;
mod scale_out;
mod siprec;
mod siprec_hostile;
mod siprec_network;
mod slow_clients;
mod spec_example;
mod store_story;
mod tokens;
mod traces;
mod uploads;
mod users;
mod web;
mod webhooks;
