//! Creating, updating, stopping, starting and restarting functions through the admin API's app
//! (in-process, on a real worker): Pulsar's multipart form with an uploaded plugin (one the
//! worker did not have), and every
//! refusal leaving the worker and its directories as they were.

use std::{fs, path::Path, time::Duration};

use axum::http::{Method, StatusCode};
use pfn_tests::{
    fixtures::{fixture, sha256_of},
    in_process::{InProcess, TOKEN, call},
};
use serde_json::{Value, json};

const LOUD: &str = "/admin/v3/functions/public/default/loud";
const BOUNDARY: &str = "pfn-test-boundary";

/// A multipart form: each part's name and bytes.
fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if *name == "data" {
            body.extend_from_slice(b"; filename=\"plugin.so\"\r\nContent-Type: application/octet-stream");
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn send(worker: &InProcess, method: Method, uri: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    pfn_tests::in_process::call_with(worker.state(), method, uri, Some(TOKEN), &content_type, body).await
}

async fn post(worker: &InProcess, uri: &str) -> (StatusCode, Value) {
    call(worker.state(), Method::POST, uri.to_owned(), Some(TOKEN), Vec::new()).await
}

/// The names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("a directory")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into())
        .collect();
    names.sort();
    names
}

fn state_of(worker: &InProcess, fqfn: &str) -> String {
    worker.handle.status(Some(fqfn)).map(|status| status[0].state.to_string()).unwrap_or_default()
}

fn wait_for_state(worker: &InProcess, fqfn: &str, wanted: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while state_of(worker, fqfn) != wanted {
        assert!(std::time::Instant::now() < deadline, "{fqfn} never became {wanted}: {}", state_of(worker, fqfn));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_is_created_from_an_upload_then_updated_stopped_started_and_deleted() {
    let worker = InProcess::start();
    let library = fs::read(fixture("stateful")).expect("the plugin");
    let digest = sha256_of(&fixture("stateful")).to_string();
    let config = json!({"inputs": ["quiet"], "output": "loud", "userConfig": {"tone": "firm"}}).to_string();
    let (plugins, functions) = (listing(&worker.plugins_dir), listing(&worker.functions_dir));

    // Refused, each with nothing written: a tampered upload, a bad config, a missing function.
    let tampered = [library.as_slice(), b"tampered"].concat();
    let (status, body) = send(
        &worker,
        Method::POST,
        LOUD,
        form(&[("functionConfig", config.as_bytes()), ("data", &tampered), ("sha256", digest.as_bytes())]),
    )
    .await;
    let error = body["error"].as_str().unwrap_or_default();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error.contains(&digest), "the sent digest is not named: {error}");
    let actual = pfn::verify::Sha256Digest::of(&tampered).to_string();
    assert!(error.contains(&actual), "the upload's digest is not named: {error}");
    let bad = json!({"inputs": ["quiet"], "output": "quiet", "parallelism": 0, "logLevel": "loud"}).to_string();
    let (status, body) = send(
        &worker,
        Method::POST,
        LOUD,
        form(&[("functionConfig", bad.as_bytes()), ("data", &library), ("sha256", digest.as_bytes())]),
    )
    .await;
    let error = body["error"].as_str().unwrap_or_default();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for field in ["output:", "parallelism:", "log_level:"] {
        assert!(error.contains(field), "{field} is not named: {error}");
    }
    let (status, _) = send(&worker, Method::PUT, LOUD, form(&[("functionConfig", config.as_bytes())])).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an update of a function that does not exist");
    let shout = json!({"inputs": ["words"], "output": "shouts", "plugin": "exclamation"}).to_string();
    let (status, _) = send(
        &worker,
        Method::POST,
        "/admin/v3/functions/public/default/shout",
        form(&[("functionConfig", shout.as_bytes())]),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "a create of a function that exists");
    assert_eq!((listing(&worker.plugins_dir), listing(&worker.functions_dir)), (plugins.clone(), functions.clone()));
    assert_eq!(worker.handle.names("public", "default"), ["shout"]);

    // Created from the upload: the plugin lands in the plugins directory, the spec in the
    // functions directory, and the function runs.
    let (status, body) = send(
        &worker,
        Method::POST,
        LOUD,
        form(&[("functionConfig", config.as_bytes()), ("data", &library), ("sha256", digest.as_bytes())]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["action"].as_str(), body["fqfn"].as_str()), (Some("created"), Some("public/default/loud")));
    let version = body["plugin"].as_str().and_then(|plugin| plugin.strip_prefix("stateful ")).expect("the plugin");
    let installed = worker.plugins_dir.join(format!("stateful-{version}.so"));
    assert_eq!(sha256_of(&installed).to_string(), digest);
    assert!(worker.functions_dir.join("public.default.loud.json").exists());
    wait_for_state(&worker, "public/default/loud", "running");
    assert_eq!(
        call(worker.state(), Method::POST, format!("{LOUD}/trigger"), Some(TOKEN), b"config tone string".to_vec())
            .await,
        (StatusCode::OK, Value::String("Some(\"firm\")".into()))
    );
    let spec = worker.handle.spec("public/default/loud").expect("the spec");
    assert_eq!((spec.plugin.as_str(), spec.user_config.get("tone")), ("stateful", Some(&json!("firm"))));

    // Updated: only the fields given change; parallelism applies live.
    let (status, body) = send(&worker, Method::PUT, LOUD, form(&[("functionConfig", br#"{"parallelism": 2}"#)])).await;
    assert_eq!((status, body["how"].as_str()), (StatusCode::OK, Some("parallelism 1 -> 2 applied live")), "{body}");
    let status = worker.handle.status(Some("public/default/loud")).expect("status");
    assert_eq!(status[0].instances.len(), 2);
    assert_eq!(worker.handle.spec("public/default/loud").expect("the spec").inputs, ["quiet"]);

    // An update the worker cannot apply (a secret nowhere to be found) is refused: the function
    // runs as it was, and its spec file says so again.
    let spec_file = worker.functions_dir.join("public.default.loud.json");
    let before = fs::read_to_string(&spec_file).expect("the spec file");
    let secrets = br#"{"secrets": {"key": "env:PFN_TEST_NO_SUCH_VARIABLE"}}"#;
    let (status, body) = send(&worker, Method::PUT, LOUD, form(&[("functionConfig", secrets)])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().is_some_and(|error| error.contains("PFN_TEST_NO_SUCH_VARIABLE")), "{body}");
    assert!(worker.handle.spec("public/default/loud").expect("the spec").secrets.is_empty());
    assert_eq!(fs::read_to_string(&spec_file).expect("the spec file"), before);
    assert_eq!(state_of(&worker, "public/default/loud"), "running");

    // Stopped: triggers are refused; started again, it answers; one instance restarts alone.
    assert_eq!(post(&worker, &format!("{LOUD}/stop")).await.0, StatusCode::OK);
    assert_eq!(state_of(&worker, "public/default/loud"), "stopped");
    let (status, _) = call(worker.state(), Method::POST, format!("{LOUD}/trigger"), Some(TOKEN), b"hey".to_vec()).await;
    assert_eq!(status, StatusCode::CONFLICT, "a stopped function answered a trigger");
    assert_eq!(
        post(&worker, &format!("{LOUD}/1/restart")).await.0,
        StatusCode::CONFLICT,
        "an instance of a stopped function restarted"
    );
    assert_eq!(post(&worker, &format!("{LOUD}/start")).await.0, StatusCode::OK);
    wait_for_state(&worker, "public/default/loud", "running");
    let (status, body) = post(&worker, &format!("{LOUD}/1/restart")).await;
    assert_eq!((status, body["result"].as_str()), (StatusCode::OK, Some("restarted public/default/loud instance 1")));
    assert_eq!(post(&worker, &format!("{LOUD}/5/restart")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(post(&worker, &format!("{LOUD}/pause")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(worker.handle.status(Some("public/default/loud")).expect("status")[0].instances.len(), 2);
    assert_eq!(
        call(worker.state(), Method::POST, format!("{LOUD}/trigger"), Some(TOKEN), b"config tone string".to_vec())
            .await,
        (StatusCode::OK, Value::String("Some(\"firm\")".into()))
    );

    // An update of a function whose spec file is TOML keeps it TOML, nested user config too.
    let config = br#"{"userConfig": {"limits": {"high": 30.5, "labels": ["a", "b"]}}, "parallelism": 2}"#;
    let (status, body) =
        send(&worker, Method::PUT, "/admin/v3/functions/public/default/shout", form(&[("functionConfig", config)]))
            .await;
    assert_eq!(
        (status, body["how"].as_str()),
        (StatusCode::OK, Some("configuration, parallelism 1 -> 2 applied live")),
        "{body}"
    );
    let written = fs::read_to_string(worker.functions_dir.join("shout.toml")).expect("the spec file");
    let reread = pfn::config::FunctionSpec::from_file(&worker.functions_dir.join("shout.toml")).expect("valid TOML");
    assert_eq!((reread.parallelism, reread.user_config["limits"]["labels"][1].as_str()), (2, Some("b")), "{written}");

    // A function stopped while it waits for its plugin stays stopped when the plugin comes;
    // started, it runs.
    let waiting = json!({"inputs": ["later"], "plugin": "versioned"}).to_string();
    let uri = "/admin/v3/functions/public/default/later";
    assert_eq!(
        send(&worker, Method::POST, uri, form(&[("functionConfig", waiting.as_bytes())])).await.0,
        StatusCode::OK
    );
    assert_eq!(state_of(&worker, "public/default/later"), "waiting for plugin");
    assert_eq!(post(&worker, &format!("{uri}/stop")).await.0, StatusCode::OK);
    let staging = tempfile::tempdir().expect("a staging directory");
    let staged = staging.path().join("libversioned.so");
    fs::copy(pfn_tests::fixtures::versioned("1.0.0"), &staged).expect("the plugin");
    let pinned = pfn_tests::pfn_cli::pfn(staging.path()).args(["plugin", "pin"]).arg(&staged).output().expect("pin");
    assert!(pinned.status.success(), "{:?}", pfn_tests::pfn_cli::texts(&pinned));
    fs::copy(staged.with_extension("pfn.toml"), worker.plugins_dir.join("libversioned.pfn.toml")).expect("pin");
    fs::copy(&staged, worker.plugins_dir.join("libversioned.so")).expect("the plugin");
    std::thread::sleep(Duration::from_millis(500)); // ten scans of the plugins directory
    assert_eq!(state_of(&worker, "public/default/later"), "stopped");
    assert_eq!(post(&worker, &format!("{uri}/start")).await.0, StatusCode::OK);
    wait_for_state(&worker, "public/default/later", "running");

    // Deleted: the spec file goes with it.
    assert_eq!(call(worker.state(), Method::DELETE, LOUD.to_owned(), Some(TOKEN), Vec::new()).await.0, StatusCode::OK);
    assert!(!worker.functions_dir.join("public.default.loud.json").exists());
    assert_eq!(worker.handle.names("public", "default"), ["later", "shout"]);
}
