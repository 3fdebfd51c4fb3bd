//! Every accepted function shape, through the real verify-and-dlopen path, in this process
//! and in a child process (the process runtime).

use std::{collections::BTreeMap, sync::Arc};

use pfn::{
    context::{FunctionIdentity, Services},
    execute::{CallOutcome, Input},
    hosted::{Hosting, Instance},
    loader::Pin,
    process::ProcessHosting,
    vocabulary::{Failure, FailureKind},
};
use pfn_tests::fixtures::{loader_in, pfn_bin, scratch, sha256_of, shape};

/// Both ways of hosting an instance: in this process, and in a child `pfn` process.
fn hostings() -> [Hosting; 2] {
    let child = ProcessHosting { program: pfn_bin(), resources: None, timeout: None };
    [Hosting::InProcess, Hosting::Process(Arc::new(child))]
}

/// What one call came to: an output, nothing, or a failure of some kind.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Output(Vec<u8>),
    Nothing,
    Failed(FailureKind),
}

fn instance(name: &str, user_config: &[(&str, &str)], hosting: &Hosting) -> (tempfile::TempDir, Instance) {
    let dir = scratch();
    let path = shape(name);
    let plugin = loader_in(dir.path()).load(&path, Pin::Digest(sha256_of(&path))).expect("shape loads");
    let identity = FunctionIdentity {
        tenant: "public".into(),
        namespace: "default".into(),
        name: format!("shape-{name}"),
        num_instances: 1,
        user_config: user_config.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
        ..FunctionIdentity::default()
    };
    let instance = hosting.instantiate(&plugin, identity, Services::default()).expect("shape init");
    (dir, instance)
}

fn called(instance: &mut Instance, payload: &[u8], message_id: &str) -> Result<Option<Vec<u8>>, Failure> {
    match instance.call(&Input::plain(payload, "in", message_id)).outcome {
        CallOutcome::Output(bytes) => Ok(Some(bytes.to_vec())),
        CallOutcome::Filtered => Ok(None),
        CallOutcome::Failed(failure) => Err(failure),
    }
}

fn call(instance: &mut Instance, payload: &[u8], message_id: &str) -> Outcome {
    match called(instance, payload, message_id) {
        Ok(Some(bytes)) => Outcome::Output(bytes),
        Ok(None) => Outcome::Nothing,
        Err(error) => Outcome::Failed(error.kind),
    }
}

/// Runs `name` over `cases` of (payload, expected outcome), hosted each way.
fn check(name: &str, user_config: &[(&str, &str)], cases: &[(&[u8], Outcome)]) {
    for hosting in hostings() {
        let (_dir, mut instance) = instance(name, user_config, &hosting);
        for (n, (payload, expected)) in cases.iter().enumerate() {
            let outcome = call(&mut instance, payload, &n.to_string());
            let payload = String::from_utf8_lossy(payload);
            assert_eq!(&outcome, expected, "shape {name}, payload {payload:?}, hosted {hosting:?}");
        }
    }
}

fn out(text: &str) -> Outcome {
    Outcome::Output(text.as_bytes().to_vec())
}

#[test]
fn no_context_no_input_no_output() {
    check("unit", &[], &[(b"a", Outcome::Nothing), (b"", Outcome::Nothing)]);
}

#[test]
fn shared_context_only() {
    check(
        "ctx-only",
        &[],
        &[
            (b"a", out("shape-ctx-only 0 key=None p=None t=None topic=in")),
            (b"b", out("shape-ctx-only 1 key=None p=None t=None topic=in")),
        ],
    );
}

#[test]
fn mutable_context_returning_result_unit() {
    check("ctx-mut-only", &[], &[(b"a", Outcome::Nothing), (b"fail", Outcome::Failed(FailureKind::Error))]);
}

#[test]
fn owned_bytes_in_and_out() {
    check("bytes-vec", &[], &[(b"abc", out("cba")), (b"", out(""))]);
}

#[test]
fn borrowed_bytes_in_and_out() {
    check("bytes-slice", &[], &[(b"same", out("same")), (&[0xff, 0xfe][..], Outcome::Output(vec![0xff, 0xfe]))]);
}

#[test]
fn string_in_option_out() {
    check(
        "string-option",
        &[],
        &[
            (b"shout", out("SHOUT")),
            (b"", Outcome::Nothing),
            (&[0xc3, 0x28][..], Outcome::Failed(FailureKind::BadInput)),
        ],
    );
}

#[test]
fn str_in_result_out() {
    check("str-result", &[], &[(b"abc", out("3:abc")), (b"bad", Outcome::Failed(FailureKind::Error))]);
}

#[test]
fn str_in_borrowed_str_out() {
    check("str-borrowed", &[], &[(b"  padded  ", out("padded"))]);
}

#[test]
fn json_in_result_option_json_out() {
    check(
        "json",
        &[],
        &[
            (br#"{"sensor":"s1","value":21}"#, out(r#"{"sensor":"s1","doubled":42}"#)),
            (br#"{"sensor":"s1","value":-1}"#, Outcome::Nothing),
            (br#"{"sensor":"s1","value":0}"#, Outcome::Failed(FailureKind::Error)),
            (b"not json", Outcome::Failed(FailureKind::BadInput)),
        ],
    );
}

#[test]
fn shared_context_and_input_with_user_config() {
    check("ctx-str", &[("suffix", "?!")], &[(b"really", out("really?!"))]);
}

#[test]
fn mutable_context_and_input_reaching_an_unavailable_facility() {
    for hosting in hostings() {
        let (_dir, mut instance) = instance("ctx-mut-bytes", &[], &hosting);
        let error = called(&mut instance, b"x", "0").expect_err("state is not here yet");
        assert_eq!(error.kind, FailureKind::Error);
        assert_eq!(error.message, "state is not available to this instance");
    }
}

#[test]
fn no_input_constant_output() {
    check("static-output", &[], &[(b"a", out("constant")), (b"b", out("constant"))]);
}
