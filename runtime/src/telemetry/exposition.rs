//! A scrape in the Prometheus text format, gathered family by family: samples of one family may
//! come from many functions and instances, and the family's `# HELP` and `# TYPE` lines are
//! written once (apache/pulsar#20448 is what repeating them does to a scrape). The lines are
//! written by `metrics-exporter-prometheus`'s formatting helpers.

use std::{collections::BTreeMap, fmt::Display};

use indexmap::IndexMap;
use metrics::{Key, Label};
use metrics_exporter_prometheus::{
    LabelSet,
    formatting::{write_help_line, write_metric_line, write_type_line},
};
use metrics_util::storage::Summary;

/// The quantiles every summary reports, as Pulsar Functions' do.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Summary => "summary",
        }
    }
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    samples: String,
}

/// A scrape being gathered.
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
}

/// Label pairs, in the order they are written.
pub type Labels<'a> = &'a [(&'static str, String)];

fn label_set(labels: Labels<'_>) -> LabelSet {
    let labels: Vec<Label> = labels.iter().map(|(key, value)| Label::new(*key, value.clone())).collect();
    LabelSet::from_key_and_global(&Key::from_parts("", labels), &IndexMap::new())
}

impl Exposition {
    fn family(&mut self, name: &str, help: &'static str, kind: Kind) -> &mut String {
        let family =
            self.families.entry(name.to_owned()).or_insert_with(|| Family { help, kind, samples: String::new() });
        debug_assert_eq!(family.kind, kind, "family {name} is of one kind");
        &mut family.samples
    }

    /// One sample of a counter or a gauge.
    pub fn sample(&mut self, name: &str, help: &'static str, kind: Kind, labels: Labels<'_>, value: impl Display) {
        let labels = label_set(labels);
        let samples = self.family(name, help, kind);
        write_metric_line::<&str, _>(samples, name, None, &labels, None, value, None);
    }

    /// One summary: its quantiles (NaN while it has seen nothing), sum and count.
    pub fn summary(&mut self, name: &str, help: &'static str, labels: Labels<'_>, summary: &Summary) {
        let labels = label_set(labels);
        let samples = self.family(name, help, Kind::Summary);
        for quantile in QUANTILES {
            let value = summary.quantile(quantile).unwrap_or(f64::NAN);
            write_metric_line(samples, name, None, &labels, Some(("quantile", quantile)), value, None);
        }
        let sum = summary.sum().unwrap_or(0.0);
        write_metric_line::<&str, _>(samples, name, Some("sum"), &labels, None, sum, None);
        write_metric_line::<&str, _>(samples, name, Some("count"), &labels, None, summary.count(), None);
    }

    /// The scrape's text: every family once, in name order.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for (name, family) in &self.families {
            write_help_line(&mut text, name, None, None, family.help);
            write_type_line(&mut text, name, None, None, family.kind.as_str());
            text.push_str(&family.samples);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_written_once_whatever_the_number_of_its_samples() {
        let mut exposition = Exposition::default();
        for instance in 0..3 {
            let labels = [("instance_id", instance.to_string()), ("name", "quo\"te".to_owned())];
            exposition.sample("pfn_x_total", "Xs", Kind::Counter, &labels, instance * 10);
            let mut summary = Summary::with_defaults();
            summary.add(5.0);
            exposition.summary("pfn_latency_ms", "Latency", &labels, &summary);
        }
        let text = exposition.render();
        assert_eq!(text.matches("# TYPE pfn_x_total counter").count(), 1, "{text}");
        assert_eq!(text.matches("# TYPE pfn_latency_ms summary").count(), 1, "{text}");
        assert!(text.contains(r#"pfn_x_total{instance_id="2",name="quo\"te"} 20"#), "{text}");
        assert!(text.contains(r#"pfn_latency_ms_count{instance_id="1",name="quo\"te"} 1"#), "{text}");
        assert!(text.contains(r#"quantile="0.999""#), "{text}");
    }
}
