//! `pfn functions k8s-manifest`: manifests that Kubernetes' own schemas accept (checked offline
//! with `kubernetes-validate`, strict), from a spec file or from the spec a worker runs, with the
//! instance id from the pod's ordinal, the plugin pinned by sha256, secrets from a Secret through
//! the file provider, the spec's resources, scrape annotations and health probes.

use std::{path::Path, process::Command};

use pfn::config::FunctionSpec;
use pfn_tests::{
    fixtures::{plugin, scratch, sha256_of, target_dir},
    pfn_cli::{pfn, texts},
    worker::RunningWorker,
};
use serde_json::Value;

const SPEC: &str = r#"
name = "alerts"
plugin = "threshold-alert"
inputs = ["readings"]
output = "alerts"
parallelism = 3
[secrets]
api = "env:ALERTS_API_KEY"
[resources]
cpu = 0.5
ram = 268435456
disk = 2147483648
"#;

/// `pfn functions k8s-manifest` with `args`; its stdout.
fn manifest(scratch: &Path, args: &[&str]) -> String {
    let mut command = pfn(scratch);
    command.args(["functions", "k8s-manifest", "--pulsar-url", "pulsar://pulsar:6650"]).args(args);
    let output = command.output().expect("pfn functions k8s-manifest");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    stdout
}

/// The objects of a JSON `List`, by kind.
fn by_kind(list: &Value, kind: &str) -> Value {
    let items = list["items"].as_array().expect("a List");
    items.iter().find(|item| item["kind"] == kind).cloned().unwrap_or_else(|| panic!("no {kind} in {list}"))
}

#[test]
fn manifests_pass_kubernetes_schemas_and_carry_what_runs_the_function() {
    let dir = scratch();
    let spec = dir.path().join("alerts.toml");
    std::fs::write(&spec, SPEC).expect("the spec");
    let library = plugin("threshold-alert");
    let spec_arg = spec.to_str().expect("a path");
    let library_arg = library.to_str().expect("a path");
    let yaml =
        manifest(dir.path(), &["--spec", spec_arg, "--plugin", library_arg, "--plugin-image", "registry/alerts:1"]);
    let yaml_file = dir.path().join("alerts.yaml");
    std::fs::write(&yaml_file, &yaml).expect("the manifests");
    let validator = target_dir().join("pulsar-venv/bin/kubernetes-validate");
    let checked = Command::new(&validator).args(["--strict", "-k", "1.30.0"]).arg(&yaml_file).output();
    let checked = checked.unwrap_or_else(|error| panic!("{} (run scripts/setup.sh): {error}", validator.display()));
    let (stdout, stderr) = texts(&checked);
    assert!(checked.status.success(), "refused by Kubernetes' schemas:\n{stdout}{stderr}\n{yaml}");
    for resource in
        ["configmap/public-default-alerts-spec", "service/public-default-alerts", "statefulset/public-default-alerts"]
    {
        assert!(stdout.contains(&format!("passed for resource {resource}")), "{resource} not checked:\n{stdout}");
    }

    let list: Value = serde_json::from_str(&manifest(
        dir.path(),
        &["--spec", spec_arg, "--plugin", library_arg, "--plugin-image", "registry/alerts:1", "--output", "json"],
    ))
    .expect("JSON");
    let set = by_kind(&list, "StatefulSet");
    assert_eq!(set["spec"]["replicas"], 3);
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let instance = container["env"].as_array().expect("env").iter().find(|env| env["name"] == "PFN_INSTANCE_ID");
    let instance = instance.expect("the instance id comes from the pod");
    assert_eq!(instance["valueFrom"]["fieldRef"]["fieldPath"], "metadata.labels['apps.kubernetes.io/pod-index']");
    assert!(!container["args"].to_string().contains("instance"), "the instance id is baked into the command");
    assert_eq!(
        container["resources"]["limits"],
        serde_json::json!({"cpu": "500m", "memory": "268435456", "ephemeral-storage": "2147483648"})
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/admin/v3/worker/health");
    assert_eq!(pod["initContainers"][0]["image"], "registry/alerts:1");
    assert_eq!(set["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"], "true");
    let secrets = pod["volumes"].as_array().expect("volumes").iter().find(|volume| volume["name"] == "secrets");
    assert_eq!(secrets.expect("a secrets volume")["secret"]["secretName"], "public-default-alerts-secrets");

    // The spec the pods run: the plugin pinned where the init container puts it, the secret
    // read from the mounted Secret.
    let map = by_kind(&list, "ConfigMap");
    let pod_spec: FunctionSpec =
        serde_json::from_str(map["data"]["function.json"].as_str().expect("the spec")).expect("a spec pfn reads");
    pod_spec.validate().expect("a valid spec");
    assert_eq!(pod_spec.plugin, "/plugins/libthreshold_alert.so");
    assert_eq!(pod_spec.plugin_sha256, Some(sha256_of(&library).to_string()));
    assert_eq!(pod_spec.secrets["api"], "file:/etc/pfn/secrets/api");
}

#[test]
fn a_running_workers_function_gets_its_manifests_from_the_worker() {
    let dir = scratch();
    let spec =
        "name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"words\"]\noutput = \"shouts\"\nparallelism = 2\n";
    let worker = RunningWorker::start(
        dir.path(),
        &[("shout.toml", spec)],
        &[(&plugin("exclamation"), "libexclamation.so")],
        &[],
    );
    worker.wait_until("shout runs", |worker| worker.function("public/default/shout")["state"] == "running");
    let library = plugin("exclamation");
    let mut command = worker.pfn();
    command.args([
        "functions",
        "k8s-manifest",
        "--name",
        "shout",
        "--pulsar-url",
        "pulsar://pulsar:6650",
        "--output",
        "json",
    ]);
    let output = command.arg("--plugin").arg(&library).output().expect("k8s-manifest");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    let list: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(by_kind(&list, "StatefulSet")["spec"]["replicas"], 2);
    let (status, log) = worker.terminate();
    assert!(status.success(), "{log}");
}
