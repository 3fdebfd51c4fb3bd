//! What the worker measures and how it is shown: the counts status and the exit summary print
//! and the Prometheus endpoint serves all come from the same counters.
//!
//! - [`count`]: every count an instance keeps, with its names everywhere.
//! - [`instance`]: one instance's counts, latencies, user metrics and one-minute window.
//! - [`exposition`]: a scrape in the Prometheus text format, each family once.
//! - [`server`]: `GET /metrics`.
//! - [`state`]: state operations and group commits.

pub mod count;
pub mod exposition;
pub mod instance;
pub mod server;
pub mod state;

pub use self::{
    count::{Count, Counters, Counts},
    exposition::{Exposition, Kind},
    instance::{InstanceLabels, InstanceMetrics},
    server::{MetricsServer, MetricsServerError},
    state::{FlushMetrics, StateOp, StateOpMetrics},
};
