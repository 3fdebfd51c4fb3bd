//! Kubernetes manifests for a function, as Pulsar's Kubernetes runtime and Function Mesh run
//! one: a ConfigMap with the spec, a headless Service, and a StatefulSet whose pods each run one
//! instance with `pfn functions localrun`, the instance id taken from the pod's ordinal.
//!
//! The plugin is pinned by its sha256 and comes from an image (copied into the pod by an init
//! container) or is already in the pfn image; secrets come from a Kubernetes Secret mounted as
//! files, read through the spec's `file:` provider. Each pod keeps its state store on a volume
//! of its own (a claim per pod), so on Kubernetes an instance's state is its own.

use serde_json::{Value, json};

use crate::{config::FunctionSpec, verify::Sha256Digest};

/// Where the pod serves `/metrics` and the health probe.
const METRICS_PORT: u16 = 9094;
/// Where the spec, the plugins, the secrets and the state are in the pod.
const SPEC_DIR: &str = "/etc/pfn/function";
const PLUGINS_DIR: &str = "/plugins";
const SECRETS_DIR: &str = "/etc/pfn/secrets";
const STATE_DIR: &str = "/var/lib/pfn";
/// The longest StatefulSet name whose pods' labels stay within Kubernetes' 63 characters.
const MAX_NAME: usize = 52;

/// What the manifests need besides the spec.
#[derive(Debug, Clone)]
pub struct ManifestOptions {
    /// The image with the `pfn` binary.
    pub image: String,
    /// The Pulsar service URL the instances connect to.
    pub pulsar_url: String,
    /// The plugin library's file name and sha256.
    pub plugin_file: String,
    pub plugin_sha256: Sha256Digest,
    /// An image holding the plugin at `/plugins/<plugin_file>`; none when the pfn image has it.
    pub plugin_image: Option<String>,
    /// The Kubernetes namespace (none: the one `kubectl` applies to).
    pub namespace: Option<String>,
    /// The Secret holding the function's secrets, one key per secret name.
    pub secret_name: Option<String>,
}

/// The function's manifests: ConfigMap, Service, StatefulSet.
pub fn manifests(spec: &FunctionSpec, options: &ManifestOptions) -> Vec<Value> {
    let name = resource_name(spec);
    let labels = json!({
        "app.kubernetes.io/name": "pfn-function",
        "app.kubernetes.io/instance": name,
        "pfn.io/tenant": label_value(&spec.tenant),
        "pfn.io/namespace": label_value(&spec.namespace),
        "pfn.io/function": label_value(&spec.name),
    });
    let metadata = |name: &str| {
        let mut metadata = json!({ "name": name, "labels": labels });
        if let Some(namespace) = &options.namespace {
            metadata["namespace"] = json!(namespace);
        }
        metadata
    };
    let function_json = pod_spec(spec, options).to_string();
    let spec_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(&format!("{name}-spec")),
        "data": { "function.json": function_json },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(&name),
        "spec": {
            "clusterIP": "None",
            "selector": selector(&name),
            "ports": [{ "name": "metrics", "port": METRICS_PORT, "targetPort": "metrics" }],
        },
    });
    let stateful_set = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(&name),
        "spec": {
            "serviceName": name,
            "replicas": spec.parallelism,
            // Instances are peers: they start and stop together, not one after another.
            "podManagementPolicy": "Parallel",
            "selector": { "matchLabels": selector(&name) },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": METRICS_PORT.to_string(),
                        "prometheus.io/path": "/metrics",
                        // A new spec or plugin changes the pod template: the pods roll.
                        "pfn.io/spec-sha256": Sha256Digest::of(function_json.as_bytes()).to_string(),
                    },
                },
                "spec": pod(spec, options, &name),
            },
            // Each instance's state store, kept across pod restarts and rescheduling.
            "volumeClaimTemplates": [{
                "metadata": { "name": "state" },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": { "requests": { "storage": state_size(spec) } },
                },
            }],
        },
    });
    vec![spec_map, service, stateful_set]
}

/// The pod: the plugin copied in (when it comes from an image), then `pfn functions localrun`.
fn pod(spec: &FunctionSpec, options: &ManifestOptions, name: &str) -> Value {
    let probe = json!({
        "httpGet": { "path": crate::http_server::HEALTH_PATH, "port": "metrics" },
        "periodSeconds": 10,
    });
    let mut mounts = vec![
        json!({ "name": "spec", "mountPath": SPEC_DIR, "readOnly": true }),
        json!({ "name": "plugins", "mountPath": PLUGINS_DIR }),
        json!({ "name": "state", "mountPath": STATE_DIR }),
    ];
    let mut volumes = vec![
        json!({ "name": "spec", "configMap": { "name": format!("{name}-spec") } }),
        json!({ "name": "plugins", "emptyDir": {} }),
    ];
    if !spec.secrets.is_empty() {
        mounts.push(json!({ "name": "secrets", "mountPath": SECRETS_DIR, "readOnly": true }));
        volumes.push(json!({ "name": "secrets", "secret": { "secretName": secret_name(options, name) } }));
    }
    let container = json!({
        "name": "function",
        "image": options.image,
        "args": [
            "functions", "localrun",
            "--spec", format!("{SPEC_DIR}/function.json"),
            "--plugins-dir", PLUGINS_DIR,
            "--state-dir", STATE_DIR,
            "--metrics-addr", format!("0.0.0.0:{METRICS_PORT}"),
        ],
        "env": [
            { "name": "PFN_PULSAR_URL", "value": options.pulsar_url },
            // The pod's ordinal: scaling adds or removes pods without changing the others.
            {
                "name": "PFN_INSTANCE_ID",
                "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']" } },
            },
        ],
        "ports": [{ "name": "metrics", "containerPort": METRICS_PORT }],
        "resources": resources(spec),
        "livenessProbe": probe,
        "readinessProbe": probe,
        "volumeMounts": mounts,
    });
    let mut pod = json!({ "containers": [container], "volumes": volumes });
    if let Some(image) = &options.plugin_image {
        let file = &options.plugin_file;
        pod["initContainers"] = json!([{
            "name": "plugin",
            "image": image,
            "command": ["cp", format!("{PLUGINS_DIR}/{file}"), format!("/target/{file}")],
            "volumeMounts": [{ "name": "plugins", "mountPath": "/target" }],
        }]);
    }
    pod
}

/// The spec as the pod runs it: the plugin at its place in the pod, pinned by its sha256, and
/// each secret read from the mounted Secret's file of its name.
fn pod_spec(spec: &FunctionSpec, options: &ManifestOptions) -> Value {
    let mut spec = spec.clone();
    spec.plugin = format!("{PLUGINS_DIR}/{}", options.plugin_file);
    spec.plugin_sha256 = Some(options.plugin_sha256.to_string());
    for (secret, source) in &mut spec.secrets {
        *source = format!("file:{SECRETS_DIR}/{secret}");
    }
    serde_json::to_value(&spec).unwrap_or_default()
}

/// Requests and limits from the spec's resources: CPU in millicores, memory and local disk
/// in bytes.
fn resources(spec: &FunctionSpec) -> Value {
    let Some(resources) = spec.resources else { return json!({}) };
    let mut amounts = serde_json::Map::new();
    if let Some(cpu) = resources.cpu {
        amounts.insert("cpu".into(), json!(format!("{}m", (cpu * 1000.0).ceil() as u64)));
    }
    if let Some(ram) = resources.ram {
        amounts.insert("memory".into(), json!(ram.to_string()));
    }
    if let Some(disk) = resources.disk {
        amounts.insert("ephemeral-storage".into(), json!(disk.to_string()));
    }
    json!({ "requests": amounts, "limits": amounts })
}

/// The state volume's size: the spec's `disk`, else 1 GiB.
fn state_size(spec: &FunctionSpec) -> String {
    spec.resources.and_then(|resources| resources.disk).map_or_else(|| "1Gi".to_owned(), |bytes| bytes.to_string())
}

fn selector(name: &str) -> Value {
    json!({ "app.kubernetes.io/name": "pfn-function", "app.kubernetes.io/instance": name })
}

fn secret_name(options: &ManifestOptions, name: &str) -> String {
    options.secret_name.clone().unwrap_or_else(|| format!("{name}-secrets"))
}

/// `tenant-namespace-name` as a Kubernetes name: lowercase letters, digits and `-`, at most
/// [`MAX_NAME`] characters.
pub fn resource_name(spec: &FunctionSpec) -> String {
    let joined = format!("{}-{}-{}", spec.tenant, spec.namespace, spec.name).to_ascii_lowercase();
    let name: String = joined.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let name: String = name.trim_matches('-').chars().take(MAX_NAME).collect();
    name.trim_end_matches('-').to_owned()
}

/// A label value: letters, digits, `-`, `_` and `.`, at most 63 characters.
fn label_value(text: &str) -> String {
    let value: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).take(63).collect();
    value.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_kubernetes_accepts() {
        let spec: FunctionSpec = serde_json::from_value(json!({
            "tenant": "Acme_Corp", "namespace": "ops", "name": "Alerts.On.Thresholds", "plugin": "p", "inputs": ["in"],
        }))
        .expect("a spec");
        assert_eq!(resource_name(&spec), "acme-corp-ops-alerts-on-thresholds");
        assert_eq!(label_value("Alerts.On.Thresholds"), "Alerts.On.Thresholds");
        let long = FunctionSpec { name: "x".repeat(80), ..spec };
        assert_eq!(resource_name(&long).len(), MAX_NAME);
    }
}
