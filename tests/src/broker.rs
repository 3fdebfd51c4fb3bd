//! A real Pulsar-protocol broker for the tests: pulsar-lite, as a child process with its own
//! port, data directory, config and log.
//!
//! `scripts/setup.sh` installs pulsar-lite into `$CARGO_TARGET_DIR/pulsar-venv`;
//! `PFN_PULSAR_LITE` names another binary. The stock `pulsar` crate cannot read the MESSAGE
//! frames pulsar-lite sends: connect it through a [`crate::relay::Relay`].

use std::{
    fs,
    io::{self, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use pulsar::proto::{BaseCommand, CommandConnect, base_command::Type};
use tempfile::TempDir;

use crate::{fixtures::target_dir, relay::frame};

/// How long a start or restart may take before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many log lines a failing test prints.
const LOG_TAIL: usize = 40;

/// The config pulsar-lite reads. Without `[metrics] enabled = false` it also binds 0.0.0.0:8080,
/// which two brokers cannot share.
const CONFIG: &str = "[metrics]\nenabled = false\n";

/// A running pulsar-lite broker. Killed (SIGKILL) when dropped; a panicking test prints the end
/// of its log.
#[derive(Debug)]
pub struct TestBroker {
    binary: PathBuf,
    dir: TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl TestBroker {
    /// Starts a broker on a free loopback port with a fresh data directory, and waits until it
    /// answers a Pulsar CONNECT. Panics, saying why, if it cannot.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("pulsar-lite-").tempdir().expect("broker temp dir");
        fs::write(dir.path().join("pulsar-lite.toml"), CONFIG).expect("write broker config");
        let mut broker = Self { binary: binary(), dir, addr: free_port(), child: None };
        // The port is free when picked; another process may take it before the broker binds,
        // so a broker that exits at once is tried again on another port.
        let mut failure = String::new();
        for _ in 0..3 {
            match broker.spawn_and_wait() {
                Ok(()) => return broker,
                Err(why) => failure = why,
            }
            broker.kill();
            broker.addr = free_port();
        }
        // Dropped first, so that its log is not printed twice.
        drop(broker);
        panic!("pulsar-lite did not start: {failure}");
    }

    /// The broker's address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's own `pulsar://` URL. The stock `pulsar` crate cannot consume from it
    /// directly; use a [`crate::relay::Relay`].
    pub fn url(&self) -> String {
        format!("pulsar://{}", self.addr)
    }

    /// The `--db-path` the broker runs with, kept across [`TestBroker::restart`]. pulsar-lite
    /// takes it as a prefix: it stores `<db-path>.rocksdb/` and `<db-path>.metadata.json`.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file the broker logs to (stdout and stderr, across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("pulsar-lite.log")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the broker process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the broker with SIGKILL, as a crash would, and reaps it. Does nothing if it is not
    /// running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port and data directory,
    /// waiting until it answers. Panics if it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        // The port may stay busy for a moment after the kill; keep trying until the deadline.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(failure) if Instant::now() >= deadline => {
                    panic!("pulsar-lite did not restart on {}: {failure}", self.addr)
                }
                Err(_) => {
                    self.kill();
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// Spawns the broker and waits until it answers; on failure says why.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("broker log {}: {e}", self.log_path().display()))?;
        let stderr = log.try_clone().map_err(|e| format!("broker log: {e}"))?;
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.path().join("pulsar-lite.toml"))
            .arg("--addr")
            .arg(self.addr.to_string())
            .arg("--db-path")
            .arg(self.db_path())
            .args(["--log-level", "warn"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until the broker completes a CONNECT handshake.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error = String::from("no attempt");
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("pulsar-lite exited with {status}\n{}", self.log_tail()));
            }
            match handshake(self.addr) {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e.to_string(),
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no CONNECTED within {READY_TIMEOUT:?}: {last_error}\n{}", self.log_tail()))
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
        format!("--- last lines of {} ---\n{tail}", self.log_path().display())
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// The pulsar-lite binary: `PFN_PULSAR_LITE`, else the one `scripts/setup.sh` installs.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PFN_PULSAR_LITE") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "PFN_PULSAR_LITE={} is not a file", path.display());
        return path;
    }
    let venv = target_dir().join("pulsar-venv");
    let found = installed_in(&venv);
    found.unwrap_or_else(|| {
        panic!(
            "pulsar-lite (the test broker) is not installed in {}: run scripts/setup.sh, \
             or set PFN_PULSAR_LITE to the binary",
            venv.display()
        )
    })
}

/// `<venv>/lib/python3.*/site-packages/pulsar_lite/bin/pulsar-lite`, whatever the Python version.
fn installed_in(venv: &Path) -> Option<PathBuf> {
    let lib = fs::read_dir(venv.join("lib")).ok()?;
    lib.flatten()
        .map(|python| python.path().join("site-packages/pulsar_lite/bin/pulsar-lite"))
        .find(|binary| binary.is_file())
}

/// A loopback port nobody listens on now.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address")
}

/// Opens a connection, sends CONNECT and expects CONNECTED back.
fn handshake(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let connect = BaseCommand {
        r#type: Type::Connect as i32,
        connect: Some(CommandConnect {
            client_version: "pfn-tests-probe".into(),
            protocol_version: Some(12),
            ..Default::default()
        }),
        ..Default::default()
    };
    stream.write_all(&frame::encode_command(&connect))?;
    let mut answer = Vec::new();
    if !frame::read_frame(&mut stream, &mut answer)? {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before CONNECTED"));
    }
    let command = frame::decode_command(&answer)?;
    if command.r#type == Type::Connected as i32 {
        Ok(())
    } else {
        Err(io::Error::other(format!("answered CONNECT with command type {}", command.r#type)))
    }
}
