//! The worker's scrape: every function's and instance's metrics, then the worker's own, each
//! family once.

use std::time::Instant;

use super::{FunctionShared, WorkerHandle};
use crate::{
    sync::lock,
    telemetry::{Exposition, Kind, instance::function_labels},
};

impl WorkerHandle {
    /// The Prometheus text of everything the worker measures.
    pub fn render_metrics(&self) -> String {
        let mut exposition = Exposition::default();
        let now = Instant::now();
        for function in self.listed() {
            function.expose(&mut exposition, &self.cluster, now);
        }
        let worker_labels = [("cluster", self.cluster.to_string())];
        self.flushes.expose(&mut exposition, &worker_labels);
        if let Some(pulsar) = self.pulsar_stats() {
            let help = "Pulsar consumers lost or unable to subscribe, each rebuilt";
            exposition.sample(
                "pfn_pulsar_consumer_failures_total",
                help,
                Kind::Counter,
                &worker_labels,
                pulsar.consumer_failures,
            );
            let help = "Pulsar producers that failed and were rebuilt";
            exposition.sample(
                "pfn_pulsar_producer_failures_total",
                help,
                Kind::Counter,
                &worker_labels,
                pulsar.producer_failures,
            );
        }
        exposition.render()
    }
}

impl FunctionShared {
    /// Adds the function's samples, and its instances', to a scrape.
    fn expose(&self, exposition: &mut Exposition, cluster: &str, now: Instant) {
        let spec = self.spec();
        let labels = function_labels(&spec.tenant, &spec.namespace, &spec.name, cluster);
        if let Some(version) = lock(&self.version).clone() {
            let mut labels = labels.clone();
            labels.push(("version", version));
            exposition.sample("pfn_plugin_info", "The plugin version the function runs", Kind::Gauge, &labels, 1);
        }
        let (reloads, rollbacks) = {
            let reloads = lock(&self.reloads);
            (reloads.len(), reloads.iter().filter(|reload| reload.rolled_back.is_some()).count())
        };
        exposition.sample("pfn_reloads_total", "Hot reloads to a new plugin version", Kind::Counter, &labels, reloads);
        let help = "Reloads rolled back to the previous version";
        exposition.sample("pfn_rollbacks_total", help, Kind::Counter, &labels, rollbacks);
        let mut refused = std::collections::BTreeMap::<String, u64>::new();
        for refusal in lock(&self.refusals).iter() {
            *refused.entry(refusal.kind.clone()).or_default() += 1;
        }
        for (reason, count) in refused {
            let mut labels = labels.clone();
            labels.push(("reason", reason));
            exposition.sample(
                "pfn_plugin_refusals_total",
                "Plugin files refused, by reason",
                Kind::Counter,
                &labels,
                count,
            );
        }
        if spec.log_topic.is_some() {
            let help = "Log events of the function not published to its log topic (buffer full or publish failed)";
            exposition.sample("pfn_log_events_dropped_total", help, Kind::Counter, &labels, self.log.dropped());
        }
        self.store.ops().expose(exposition, &labels);
        for control in lock(&self.instances).iter() {
            control.stats.metrics.expose(exposition, now);
        }
    }
}
