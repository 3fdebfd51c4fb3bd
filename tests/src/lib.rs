//! Helpers shared by the end-to-end tests: where the built plugins, fixtures and the `pfn`
//! binary are, and how to run `pfn`.
//!
//! `scripts/build-plugins.sh` builds all of them once per test run (`scripts/test.sh` calls it
//! first); these helpers only find them and say what to run when they are missing.

pub mod fixtures;
pub mod pfn_cli;
pub mod worker;
