//! Every verification refusal, with an error naming the problem, and a process that keeps
//! running (and loading good plugins) after each one.

use std::path::{Path, PathBuf};

use abi_stable::std_types::RStr;
use pfn::{
    context::{FunctionIdentity, Services},
    instance::plain_record,
    loader::{Loader, Pin},
    verify::{Manifest, Sha256Digest, VerifyError},
};
use pfn_tests::{
    fixtures::{fixture, hand_built, loader_in, plugin, scratch, sha256_of},
    pfn_cli::{pfn, texts},
};

/// Copies `source` into `dir` under `name`, so manifests written beside it stay in `dir`.
fn copy_into(dir: &Path, source: &Path, name: &str) -> PathBuf {
    let copy = dir.join(name);
    std::fs::copy(source, &copy).expect("copy fixture");
    copy
}

/// Loads `path` pinned by its own digest and returns the refusal.
fn refusal(loader: &Loader, path: &Path) -> VerifyError {
    loader.load(path, Pin::Digest(sha256_of(path))).expect_err("the plugin must be refused")
}

/// After a refusal the process goes on: a good plugin still loads and answers.
fn assert_still_serving(loader: &Loader) {
    let good = plugin("exclamation");
    let plugin = loader.load(&good, Pin::Manifest).expect("the example plugin loads");
    let mut instance = plugin.instantiate(FunctionIdentity::default(), Services::default()).expect("init succeeds");
    let record = plain_record(b"still here", RStr::from_str("t"), "1");
    assert_eq!(instance.process(&record).0.expect("call succeeds"), Some(&b"still here!"[..]));
}

#[test]
fn wrong_sha256_shows_both_digests() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let path = plugin("exclamation");
    let wrong = Sha256Digest::of(b"something else");
    let error = loader.load(&path, Pin::Digest(wrong)).expect_err("a wrong digest is refused");
    let text = error.to_string();
    assert!(matches!(error, VerifyError::DigestMismatch { .. }), "{text}");
    assert!(text.contains(&wrong.to_string()) && text.contains(&sha256_of(&path).to_string()), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert_still_serving(&loader);
}

#[test]
fn unpinned_file_is_refused_with_the_way_to_pin_it() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let path = copy_into(dir.path(), &plugin("exclamation"), "libexclamation.so");
    let error = loader.load(&path, Pin::Manifest).expect_err("no pin, no load");
    let text = error.to_string();
    assert!(matches!(error, VerifyError::NotPinned { .. }), "{text}");
    assert!(text.contains("pfn plugin pin") && text.contains("libexclamation.pfn.toml"), "{text}");
    assert_still_serving(&loader);
}

#[test]
fn manifest_with_another_digest_is_refused() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let path = copy_into(dir.path(), &plugin("exclamation"), "libexclamation.so");
    let pinned = Sha256Digest::of(b"an older build");
    Manifest { name: "exclamation".into(), version: "1.0.0".into(), sha256: pinned.to_string() }
        .write_for(&path)
        .expect("manifest written");
    let error = loader.load(&path, Pin::Manifest).expect_err("tampered file is refused");
    assert!(matches!(error, VerifyError::DigestMismatch { expected, .. } if expected == pinned), "{error}");
    assert_still_serving(&loader);
}

#[test]
fn manifest_naming_another_plugin_is_refused() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let path = copy_into(dir.path(), &plugin("exclamation"), "libexclamation.so");
    let digest = sha256_of(&path).to_string();
    Manifest { name: "exclamation".into(), version: "9.9.9".into(), sha256: digest }
        .write_for(&path)
        .expect("manifest written");
    let error = loader.load(&path, Pin::Manifest).expect_err("version mismatch is refused");
    let text = error.to_string();
    assert!(matches!(error, VerifyError::ManifestMismatch { field: "version", .. }), "{text}");
    assert!(text.contains("\"1.0.0\"") && text.contains("\"9.9.9\""), "{text}");
}

#[test]
fn malformed_manifest_is_refused() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let path = copy_into(dir.path(), &plugin("exclamation"), "libexclamation.so");
    std::fs::write(Manifest::path_for(&path), "name = 3").expect("manifest written");
    let error = loader.load(&path, Pin::Manifest).expect_err("bad manifest is refused");
    assert!(matches!(error, VerifyError::BadManifest { .. }), "{error}");
    assert!(error.to_string().contains("libexclamation.pfn.toml"), "{error}");
}

#[test]
fn truncated_library_is_refused_before_it_is_opened() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let bytes = std::fs::read(plugin("exclamation")).expect("plugin readable");
    for cut in [bytes.len() / 10, bytes.len() / 2, bytes.len() - 100] {
        let path = dir.path().join(format!("truncated-{cut}.so"));
        std::fs::write(&path, &bytes[..cut]).expect("truncated copy written");
        let error = refusal(&loader, &path);
        assert!(matches!(error, VerifyError::Malformed { .. }), "{error}");
        assert!(error.to_string().contains("truncated"), "{error}");
    }
    assert_still_serving(&loader);
}

#[test]
fn non_library_file_is_refused() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let path = dir.path().join("notes.so");
    std::fs::write(&path, "this is not a library\n").expect("file written");
    let error = refusal(&loader, &path);
    assert!(matches!(error, VerifyError::Malformed { .. }), "{error}");
    assert!(error.to_string().contains("not an ELF file"), "{error}");
    assert_still_serving(&loader);
}

#[test]
fn shared_library_without_a_pfn_module_is_refused() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let libm = PathBuf::from(format!("/lib/{}-linux-gnu/libm.so.6", std::env::consts::ARCH));
    assert!(libm.exists(), "{} is expected on this system", libm.display());
    let error = refusal(&loader, &libm);
    assert!(matches!(error, VerifyError::NotAPlugin { .. }), "{error}");
    assert!(error.to_string().contains("exports no pfn root module"), "{error}");
    assert_still_serving(&loader);
}

#[test]
fn broken_layout_is_refused_with_a_short_summary() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let error = refusal(&loader, &fixture("broken-layout"));
    let text = error.to_string();
    assert!(matches!(error, VerifyError::Layout { .. }), "{text}");
    assert!(text.contains("expected type PluginModule") && text.contains("found type PluginModule"), "{text}");
    assert!(text.lines().count() == 1 && text.len() < 600, "summary too long: {text}");
    assert_still_serving(&loader);
}

#[test]
fn incompatible_abi_major_is_refused() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let error = refusal(&loader, &hand_built("future-abi"));
    let text = error.to_string();
    assert!(matches!(error, VerifyError::AbiVersion { .. }), "{text}");
    assert!(text.contains("ABI 2.0.0") && text.contains(&format!("^{}", pfn_abi::ABI_VERSION)), "{text}");
    assert_still_serving(&loader);
}

#[test]
fn panic_abort_build_is_refused() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let error = refusal(&loader, &fixture("abort-build"));
    let text = error.to_string();
    assert!(matches!(error, VerifyError::PanicStrategy { found: "abort", .. }), "{text}");
    assert!(text.contains("panic = \"unwind\""), "{text}");
    assert_still_serving(&loader);
}

#[test]
fn invalid_declared_name_is_refused() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let error = refusal(&loader, &hand_built("bad-name"));
    assert!(matches!(&error, VerifyError::BadName { found, .. } if found == "9 lives!"), "{error}");
    assert_still_serving(&loader);
}

#[test]
fn invalid_declared_version_is_refused() {
    let dir = scratch();
    let loader = loader_in(dir.path());
    let error = refusal(&loader, &hand_built("bad-version"));
    assert!(matches!(&error, VerifyError::BadVersion { found, .. } if found == "one"), "{error}");
    assert_still_serving(&loader);
}

#[test]
fn cli_refusal_names_the_problem_and_exits_nonzero() {
    let dir = scratch();
    let wrong = Sha256Digest::of(b"x").to_string();
    let output = pfn(dir.path())
        .args(["run", "--plugin"])
        .arg(plugin("exclamation"))
        .args(["--sha256", &wrong])
        .output()
        .expect("pfn runs");
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sha256 mismatch") && stderr.contains(&wrong), "{stderr}");
}

#[test]
fn inspect_reports_what_a_plugin_declares() {
    let dir = scratch();
    let output = pfn(dir.path())
        .args(["plugin", "inspect", "--output", "json"])
        .arg(fixture("abort-build"))
        .output()
        .expect("pfn runs");
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("inspect prints JSON");
    assert_eq!(report["name"], "abort-build");
    assert_eq!(report["version"], "1.0.0");
    assert_eq!(report["abi_version"], pfn_abi::ABI_VERSION);
    assert_eq!(report["panic_strategy"], "abort");
    assert_eq!(report["sha256"], sha256_of(&fixture("abort-build")).to_string());
    assert_eq!(report["accepted"], false);
}

#[test]
fn pin_writes_a_manifest_that_run_then_trusts() {
    let dir = scratch();
    let path = copy_into(dir.path(), &plugin("exclamation"), "libexclamation.so");
    let pinned = pfn(dir.path()).args(["plugin", "pin"]).arg(&path).output().expect("pfn runs");
    assert!(pinned.status.success(), "{}", texts(&pinned).1);
    let manifest = Manifest::read_for(&path).expect("manifest readable").expect("manifest written");
    assert_eq!(manifest.name, "exclamation");
    assert_eq!(manifest.sha256, sha256_of(&path).to_string());
    let loader = loader_in(dir.path());
    loader.load(&path, Pin::Manifest).expect("pinned plugin loads");
}
