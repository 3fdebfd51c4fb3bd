//! Helpers shared by the end-to-end tests: where the built plugins, fixtures and the `pfn`
//! binary are, and how to run `pfn`; a real Pulsar-protocol broker to run against.
//!
//! `scripts/build-plugins.sh` builds all of them once per test run (`scripts/test.sh` calls it
//! first); these helpers only find them and say what to run when they are missing.
//!
//! # Layout
//! - `fixtures`, `pfn_cli`, `worker`: the built artifacts, the `pfn` CLI, a running worker.
//! - `in_process`: a worker on a thread of the test, and one-shot calls to its admin API's app.
//! - `http`: plain HTTP `GET`s over TCP or a Unix socket.
//! - `metrics`: scraping a worker's metrics endpoint and parsing the scrape with prometheus_client.
//! - `broker`: pulsar-lite as a child process (`TestBroker`), installed by `scripts/setup.sh`.
//! - `pulsar_client`: a blocking producer and consumer, as an external application.
//! - `pulsar_functions`: specs, inputs and tallies for functions on Pulsar.
//! - `use_case`: an example plugin over its sample input, by `pfn run` and by workers on both
//!   transports.
//! - `relay`: the relay the stock `pulsar` crate talks to pulsar-lite through, with fault
//!   injection; `relay/frame.rs` holds the frame rewrite. docs/TESTING.md says why.

pub mod broker;
pub mod fixtures;
pub mod http;
pub mod in_process;
pub mod metrics;
pub mod pfn_cli;
pub mod pulsar_client;
pub mod pulsar_functions;
pub mod relay;
pub mod tls;
pub mod use_case;
pub mod worker;
