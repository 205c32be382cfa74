//! firetail-query's integration tests: the built binary as a child process against
//! moto's server (the happy paths of both subcommands) and a fake Athena (paging,
//! FAILED, CANCELLED, a query that never ends, verify finding lost and duplicated ids);
//! and the SQL it builds, run for real in DuckDB through sqlglot (engine.rs).

mod against_fake;
mod against_moto;
mod engine;
mod engine_world;
mod support;
mod usage;
