//! The one integration-test binary (one link of the AWS SDK instead of one per file).
//!
//! Every test here runs the built `firetail` binary as a child process against a real
//! peer on loopback: moto's server (wire compatibility, S3 end to end) or the
//! fault-injecting fake Firehose in `support/fake_firehose.rs`.

mod support;

mod fake_firehose_selftest;
mod moto_selftest;

mod chaos;
mod core;
mod delivery;
mod early_signal;
mod faults;
mod fields;
mod files;
mod fleet;
mod follower_model;
mod memory;
mod operate;
mod operate_hardening;
mod operate_sources;
mod pressure;
mod promises;
mod promises_files;
mod restarts;
mod rotation;
mod sources;
mod store;
mod tail_sources;
mod window;
