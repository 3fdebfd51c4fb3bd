//! The worker's side of an instance hosted in a child process.
//!
//! The worker keeps its consumers, producers and state; the child only calls the plugin. Inputs
//! go to the child a batch at a time ([`ChildInstance::prepare`]) and come back as outcomes with
//! their effects, which the caller then settles one by one as it would in-process.
//!
//! When the child dies, the progress word says which input's call was running: that input fails
//! with a `crash` (or a `timeout`, when the worker killed the child for overrunning
//! `timeout_ms`), the child is restarted, and the batch's other inputs are called again on the
//! new one. Their state writes in the dead child were rewound first, so nothing is counted twice.

use std::{
    io,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    ahead::{AheadQueue, Called},
    child::{ChildProcess, Death},
    limits::Limits,
    serving,
    wire::{BatchOf, Init, ToChild, ToWorker, WireInput, decode},
};
use crate::{
    config::Resources,
    context::{FunctionIdentity, Services},
    execute::{Executed, Input},
    instance::InitError,
    loader::Plugin,
    plugin_log::{self, InstanceLog},
    vocabulary::{Failure, FailureKind},
};

/// How long a child may take to open its plugin and run `init`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a closing child may take to run `close`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the worker looks at a busy child's progress when no frame comes.
const POLL: Duration = Duration::from_millis(20);
/// Restart waits: none after one death, then doubling from this, up to [`MAX_RESTART_WAIT`].
const FIRST_RESTART_WAIT: Duration = Duration::from_millis(10);
const MAX_RESTART_WAIT: Duration = Duration::from_secs(5);
/// Deaths during a batch that no call can be blamed for, before the batch fails as a whole.
const UNATTRIBUTED_DEATHS: u32 = 3;

/// How the instances of one function run in child processes.
#[derive(Debug, Clone)]
pub struct ProcessHosting {
    /// The `pfn` executable that hosts them.
    pub program: PathBuf,
    pub resources: Option<Resources>,
    /// A call running longer has its child killed.
    pub timeout: Option<Duration>,
}

/// Names the `pfn` executable that hosts instances, for a program that embeds the worker (by
/// default, the running executable is `pfn` itself).
pub const PROGRAM_VARIABLE: &str = "PFN_PROGRAM";

impl ProcessHosting {
    /// Hosting by this very executable, or the one [`PROGRAM_VARIABLE`] names.
    pub fn new(resources: Option<Resources>, timeout: Option<Duration>) -> io::Result<Self> {
        let program = match std::env::var_os(PROGRAM_VARIABLE) {
            Some(program) => PathBuf::from(program),
            None => std::env::current_exe()?,
        };
        Ok(Self { program, resources, timeout })
    }
}

/// What a child said, besides the state asks and log events served on the way.
#[derive(Debug)]
enum Said {
    Ready,
    InitFailed(Failure),
    Done(Vec<Called>),
    Closed(Option<Failure>),
}

/// Why a batch did not come back whole.
#[derive(Debug)]
struct Lost {
    /// The position, among the inputs sent, of the one whose call was running.
    at: Option<usize>,
    failure: Failure,
}

/// An instance hosted in a child process, restarted when it dies.
#[derive(Debug)]
pub struct ChildInstance {
    hosting: Arc<ProcessHosting>,
    plugin: Plugin,
    identity: FunctionIdentity,
    services: Services,
    log: Option<InstanceLog>,
    child: Option<ChildProcess>,
    /// The plugin log level the child was last told.
    log_level: u8,
    ahead: AheadQueue,
    /// Deaths since the last batch that came back, for the restart back-off.
    deaths_in_a_row: u32,
    frame: Vec<u8>,
}

impl ChildInstance {
    /// Starts a child for an instance of `plugin` and waits until its `init` has run.
    pub fn start(
        hosting: Arc<ProcessHosting>,
        plugin: &Plugin,
        identity: FunctionIdentity,
        services: Services,
    ) -> Result<Self, InitError> {
        let log = services
            .log
            .as_ref()
            .map(|function| InstanceLog { function: Arc::clone(function), instance_id: identity.instance_id });
        let mut instance = Self {
            hosting,
            plugin: plugin.clone(),
            identity,
            services,
            log,
            child: None,
            log_level: 0,
            ahead: AheadQueue::default(),
            deaths_in_a_row: 0,
            frame: Vec::new(),
        };
        instance.start_child().map_err(|cause| InitError {
            fqfn: instance.identity.fqfn(),
            plugin: instance.plugin.info.name.clone(),
            version: instance.plugin.info.version.clone(),
            cause,
        })?;
        Ok(instance)
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Runs `inputs` in the child ahead of their calls.
    pub fn prepare(&mut self, inputs: &[Input<'_>]) {
        self.ahead.clear();
        let mut results: Vec<Option<Called>> = inputs.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..inputs.len()).collect();
        let mut unattributed = 0;
        while !pending.is_empty() {
            match self.run_batch(inputs, &pending) {
                Ok(called) => {
                    for (index, called) in pending.drain(..).zip(called) {
                        results[index] = Some(called);
                    }
                }
                Err(Lost { at: Some(position), failure }) => {
                    let index = pending.remove(position);
                    results[index] = Some(Called::failed(failure));
                }
                Err(Lost { at: None, failure }) => {
                    unattributed += 1;
                    if unattributed >= UNATTRIBUTED_DEATHS {
                        let failure = Failure::new(FailureKind::System, failure.message);
                        for index in pending.drain(..) {
                            results[index] = Some(Called::failed(failure.clone()));
                        }
                    }
                }
            }
        }
        for (input, called) in inputs.iter().zip(results) {
            let called = called.unwrap_or_else(|| Called::failed(Failure::new(FailureKind::System, "no outcome")));
            self.ahead.push(input, called);
        }
    }

    /// The outcome of `input`: computed ahead, or now.
    pub fn call(&mut self, input: &Input<'_>) -> Executed<&[u8]> {
        if !self.ahead.is_next(input) {
            self.prepare(std::slice::from_ref(input));
        }
        self.ahead.pop()
    }

    /// Runs the function's `close` in the child and lets it exit.
    pub fn close(&mut self) -> Result<(), Failure> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let closing = child.send(&ToChild::Close).and_then(|()| {
            let deadline = Instant::now() + CLOSE_TIMEOUT;
            loop {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "close did not return in time"));
                }
                match self.hear(&mut child, 0)? {
                    Some(Said::Closed(closed)) => return Ok(closed),
                    Some(_) => return Err(out_of_turn()),
                    None => {}
                }
            }
        });
        match closing {
            Ok(closed) => {
                child.reap();
                closed.map_or(Ok(()), Err)
            }
            Err(error) => {
                let death = child.kill();
                Err(Failure::new(FailureKind::System, format!("the child did not close cleanly ({error}); {death}")))
            }
        }
    }

    /// Sends the inputs at `indices` to the child and waits for their outcomes.
    fn run_batch(&mut self, inputs: &[Input<'_>], indices: &[usize]) -> Result<Vec<Called>, Lost> {
        let checkpoint = self.services.state.as_ref().and_then(|state| state.checkpoint());
        let result = match self.ensure_child() {
            Ok(()) => self.exchange(inputs, indices),
            Err(lost) => Err(lost),
        };
        if let Err(lost) = &result {
            if let (Some(state), Some(checkpoint)) = (&self.services.state, checkpoint) {
                state.rewind(checkpoint);
            }
            self.deaths_in_a_row += 1;
            tracing::warn!(failure = %lost.failure, "instance process died; restarting it");
            self.services.metrics.as_ref().inspect(|metrics| metrics.record_restart(&lost.failure.to_string()));
        } else {
            self.deaths_in_a_row = 0;
        }
        result
    }

    fn exchange(&mut self, inputs: &[Input<'_>], indices: &[usize]) -> Result<Vec<Called>, Lost> {
        let Some(mut child) = self.child.take() else {
            return Err(Lost { at: None, failure: Failure::new(FailureKind::System, "no child process") });
        };
        let batch = BatchOf { inputs, indices, wire: wire_input };
        let level = self.wanted_log_level();
        let sent = (if level == self.log_level { Ok(()) } else { child.send(&ToChild::LogLevel(level)) })
            .and_then(|()| child.send(&batch));
        self.log_level = level;
        if sent.is_err() {
            return Err(self.died(child, None));
        }
        let mut watching: (Option<usize>, Instant) = (None, Instant::now());
        loop {
            match self.hear(&mut child, indices.len()) {
                Ok(Some(Said::Done(called))) => {
                    self.child = Some(child);
                    return Ok(called);
                }
                // A frame out of turn breaks the protocol: the child is done with.
                Ok(Some(_)) | Err(_) => {
                    let at = child.progress.current();
                    return Err(self.died(child, at));
                }
                Ok(None) => {
                    let Some(timeout) = self.hosting.timeout else { continue };
                    let now = child.progress.current();
                    if now != watching.0 {
                        watching = (now, Instant::now());
                    } else if now.is_some() && watching.1.elapsed() >= timeout {
                        let death = child.kill();
                        let message = format!(
                            "the call ran past timeout_ms = {}; its process was killed ({death})",
                            timeout.as_millis()
                        );
                        return Err(Lost { at: now, failure: Failure::new(FailureKind::Timeout, message) });
                    }
                }
            }
        }
    }

    /// Reads the child's next frame and serves it when it is a state ask or a log event. What
    /// the child said otherwise; `None` after serving, or when no frame came within the poll
    /// time. A batch's outcomes must be `batch_len`.
    fn hear(&mut self, child: &mut ChildProcess, batch_len: usize) -> io::Result<Option<Said>> {
        let Some(frame) = child.receive()? else { return Ok(None) };
        // Copied out: serving the frame writes to the child, whose reader holds it.
        let mut copy = std::mem::take(&mut self.frame);
        copy.clear();
        copy.extend_from_slice(frame);
        let said = self.said_in(child, &copy, batch_len);
        self.frame = copy;
        said
    }

    fn said_in(&mut self, child: &mut ChildProcess, frame: &[u8], batch_len: usize) -> io::Result<Option<Said>> {
        Ok(Some(match decode::<ToWorker<'_>>(frame)? {
            ToWorker::State(ask) => {
                serving::answer_state(self.services.state.as_deref(), child, ask)?;
                return Ok(None);
            }
            ToWorker::Log { level, target, message, fields } => {
                serving::record_log(self.log.as_ref(), level, target, message, &fields);
                return Ok(None);
            }
            ToWorker::Ready => Said::Ready,
            ToWorker::InitFailed(failure) => Said::InitFailed(failure),
            ToWorker::Closed(failure) => Said::Closed(failure),
            ToWorker::Done { called, metrics } => {
                if called.len() != batch_len {
                    return Err(io::Error::other(format!("{} outcomes for {batch_len} inputs", called.len())));
                }
                if let Some(recorder) = &self.services.metrics {
                    for (name, value) in metrics {
                        recorder.record(name, value);
                    }
                }
                Said::Done(called.into_iter().map(|called| Called::of_wire(called, self.ahead.outputs())).collect())
            }
        }))
    }

    /// What became of a child that broke off, as the failure of the call it was in.
    fn died(&self, child: ChildProcess, at: Option<usize>) -> Lost {
        let death = child.reap();
        Lost { at, failure: crash(&death) }
    }

    /// Starts a child, when none runs, after a wait that grows with the deaths in a row.
    fn ensure_child(&mut self) -> Result<(), Lost> {
        if self.child.is_some() {
            return Ok(());
        }
        if self.deaths_in_a_row > 1 {
            let doublings = (self.deaths_in_a_row - 2).min(16);
            std::thread::sleep(FIRST_RESTART_WAIT.saturating_mul(1 << doublings).min(MAX_RESTART_WAIT));
        }
        self.start_child().map_err(|failure| Lost { at: None, failure })
    }

    /// Starts a child and waits for it to be ready.
    fn start_child(&mut self) -> Result<(), Failure> {
        let limits = Limits::of(self.hosting.resources.as_ref(), self.identity.instance_id);
        let system = |message: String| Failure::new(FailureKind::System, message);
        let mut child = ChildProcess::spawn(&self.hosting.program, limits, POLL)
            .map_err(|error| system(format!("cannot start {}: {error}", self.hosting.program.display())))?;
        self.log_level = self.wanted_log_level();
        let init = self.init();
        if let Err(error) = child.send(&ToChild::Init(init)) {
            let death = child.kill();
            return Err(system(format!("cannot reach the new process ({error}); {death}")));
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.hear(&mut child, 0) {
                Ok(Some(Said::Ready)) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Ok(Some(Said::InitFailed(failure))) => {
                    child.reap();
                    return Err(failure);
                }
                Ok(Some(_)) => {
                    child.reap();
                    return Err(system(out_of_turn().to_string()));
                }
                Ok(None) if Instant::now() < deadline => {}
                Ok(None) => {
                    let death = child.kill();
                    return Err(system(format!("init did not return in {} s; {death}", START_TIMEOUT.as_secs())));
                }
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    child.reap();
                    return Err(system(error.to_string()));
                }
                Err(_) => return Err(crash(&child.reap())),
            }
        }
    }

    fn init(&self) -> Init<'_> {
        let identity = &self.identity;
        Init {
            plugin: self.plugin.info.opened_path.to_str().unwrap_or_default(),
            sha256: &self.plugin.info.sha256,
            tenant: &identity.tenant,
            namespace: &identity.namespace,
            name: &identity.name,
            instance_id: identity.instance_id,
            num_instances: identity.num_instances,
            input_topics: identity.input_topics.iter().map(String::as_str).collect(),
            output_topic: identity.output_topic.as_deref(),
            user_config: identity.user_config.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect(),
            secrets: self.services.secrets.as_deref().map(|secrets| secrets.exposed().collect()).unwrap_or_default(),
            state: self.services.state.is_some(),
            metrics: self.services.metrics.is_some(),
            log_level: self.log_level,
        }
    }

    /// The most verbose plugin level worth sending back: the function's own, or the worker's.
    fn wanted_log_level(&self) -> u8 {
        let own = self.log.as_ref().and_then(|log| log.function.level());
        plugin_log::level_code(Some(own.unwrap_or_else(tracing::level_filters::LevelFilter::current)))
    }
}

impl Drop for ChildInstance {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::warn!(plugin = %self.plugin.info.name, %error, "plugin close failed");
        }
    }
}

fn wire_input<'a>(input: &'a Input<'a>) -> WireInput<'a> {
    WireInput {
        payload: input.payload,
        key: input.key,
        properties: input.properties.iter().map(|property| (property.key.as_str(), property.value.as_str())).collect(),
        event_time_ms: input.event_time_ms,
        topic: input.topic,
        message_id: input.message_id,
        redelivery_count: input.redelivery_count,
    }
}

fn out_of_turn() -> io::Error {
    io::Error::other("the child sent a frame out of turn")
}

/// The failure of the call a child died in.
fn crash(death: &Death) -> Failure {
    Failure::new(FailureKind::Crash, format!("the instance's process {death}"))
}
