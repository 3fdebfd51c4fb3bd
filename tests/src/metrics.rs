//! Scraping a worker's metrics endpoint and reading the scrape with a real Prometheus parser:
//! `prometheus_client`'s, from the venv `scripts/setup.sh` makes.

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
};

use serde::Deserialize;

use crate::fixtures::target_dir;

/// A free port on loopback, for a worker's `--metrics-addr`.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// `GET /metrics` at `addr`: the body.
pub fn scrape(addr: SocketAddr) -> String {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot reach the metrics endpoint {addr}: {e}"));
    let answer = crate::http::get(stream, "/metrics", &[]);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not HTTP: {answer:.200}"));
    assert!(head.starts_with("HTTP/1.1 200"), "scrape answered {head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}

/// One sample as the parser read it.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// One family as the parser read it.
#[derive(Debug, Clone, Deserialize)]
pub struct Family {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub samples: Vec<Sample>,
}

const PARSE: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    samples = [{"name": s.name, "labels": s.labels, "value": None if math.isnan(s.value) else s.value}
               for s in family.samples]
    families.append({"name": family.name, "type": family.type, "samples": samples})
json.dump(families, sys.stdout)
"#;

/// Parses a scrape with `prometheus_client`; fails the test when it refuses it.
pub fn parse(text: &str) -> Vec<Family> {
    let python = target_dir().join("pulsar-venv").join("bin").join("python");
    let mut child = Command::new(&python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (scripts/setup.sh makes it)", python.display()));
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write the scrape");
    let output = child.wait_with_output().expect("the parser runs");
    assert!(
        output.status.success(),
        "prometheus_client refused the scrape: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let families: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("the parser's JSON");
    families
        .into_iter()
        .map(|family| {
            let mut family = family;
            // NaN quantiles come back as null; keep them out of the typed samples.
            if let Some(samples) = family["samples"].as_array_mut() {
                samples.retain(|sample| !sample["value"].is_null());
            }
            serde_json::from_value(family).expect("a family")
        })
        .collect()
}
