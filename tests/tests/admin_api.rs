//! The admin API, called in-process through `admin::router` on a real worker (embedded topics,
//! the exclamation plugin), and over TCP from the real binary: Pulsar's routes and field names,
//! the bearer token, JSON errors with their status codes, and the body limit.

use axum::http::{Method, StatusCode};
use pfn::admin::BODY_LIMIT;
use pfn_tests::{
    fixtures::scratch,
    http,
    in_process::{InProcess, SHOUT, TOKEN, call},
    pfn_cli::texts,
    worker::{RunningWorker, WorkerDirs},
};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_answer_with_pulsars_names_and_refuse_what_they_must() {
    let worker = InProcess::start();
    let state = worker.state();
    let get =
        |uri: &str, token: Option<&'static str>| call(state.clone(), Method::GET, uri.to_owned(), token, Vec::new());

    assert_eq!(get("/admin/v3/worker/health", None).await.0, StatusCode::OK, "health needs no token");
    let (status, scrape) = get("/metrics", None).await;
    assert_eq!(status, StatusCode::OK, "metrics need no token");
    assert!(scrape.as_str().is_some_and(|text| text.contains("pulsar_function_received_total")), "{scrape}");
    let (status, body) = get("/admin/v3/functions/public/default", None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("a bearer token is required")));
    assert_eq!(get("/admin/v3/functions/public/default", Some("guess")).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = get("/admin/v3/functions/public/default", Some(TOKEN)).await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!(["shout"])));
    let (_, spec) = get(SHOUT, Some(TOKEN)).await;
    assert_eq!((spec["name"].as_str(), spec["output"].as_str()), (Some("shout"), Some("shouts")));

    let trigger = |value: &str| {
        call(state.clone(), Method::POST, format!("{SHOUT}/trigger"), Some(TOKEN), value.as_bytes().to_vec())
    };
    assert_eq!(trigger("hello").await, (StatusCode::OK, Value::String("hello!".into())));

    let (status, body) = get(&format!("{SHOUT}/status"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["numInstances"].as_u64(), body["numRunning"].as_u64()), (Some(1), Some(1)));
    let instance = &body["instances"][0];
    assert_eq!(instance["instanceId"], 0);
    assert_eq!(
        (instance["status"]["running"].as_bool(), instance["status"]["numReceived"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(instance["status"]["numSuccessfullyProcessed"], 1);
    assert!(instance["status"]["latestUserExceptions"].as_array().is_some_and(Vec::is_empty));
    assert_eq!(body["pluginVersion"], "1.0.0");
    let (_, one) = get(&format!("{SHOUT}/0/status"), Some(TOKEN)).await;
    assert_eq!(one["numReceived"], 1);
    assert_eq!(get(&format!("{SHOUT}/7/status"), Some(TOKEN)).await.0, StatusCode::NOT_FOUND);

    let (status, stats) = get(&format!("{SHOUT}/stats"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!((stats["receivedTotal"].as_u64(), stats["processedSuccessfullyTotal"].as_u64()), (Some(1), Some(1)));
    assert_eq!(stats["1min"]["receivedTotal"], 1);
    assert!(stats["lastInvocation"].as_i64().is_some_and(|ms| ms > 0), "{stats}");
    assert_eq!(stats["instances"][0]["metrics"]["userExceptionsTotal"], 0);

    let put = call(
        state.clone(),
        Method::POST,
        format!("{SHOUT}/state/greeting"),
        Some(TOKEN),
        br#"{"stringValue":"hi"}"#.to_vec(),
    );
    assert_eq!(put.await.0, StatusCode::NO_CONTENT);
    let (status, entry) = get(&format!("{SHOUT}/state/greeting"), Some(TOKEN)).await;
    assert_eq!(
        (status, entry["key"].as_str(), entry["stringValue"].as_str()),
        (StatusCode::OK, Some("greeting"), Some("hi"))
    );
    assert_eq!(get(&format!("{SHOUT}/state/nothing"), Some(TOKEN)).await.0, StatusCode::NOT_FOUND);
    let wrong_key = call(
        state.clone(),
        Method::POST,
        format!("{SHOUT}/state/a"),
        Some(TOKEN),
        br#"{"key":"b","stringValue":"x"}"#.to_vec(),
    );
    assert_eq!(wrong_key.await.0, StatusCode::BAD_REQUEST);

    let (status, body) = get("/admin/v3/functions/public/default/nope/status", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().is_some_and(|error| error.contains("public/default/nope")), "{body}");
    let too_big =
        call(state.clone(), Method::POST, format!("{SHOUT}/trigger"), Some(TOKEN), vec![b'x'; BODY_LIMIT + 1]);
    assert_eq!(too_big.await.0, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, deleted) = call(state.clone(), Method::DELETE, SHOUT.to_owned(), Some(TOKEN), Vec::new()).await;
    assert_eq!((status, deleted["fqfn"].as_str()), (StatusCode::OK, Some("public/default/shout")));
    assert_eq!(get(SHOUT, Some(TOKEN)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get("/admin/v3/functions/public/default", Some(TOKEN)).await.1, serde_json::json!([]));
}

#[test]
fn a_worker_refuses_to_serve_the_admin_api_beyond_loopback_without_a_token() {
    let dir = scratch();
    let dirs = WorkerDirs::create(dir.path());
    let output = dirs.command(dir.path()).args(["--admin-addr", "0.0.0.0:0"]).output().expect("pfn worker");
    let (_, stderr) = texts(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("--admin-addr 0.0.0.0:0 is not a loopback address"), "{stderr}");
}

#[test]
fn the_binary_serves_the_api_over_tcp_with_its_token() {
    let dir = scratch();
    let worker = RunningWorker::start_shout_with_admin(dir.path(), TOKEN);
    let addr = worker.admin_addr();
    let ask = |token: Option<&str>| {
        let stream = std::net::TcpStream::connect(&addr).expect("the admin API accepts");
        let auth: Vec<String> = token.map(|token| format!("Authorization: Bearer {token}")).into_iter().collect();
        http::get(stream, &format!("{SHOUT}/status"), &auth)
    };
    let refused = ask(None);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let answer = ask(Some(TOKEN));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body: Value = serde_json::from_str(http::body(&answer)).expect("a JSON status");
    assert_eq!(body["numInstances"], 1);

    // Prometheus scrapes the same server, without the token, as a Pulsar worker's REST port.
    let scrape = pfn_tests::metrics::scrape(addr.parse().expect("a socket address"));
    assert!(scrape.contains("pulsar_function_received_total{"), "{scrape}");

    // The worker's Unix socket serves the same API, without a token: its file's permissions
    // guard it.
    let stream = std::os::unix::net::UnixStream::connect(worker.socket()).expect("the socket accepts");
    let over_socket = http::get(stream, &format!("{SHOUT}/status"), &[]);
    assert!(over_socket.starts_with("HTTP/1.1 200"), "{over_socket}");
    let body: Value = serde_json::from_str(http::body(&over_socket)).expect("a status");
    assert_eq!(body["numRunning"], 1);
    let (status, log) = worker.terminate();
    assert!(status.success(), "{log}");
}
