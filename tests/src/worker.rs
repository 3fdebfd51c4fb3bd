//! Running a real `pfn worker` in a scratch directory, and talking to it with the real CLI.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    fixtures::plugin,
    pfn_cli::{pfn, run_with_stdin, texts},
};

/// A `pfn worker` child process with its own plugins, functions and state directories.
#[derive(Debug)]
pub struct RunningWorker {
    child: Option<Child>,
    pub scratch: PathBuf,
    pub plugins_dir: PathBuf,
    pub functions_dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// The directories of one worker below a scratch directory, created on the spot.
#[derive(Debug, Clone)]
pub struct WorkerDirs {
    pub plugins: PathBuf,
    pub functions: PathBuf,
    pub state: PathBuf,
}

impl WorkerDirs {
    /// `plugins/`, `functions/` and `state/` below `scratch`.
    pub fn create(scratch: &Path) -> Self {
        let dirs = Self {
            plugins: scratch.join("plugins"),
            functions: scratch.join("functions"),
            state: scratch.join("state"),
        };
        for dir in [&dirs.plugins, &dirs.functions, &dirs.state] {
            fs::create_dir_all(dir).expect("scratch directories");
        }
        dirs
    }

    /// `pfn worker` on these directories (run from `scratch`), with stdin and stdout closed;
    /// the caller adds the log level, other flags and where stderr goes.
    pub fn command(&self, scratch: &Path) -> Command {
        let mut command = pfn(scratch);
        command
            .arg("worker")
            .arg("--plugins-dir")
            .arg(&self.plugins)
            .arg("--functions")
            .arg(&self.functions)
            .arg("--state-dir")
            .arg(&self.state)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    }
}

/// A spec file: its file name and TOML text.
pub type SpecFile<'a> = (&'a str, &'a str);

impl RunningWorker {
    /// Writes `specs`, installs `plugins` (source file, file name in the plugins directory),
    /// starts the worker with `args`, and waits until its endpoint answers.
    pub fn start(scratch: &Path, specs: &[SpecFile<'_>], plugins: &[(&Path, &str)], args: &[&str]) -> Self {
        let dirs = WorkerDirs::create(scratch);
        for (file, text) in specs {
            fs::write(dirs.functions.join(file), text).expect("write spec");
        }
        let mut worker = Self {
            child: None,
            scratch: scratch.into(),
            socket: dirs.state.join("worker.sock"),
            log: scratch.join("worker.log"),
            plugins_dir: dirs.plugins.clone(),
            functions_dir: dirs.functions.clone(),
        };
        for (source, name) in plugins {
            worker.install_plugin(source, name);
        }
        let log = fs::File::create(&worker.log).expect("worker log file");
        let child = dirs
            .command(scratch)
            .env("PFN_LOG", "info")
            .args(["--watch-interval-ms", "100", "--nack-backoff-ms", "10", "--max-nack-backoff-ms", "100"])
            .args(args)
            .stderr(log)
            .spawn()
            .expect("pfn worker starts");
        worker.child = Some(child);
        worker.wait_until("the endpoint answers", |worker| worker.try_status().is_some());
        worker
    }

    /// A worker running `shout` (exclamation, `words` to `shouts`) with its admin API on a free
    /// loopback port behind `token`; returns once shout runs.
    pub fn start_shout_with_admin(scratch: &Path, token: &str) -> Self {
        let spec = "name = \"shout\"\nplugin = \"exclamation\"\ninputs = [\"words\"]\noutput = \"shouts\"\n";
        let worker = Self::start(
            scratch,
            &[("shout.toml", spec)],
            &[(&plugin("exclamation"), "libexclamation.so")],
            &["--admin-addr", "127.0.0.1:0", "--admin-token", token],
        );
        worker.wait_until("shout runs", |worker| worker.function("public/default/shout")["state"] == "running");
        worker
    }

    /// The worker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Pins `source` as `name` in a staging directory, then puts its manifest and, by rename,
    /// the library into the plugins directory, so the worker never sees a partial file.
    pub fn install_plugin(&self, source: &Path, name: &str) {
        let staged = self.stage(source, name);
        let manifest = |dir: &Path| dir.join(name.replace(".so", ".pfn.toml"));
        fs::copy(manifest(staged.parent().expect("staging dir")), manifest(&self.plugins_dir)).expect("manifest");
        let partial = self.plugins_dir.join(format!("{name}.partial"));
        fs::copy(&staged, &partial).expect("copy plugin");
        fs::rename(&partial, self.plugins_dir.join(name)).expect("rename plugin");
    }

    /// Copies `source` as `name` into a staging directory and writes its manifest there.
    pub fn stage(&self, source: &Path, name: &str) -> PathBuf {
        let staging = self.scratch.join("staging");
        fs::create_dir_all(&staging).expect("staging dir");
        let staged = staging.join(name);
        fs::copy(source, &staged).expect("stage plugin");
        let pinned = pfn(&self.scratch).args(["plugin", "pin"]).arg(&staged).output().expect("pfn plugin pin");
        assert!(pinned.status.success(), "pin failed: {:?}", texts(&pinned));
        staged
    }

    /// The worker's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `pfn` pointed at this worker.
    pub fn pfn(&self) -> Command {
        let mut command = pfn(&self.scratch);
        command.env("PFN_WORKER", &self.socket);
        command
    }

    /// `pfn topics produce TOPIC` with `lines` on stdin.
    pub fn produce(&self, topic: &str, lines: &[u8], json: bool) -> Output {
        let mut command = self.pfn();
        command.args(["topics", "produce", topic]);
        if json {
            command.args(["--input-format", "json"]);
        }
        let output = run_with_stdin(command, lines);
        assert!(output.status.success(), "produce failed: {:?}", texts(&output));
        output
    }

    /// `pfn functions trigger FQFN --value VALUE`.
    pub fn trigger(&self, fqfn: &str, value: &str) -> Output {
        self.pfn().args(["functions", "trigger", fqfn, "--value", value]).output().expect("pfn functions trigger")
    }

    /// Triggers `fqfn` with `value` and returns the output it printed.
    pub fn trigger_ok(&self, fqfn: &str, value: &str) -> String {
        let output = self.trigger(fqfn, value);
        let (stdout, stderr) = texts(&output);
        assert!(output.status.success(), "trigger of {fqfn} with {value:?} failed: {stderr}");
        stdout.trim_end_matches('\n').to_owned()
    }

    /// `pfn topics create-subscription TOPIC -s NAME`.
    pub fn create_subscription(&self, topic: &str, subscription: &str) {
        let output = self.pfn().args(["topics", "create-subscription", topic, "-s", subscription]).output();
        let output = output.expect("pfn topics create-subscription");
        assert!(output.status.success(), "create-subscription failed: {:?}", texts(&output));
    }

    /// Reads up to `count` messages of `subscription` (stopping after 5 idle seconds).
    pub fn consume(&self, topic: &str, subscription: &str, count: u64, json: bool) -> Vec<String> {
        let mut command = self.pfn();
        command.args(["topics", "consume", topic, "-s", subscription, "--idle-timeout-ms", "5000"]);
        command.args(["--count", &count.to_string()]);
        if json {
            command.args(["--output-format", "json"]);
        }
        let output = command.output().expect("pfn topics consume");
        assert!(output.status.success(), "consume failed: {:?}", texts(&output));
        String::from_utf8(output.stdout).expect("utf-8 output").lines().map(str::to_owned).collect()
    }

    /// `pfn topics stats TOPIC`, as JSON.
    pub fn topic_stats(&self, topic: &str) -> Value {
        let output = self.pfn().args(["topics", "stats", topic]).output().expect("pfn topics stats");
        assert!(output.status.success(), "topics stats failed: {:?}", texts(&output));
        serde_json::from_slice(&output.stdout).expect("topic stats are JSON")
    }

    fn try_status(&self) -> Option<Value> {
        let output = self.pfn().args(["functions", "status"]).output().ok()?;
        output.status.success().then(|| serde_json::from_slice(&output.stdout).ok()).flatten()
    }

    /// `pfn functions status`, as JSON.
    pub fn status(&self) -> Value {
        self.try_status().unwrap_or_else(|| panic!("worker status unavailable; log:\n{}", self.log_text()))
    }

    /// The status of function `fqfn`.
    pub fn function(&self, fqfn: &str) -> Value {
        let status = self.status();
        let functions = status["functions"].as_array().expect("functions list");
        functions.iter().find(|f| f["fqfn"] == fqfn).cloned().unwrap_or_else(|| panic!("no {fqfn} in {status}"))
    }

    /// The sum of counter `name` over the instances of `fqfn`.
    pub fn total(&self, fqfn: &str, name: &str) -> u64 {
        let function = self.function(fqfn);
        function["instances"].as_array().expect("instances").iter().map(|i| i[name].as_u64().unwrap_or(0)).sum()
    }

    /// Polls `condition` (for up to two minutes) and fails with the worker's log if it never holds.
    pub fn wait_until(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !condition(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the worker has logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin API's address (`HOST:PORT`), from the worker's log; for a worker started with
    /// `--admin-addr 127.0.0.1:0`.
    pub fn admin_addr(&self) -> String {
        let log = self.log_text();
        let addr = log
            .lines()
            .find(|line| line.contains("admin API listening"))
            .and_then(|line| line.split("addr=").nth(1))
            .unwrap_or_else(|| panic!("no admin address in the log:\n{log}"));
        addr.trim().to_owned()
    }

    /// Sends SIGTERM and waits for the worker to exit; returns its status and log.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("worker running");
        let signalled = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(signalled.success());
        let status = child.wait().expect("worker exits");
        (status, self.log_text())
    }
}

impl RunningWorker {
    /// Sends SIGTERM and waits up to `limit` for the worker to exit: its status and log, or
    /// `None` when it is still running then (it is killed when dropped).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<(ExitStatus, String)> {
        let child = self.child.as_mut().expect("worker running");
        let signalled = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(signalled.success());
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("the worker's status") {
                self.child = None;
                return Some((status, self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
