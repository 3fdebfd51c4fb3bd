//! One child process: starting it so that it cannot outlive the worker, talking to it, and
//! knowing why it died.
//!
//! The child gets its socket on fd 3 and the progress word on fd 4. It is started from one
//! long-lived thread ([`on_spawner_thread`]) because `PR_SET_PDEATHSIG`, which kills the
//! child when the worker dies (even by `kill -9`), fires when the thread that forked it ends.
//! Its stdout and stderr go to the worker's log, and their last lines are kept to say why it died.

use std::{
    collections::VecDeque,
    io::{self, BufRead, BufReader},
    os::{
        fd::AsRawFd,
        unix::{net::UnixStream, process::CommandExt, process::ExitStatusExt},
    },
    path::Path,
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, OnceLock, mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    host::{PROGRESS_FD, SOCKET_FD},
    limits::Limits,
    progress::Progress,
    wire::{FrameReader, write_frame},
};
use crate::sync::lock;

/// The most lines of a child's output kept to explain its death.
const TAIL_LINES: usize = 200;
/// How long a child that closed its socket gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// A running child and the worker's ends of what it shares with it.
#[derive(Debug)]
pub struct ChildProcess {
    process: std::process::Child,
    socket: UnixStream,
    frames: FrameReader,
    buffer: Vec<u8>,
    pub progress: Progress,
    tail: Arc<Mutex<VecDeque<String>>>,
    tail_reader: Option<JoinHandle<()>>,
}

/// How a child ended: its exit status in words, and the last lines it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    pub status: String,
    pub output: Vec<String>,
}

impl std::fmt::Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.status)?;
        if let Some(last) = self.output.iter().rev().find(|line| !is_backtrace(line)) {
            write!(f, "; its output ended with: {}", last.trim())?;
        }
        Ok(())
    }
}

/// Whether a line of output is part of a backtrace (or blank), not what was said before it.
fn is_backtrace(line: &str) -> bool {
    line.trim().is_empty()
        || line.starts_with(char::is_whitespace)
        || line.starts_with("stack backtrace:")
        || line.starts_with("note: ")
}

impl ChildProcess {
    /// Starts `program instance-host` with `limits`; `poll` is how long a read waits before
    /// the caller gets to look at the clock.
    pub fn spawn(program: &Path, limits: Limits, poll: Duration) -> io::Result<Self> {
        let (socket, child_end) = UnixStream::pair()?;
        socket.set_read_timeout(Some(poll))?;
        let progress = Progress::create()?;
        let (output, output_writer) = io::pipe()?;
        let mut command = Command::new(program);
        command.arg("instance-host").stdin(Stdio::null()).stdout(output_writer.try_clone()?).stderr(output_writer);
        let (socket_fd, progress_fd) = (child_end.as_raw_fd(), progress.fd());
        let worker = std::process::id();
        // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
        // system calls (fcntl, dup2, prctl, getppid, setrlimit, sched_*affinity), on descriptors
        // that stay open in the worker until the child has started.
        unsafe {
            command.pre_exec(move || {
                let socket = libc::fcntl(socket_fd, libc::F_DUPFD_CLOEXEC, 10);
                let progress = libc::fcntl(progress_fd, libc::F_DUPFD_CLOEXEC, 10);
                if socket < 0
                    || progress < 0
                    || libc::dup2(socket, SOCKET_FD) < 0
                    || libc::dup2(progress, PROGRESS_FD) < 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The worker may have died before the death signal was armed.
                if libc::getppid() as u32 != worker {
                    return Err(io::Error::other("the worker is gone"));
                }
                limits.apply()
            });
        }
        let process = on_spawner_thread(move || command.spawn())??;
        drop(child_end);
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let pid = process.id();
        let kept = Arc::clone(&tail);
        let tail_reader = std::thread::Builder::new()
            .name(format!("pfn-child-{pid}"))
            .spawn(move || keep_output(pid, output, &kept))?;
        Ok(Self {
            process,
            socket,
            frames: FrameReader::default(),
            buffer: Vec::new(),
            progress,
            tail,
            tail_reader: Some(tail_reader),
        })
    }

    pub fn id(&self) -> u32 {
        self.process.id()
    }

    pub fn send(&mut self, frame: &impl serde::Serialize) -> io::Result<()> {
        write_frame(&mut self.socket, &mut self.buffer, frame)
    }

    /// The next frame, or `None` when none came within the poll time. An error means the
    /// child is gone (or broke the protocol).
    pub fn receive(&mut self) -> io::Result<Option<&[u8]>> {
        self.frames.next(&mut self.socket)
    }

    /// Kills the child (if it still runs) and says how it ended.
    pub fn kill(mut self) -> Death {
        let _ = self.process.kill();
        self.reap()
    }

    /// Waits for a child that closed its socket or broke it, killing it after a grace period.
    pub fn reap(mut self) -> Death {
        let deadline = Instant::now() + EXIT_GRACE;
        let status = loop {
            match self.process.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Ok(None) => {
                    let _ = self.process.kill();
                    break self.process.wait().ok();
                }
                Err(_) => break None,
            }
        };
        // The output pipe closes with the child; give its reader a moment to keep the last lines.
        if let Some(reader) = self.tail_reader.take() {
            let deadline = Instant::now() + Duration::from_millis(200);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let output = lock(&self.tail).iter().cloned().collect();
        Death { status: status.map_or_else(|| "vanished".to_owned(), describe), output }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // A child is never left behind: `kill` and `reap` have waited for it already.
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// An exit status in words: `exited with code 3`, `killed by signal 11 (SIGSEGV)`.
pub fn describe(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = match signal {
            libc::SIGABRT => " (SIGABRT)",
            libc::SIGSEGV => " (SIGSEGV)",
            libc::SIGBUS => " (SIGBUS)",
            libc::SIGILL => " (SIGILL)",
            libc::SIGFPE => " (SIGFPE)",
            libc::SIGKILL => " (SIGKILL)",
            libc::SIGTERM => " (SIGTERM)",
            libc::SIGXFSZ => " (SIGXFSZ)",
            _ => "",
        };
        return format!("killed by signal {signal}{name}");
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "ended".to_owned(),
    }
}

/// Logs each line the child writes and keeps the last [`TAIL_LINES`].
fn keep_output(pid: u32, output: io::PipeReader, tail: &Mutex<VecDeque<String>>) {
    let mut lines = BufReader::new(output);
    let mut line = Vec::new();
    while matches!(lines.read_until(b'\n', &mut line), Ok(read) if read > 0) {
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        line.clear();
        if text.is_empty() {
            continue;
        }
        tracing::warn!(target: "pfn::child", pid, "{text}");
        let mut tail = lock(tail);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on the worker's one spawning thread, which lives as long as the process: a
/// child's death signal is tied to the thread that started it.
fn on_spawner_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, waiting) = mpsc::channel::<Job>();
        // If the thread cannot start, `waiting` is dropped and every send below fails.
        let _ = std::thread::Builder::new().name("pfn-spawner".to_owned()).spawn(move || {
            for job in waiting {
                job();
            }
        });
        Mutex::new(jobs)
    });
    let (reply, result) = mpsc::sync_channel(1);
    lock(spawner)
        .send(Box::new(move || {
            let _ = reply.send(job());
        }))
        .map_err(|_| io::Error::other("the thread that starts child processes is not running"))?;
    result.recv().map_err(|_| io::Error::other("the thread that starts child processes stopped"))
}
