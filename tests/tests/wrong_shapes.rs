//! A wrong function shape is a compile error that says which shapes are accepted.
//!
//! Each case is a one-file cdylib crate in a temporary directory, checked by the real cargo
//! against the workspace's `Cargo.lock`. All cases share one target directory, so the
//! dependencies are checked once and each later case takes about a second.

use std::{env, fs, path::PathBuf, process::Command, time::Instant};

use pfn_tests::fixtures::{target_dir, workspace_root};

/// The opening of the list of accepted shapes in the macro's own errors.
const SHAPES: &str = "a pfn function has one of these shapes:";

/// A plugin crate's source and what checking it must come to.
struct Case {
    name: &'static str,
    source: &'static str,
    /// `None`: it must compile without warnings. `Some(texts)`: it must fail, saying every text.
    expected: Option<&'static [&'static str]>,
}

const CASES: &[Case] = &[
    Case {
        // The control: proves that the harness can succeed (and the expansion is warning-free).
        name: "context-and-input",
        source: "#[pfn_abi::function]
fn f(_ctx: &pfn_abi::Context, input: &str) -> Option<String> {
    Some(input.to_owned())
}",
        expected: None,
    },
    Case {
        name: "three-parameters",
        source: "#[pfn_abi::function]
fn f(a: &str, b: &str, c: &str) -> String {
    format!(\"{a}{b}{c}\")
}",
        expected: Some(&["takes at most two parameters", SHAPES]),
    },
    Case {
        name: "first-not-context",
        source: "#[pfn_abi::function]
fn f(a: &str, b: &str) -> String {
    format!(\"{a}{b}\")
}",
        expected: Some(&["the first is `&Context` or `&mut Context`", SHAPES]),
    },
    Case {
        name: "input-before-context",
        source: "#[pfn_abi::function]
fn f(input: &str, _ctx: &pfn_abi::Context) -> String {
    input.to_owned()
}",
        expected: Some(&["the first is `&Context` or `&mut Context`", SHAPES]),
    },
    Case {
        name: "two-contexts",
        source: "#[pfn_abi::function]
fn f(_a: &pfn_abi::Context, _b: &mut pfn_abi::Context) {}",
        expected: Some(&["the first is `&Context` or `&mut Context`", SHAPES]),
    },
    Case {
        name: "context-by-value",
        source: "#[pfn_abi::function]
fn f(_ctx: pfn_abi::Context) {}",
        expected: Some(&["take the context by reference", SHAPES]),
    },
    Case {
        name: "async",
        source: "#[pfn_abi::function]
async fn f(input: &str) -> String {
    input.to_owned()
}",
        expected: Some(&["async functions are not supported", SHAPES]),
    },
    Case {
        name: "generic",
        source: "#[pfn_abi::function]
fn f<T>(_x: T) -> String {
    String::new()
}",
        expected: Some(&["generic functions cannot be exported", SHAPES]),
    },
    Case {
        name: "unsupported-input",
        source: "#[pfn_abi::function]
fn f(x: u32) -> String {
    x.to_string()
}",
        expected: Some(&[
            "`u32` is not an input type a pfn function can take",
            "accepted inputs: Vec<u8>, &[u8], String, &str, or Json<T> for any serde type T",
        ]),
    },
    Case {
        name: "unsupported-return",
        source: "#[pfn_abi::function]
fn f(x: &str) -> u32 {
    x.len() as u32
}",
        expected: Some(&[
            "`u32` is not a return type a pfn function can have",
            "accepted: (), Result<(), E>, O, Option<O>, Result<O, E> or Result<Option<O>, E>",
            "where O is Vec<u8>, &[u8], String, &str or Json<T>, and E implements Display",
        ]),
    },
    Case {
        name: "unsupported-optional-return",
        source: "#[pfn_abi::function]
fn f(x: &str) -> Option<u32> {
    Some(x.len() as u32)
}",
        expected: Some(&[
            "Option<u32>` is not a return type a pfn function can have",
            "where O is Vec<u8>, &[u8], String, &str or Json<T>",
        ]),
    },
    Case {
        name: "error-not-display",
        source: "#[pfn_abi::function]
fn f(x: &str) -> Result<String, Vec<u8>> {
    Ok(x.to_owned())
}",
        expected: Some(&["is not a return type a pfn function can have", "E implements Display"]),
    },
    Case {
        name: "on-a-struct",
        source: "#[pfn_abi::function]
pub struct Upper;",
        expected: Some(&["goes on a fn or an `impl StatefulFunction for T` block", SHAPES]),
    },
    Case {
        name: "impl-of-another-trait",
        source: "pub struct Upper;

#[pfn_abi::function]
impl Default for Upper {
    fn default() -> Self {
        Upper
    }
}",
        expected: Some(&["takes `impl StatefulFunction for T`", SHAPES]),
    },
];

/// Writes `case` as a crate in a temporary directory and checks it; returns (success, stderr).
fn check(case: &Case) -> (bool, String) {
    let dir = tempfile::Builder::new().prefix("pfn-wrong-shape-").tempdir().expect("temporary directory");
    let root = workspace_root();
    let manifest = format!(
        "[package]
name = \"wrong-shape-{name}\"
version = \"0.0.0\"
edition = \"2024\"
publish = false

[lib]
crate-type = [\"cdylib\"]
path = \"lib.rs\"

[dependencies]
pfn-abi = {{ path = {abi:?} }}

[workspace]
",
        name = case.name,
        abi = root.join("plugin-abi").to_str().expect("UTF-8 workspace path"),
    );
    fs::write(dir.path().join("Cargo.toml"), manifest).expect("write Cargo.toml");
    fs::write(dir.path().join("lib.rs"), case.source).expect("write lib.rs");
    fs::copy(root.join("Cargo.lock"), dir.path().join("Cargo.lock")).expect("copy the workspace Cargo.lock");

    let output = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        // The human format: the short one drops the notes that list the accepted types.
        .args(["check", "--offline", "--quiet", "--color", "never"])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", shared_target_dir())
        .output()
        .expect("run cargo check");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `<target>/compile-fail`, absolute (a relative CARGO_TARGET_DIR is taken from the workspace).
fn shared_target_dir() -> PathBuf {
    workspace_root().join(target_dir()).join("compile-fail")
}

#[test]
fn wrong_shapes_fail_to_compile_and_say_what_is_accepted() {
    let mut failures = Vec::new();
    for case in CASES {
        let started = Instant::now();
        let (success, stderr) = check(case);
        eprintln!("{}: {:.1} s", case.name, started.elapsed().as_secs_f64());
        let problem = match case.expected {
            None if !success => Some("does not compile".to_owned()),
            None if stderr.contains("warning") => Some("compiles with warnings".to_owned()),
            Some(_) if success => Some("compiles".to_owned()),
            Some(texts) => {
                let missing: Vec<_> = texts.iter().filter(|text| !stderr.contains(*text)).collect();
                (!missing.is_empty()).then(|| format!("fails without saying {missing:?}"))
            }
            None => None,
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}; cargo said:\n{stderr}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
