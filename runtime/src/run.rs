//! `pfn run`: one plugin over a stream of lines, results to a file or stdout.
//!
//! Every input line ends up as exactly one of: an output line, a filtered message (the
//! function returned nothing), or a dead letter (error, panic, undecodable or malformed input).

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::Serialize;
use thiserror::Error;

mod line_batch;

use self::line_batch::LineBatch;

use crate::{
    context::{FunctionIdentity, MetricRecorder, Publication, Services},
    execute::{CallOutcome, Executed, Input, Policy, Settlement},
    hosted::{Hosting, Instance},
    instance::InitError,
    io::{
        self,
        dead_letter::DeadLetter,
        json_lines::JsonLinesFile,
        lines::{InputFormat, LineReader, OutputFormat, PayloadJson, write_result},
    },
    loader::{Loader, Pin},
    secrets::{SecretError, Secrets, WorkerSecrets},
    state::{StateError, StateSlot, StateStore},
    sync::lock,
    telemetry::{InstanceLabels, InstanceMetrics},
    verify::VerifyError,
    vocabulary::{FailureKind, Runtime},
};

/// What `pfn run` is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub plugin: PathBuf,
    pub pin: Pin,
    /// Input file; stdin when `None`.
    pub input: Option<PathBuf>,
    /// Output file; stdout when `None`.
    pub output: Option<PathBuf>,
    /// Dead-letter file; beside the output when `None`.
    pub dead_letter: Option<PathBuf>,
    /// Where published messages go; beside the output when `None`.
    pub published: Option<PathBuf>,
    pub input_format: InputFormat,
    pub output_format: OutputFormat,
    /// The function's identity; an empty name means the plugin's own name.
    pub identity: FunctionIdentity,
    /// Where the function's state is kept (`state.redb` in it); a fresh temporary directory,
    /// removed at the end, when `None`.
    pub state_dir: Option<PathBuf>,
    /// The function's secrets: name to reference (`env:VAR`, `file:PATH`, `worker:KEY`).
    pub secrets: BTreeMap<String, String>,
    /// The file `worker:` references read.
    pub secrets_file: Option<PathBuf>,
    /// Where the instance runs: here, or in a child process that may die without ending the run.
    pub runtime: Runtime,
    /// The longest one call may take before its child process is killed (process runtime).
    pub timeout_ms: Option<u64>,
}

/// The counts of a run. `messages = outputs + filtered + dead_lettered`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub messages: u64,
    pub outputs: u64,
    pub filtered: u64,
    pub dead_lettered: u64,
    pub errors: u64,
    pub panics: u64,
    pub bad_input: u64,
    pub malformed: u64,
    /// Calls whose child process died under them (process runtime).
    pub crashes: u64,
    /// Calls that ran past the timeout and had their child process killed (process runtime).
    pub timeouts: u64,
    /// Messages the function published to topics of its choosing.
    pub published: u64,
    /// The process's peak resident memory at the end of the run, in KiB.
    pub peak_rss_kib: Option<u64>,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages: {} outputs, {} filtered, {} dead-lettered ({} errors, {} panics, {} bad input, {} malformed)",
            self.messages,
            self.outputs,
            self.filtered,
            self.dead_lettered,
            self.errors,
            self.panics,
            self.bad_input,
            self.malformed
        )?;
        if self.crashes + self.timeouts > 0 {
            write!(f, ", {} crashes, {} timeouts", self.crashes, self.timeouts)?;
        }
        if self.published > 0 {
            write!(f, ", {} published", self.published)?;
        }
        if let Some(kib) = self.peak_rss_kib {
            write!(f, ", peak RSS {kib} KiB")?;
        }
        Ok(())
    }
}

/// Why a run stopped.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("cannot read input {path}: {source}")]
    Input { path: String, source: std::io::Error },
    #[error("cannot write output {path}: {source}")]
    Output { path: String, source: std::io::Error },
    #[error("cannot write dead letters to {path}: {source}")]
    DeadLetter { path: PathBuf, source: std::io::Error },
    #[error("cannot write published messages to {path}: {source}")]
    Published { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot create the state directory: {0}")]
    StateDir(std::io::Error),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("a call timeout needs the process runtime (--runtime process): a thread cannot be stopped")]
    TimeoutNeedsProcess,
    #[error("cannot find the pfn executable to host the instance: {0}")]
    Program(std::io::Error),
}

fn describe(path: Option<&Path>, default: &str) -> String {
    path.map_or_else(|| default.to_owned(), |path| path.display().to_string())
}

/// What a run did and where its files are.
#[derive(Debug)]
pub struct RunReport {
    pub summary: RunSummary,
    /// The dead-letter file (written only when a message was dead-lettered).
    pub dead_letters: PathBuf,
    /// The published-messages file (written only when a message was published).
    pub published: PathBuf,
}

/// Loads the plugin, runs it over every input line, and returns the counts.
pub fn run(options: RunOptions, loader: &Loader) -> Result<RunReport, RunError> {
    let plugin = loader.load(&options.plugin, options.pin)?;
    let mut identity = options.identity.clone();
    if identity.name.is_empty() {
        identity.name = plugin.info.name.clone();
    }
    let input_name = describe(options.input.as_deref(), "stdin");
    let output_name = describe(options.output.as_deref(), "stdout");
    if identity.input_topics.is_empty() {
        identity.input_topics.push(input_name.clone());
    }
    // At ERROR level so that the span, which says which function a log line is about, is kept
    // whatever the log filter lets through.
    let span = tracing::error_span!("function", fqfn = %identity.fqfn(), version = %plugin.info.version);
    let _entered = span.enter();
    let state = RunState::open(options.state_dir.as_deref())?;
    // The first failure of a flush staged along the way, reported at the end.
    let state_failure: Arc<Mutex<Option<StateError>>> = Arc::default();
    let slot = Arc::new(StateSlot::new(state.store.function(&identity.fqfn())));
    let worker_secrets = options.secrets_file.as_deref().map(WorkerSecrets::read).transpose()?;
    let secrets = Secrets::resolve(&options.secrets, worker_secrets.as_ref(), |name| std::env::var(name).ok())?;
    // Metrics are recorded, so that functions that record them run as they would on a worker;
    // `pfn run` serves no scrape.
    let labels = InstanceLabels {
        tenant: identity.tenant.clone(),
        namespace: identity.namespace.clone(),
        name: identity.name.clone(),
        instance_id: 0,
        cluster: "local".to_owned(),
    };
    let metrics = Some(Arc::new(InstanceMetrics::new(labels)));
    let services = Services {
        state: Some(slot.clone()),
        metrics: metrics.map(|metrics| metrics as Arc<dyn MetricRecorder>),
        secrets: Some(secrets.shared()),
        log: None,
    };
    if options.runtime == Runtime::Thread && options.timeout_ms.is_some() {
        return Err(RunError::TimeoutNeedsProcess);
    }
    let timeout = options.timeout_ms.map(std::time::Duration::from_millis);
    let hosting = Hosting::of(options.runtime, None, timeout).map_err(RunError::Program)?;
    let mut instance = hosting.instantiate(&plugin, identity, services)?;

    let reader = io::open_input(options.input.as_deref())
        .map_err(|source| RunError::Input { path: input_name.clone(), source })?;
    let output = io::open_output(options.output.as_deref())
        .map_err(|source| RunError::Output { path: output_name.clone(), source })?;
    let dead_letter_path =
        options.dead_letter.clone().unwrap_or_else(|| JsonLinesFile::beside(options.output.as_deref(), "dead-letter"));
    let published_path =
        options.published.clone().unwrap_or_else(|| JsonLinesFile::beside(options.output.as_deref(), "published"));
    let mut sink = Sink {
        output,
        output_name,
        format: options.output_format,
        dead_letters: JsonLinesFile::new(dead_letter_path),
        published: JsonLinesFile::new(published_path),
        summary: RunSummary::default(),
    };

    let mut lines = LineReader::new(reader);
    let batch_size = if instance.wants_batches() { CHILD_BATCH } else { 1 };
    let mut batch = LineBatch::default();
    let mut since_staged = 0;
    let topic = input_name.as_str();
    loop {
        batch.clear();
        while batch.len() < batch_size {
            let read = lines.next_line().map_err(|source| RunError::Input { path: input_name.clone(), source })?;
            let Some((number, line)) = read else { break };
            batch.push(number, line, options.input_format);
        }
        if batch.is_empty() {
            break;
        }
        if since_staged >= STATE_BATCH {
            since_staged = 0;
            let failed = Arc::clone(&state_failure);
            slot.commit_batch(|| {
                Box::new(move |result| {
                    if let Err(error) = result {
                        lock(&failed).get_or_insert(error);
                    }
                })
            });
        }
        since_staged += batch.len();
        if instance.wants_batches() {
            let inputs: Vec<Input<'_>> = batch.lines(topic).filter_map(|line| line.input.ok()).collect();
            instance.prepare(&inputs);
        }
        for line in batch.lines(topic) {
            match line.input {
                Ok(input) => sink.deliver(&mut instance, &input, line.bytes)?,
                Err(reason) => sink.malformed(line.id, reason, line.bytes)?,
            }
        }
    }
    if let Err(error) = instance.close() {
        tracing::warn!(%error, "plugin close failed");
    }
    let batch = slot.take_batch();
    slot.store().write_now(batch)?;
    if let Some(error) = lock(&state_failure).take() {
        return Err(error.into());
    }
    sink.finish()
}

/// How many input lines share a staging of their state writes.
const STATE_BATCH: usize = 1024;
/// How many input lines go to an instance in a child process at a time.
const CHILD_BATCH: usize = 256;

/// The run's state store, and the temporary directory it is in when none was given.
struct RunState {
    store: StateStore,
    _temporary: Option<tempfile::TempDir>,
}

impl RunState {
    fn open(dir: Option<&Path>) -> Result<Self, RunError> {
        let (dir, temporary) = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(RunError::StateDir)?;
                (dir.to_path_buf(), None)
            }
            None => {
                let temporary =
                    tempfile::Builder::new().prefix("pfn-run-state-").tempdir().map_err(RunError::StateDir)?;
                (temporary.path().to_path_buf(), Some(temporary))
            }
        };
        Ok(Self { store: StateStore::open(&dir.join("state.redb"))?, _temporary: temporary })
    }
}

/// Where each message's outcome goes, and the counts.
struct Sink {
    output: Box<dyn Write>,
    output_name: String,
    format: OutputFormat,
    dead_letters: JsonLinesFile,
    published: JsonLinesFile,
    summary: RunSummary,
}

impl Sink {
    /// Calls the function on `input` and writes its result or dead letter.
    fn deliver(&mut self, instance: &mut Instance, input: &Input<'_>, line: &[u8]) -> Result<(), RunError> {
        self.summary.messages += 1;
        let Executed { outcome, effects } = instance.call(input);
        let settlement = Policy::RUN.settle(&outcome, &effects, input.redelivery_count);
        for publication in &effects.published {
            self.published.write(&PublishedLine::of(publication)).map_err(|e| self.published_error(e))?;
            self.summary.published += 1;
        }
        match outcome {
            CallOutcome::Output(result) => {
                write_result(&mut self.output, self.format, result).map_err(|e| self.output_error(e))?;
                self.summary.outputs += 1;
            }
            CallOutcome::Filtered => self.summary.filtered += 1,
            CallOutcome::Failed(error) => {
                debug_assert_eq!(settlement, Settlement::DeadLetter, "pfn run dead-letters every failure");
                match error.kind {
                    FailureKind::Error => self.summary.errors += 1,
                    FailureKind::Panic => self.summary.panics += 1,
                    FailureKind::BadInput => self.summary.bad_input += 1,
                    FailureKind::Crash => self.summary.crashes += 1,
                    FailureKind::Timeout => self.summary.timeouts += 1,
                    FailureKind::System | FailureKind::Malformed => {}
                }
                tracing::debug!(message_id = %input.message_id, %error, "message dead-lettered");
                self.dead_letter(input.message_id, error.kind.as_str(), &error.message, line)?;
            }
        }
        Ok(())
    }

    /// Dead-letters a line that is not a valid message.
    fn malformed(&mut self, message_id: &str, reason: &str, line: &[u8]) -> Result<(), RunError> {
        self.summary.messages += 1;
        self.summary.malformed += 1;
        self.dead_letter(message_id, "malformed", reason, line)
    }

    fn dead_letter(&mut self, message_id: &str, reason: &str, error: &str, line: &[u8]) -> Result<(), RunError> {
        self.summary.dead_lettered += 1;
        let letter = DeadLetter { message_id, reason, error, payload: PayloadJson::new(line) };
        self.dead_letters.write(&letter).map_err(|source| self.dead_letter_error(source))
    }

    fn output_error(&self, source: std::io::Error) -> RunError {
        RunError::Output { path: self.output_name.clone(), source }
    }

    fn dead_letter_error(&self, source: std::io::Error) -> RunError {
        RunError::DeadLetter { path: self.dead_letters.path().into(), source }
    }

    fn published_error(&self, source: std::io::Error) -> RunError {
        RunError::Published { path: self.published.path().into(), source }
    }

    fn finish(mut self) -> Result<RunReport, RunError> {
        self.output.flush().map_err(|e| self.output_error(e))?;
        self.dead_letters.flush().map_err(|e| self.dead_letter_error(e))?;
        self.published.flush().map_err(|e| self.published_error(e))?;
        self.summary.peak_rss_kib = crate::resources::peak_rss_kib();
        Ok(RunReport {
            summary: self.summary,
            dead_letters: self.dead_letters.path().to_path_buf(),
            published: self.published.path().to_path_buf(),
        })
    }
}

/// A published message as `pfn run` writes it: `{"topic", "value", "key", "properties",
/// "event_time"}` (`value_base64` for a payload that is not UTF-8).
#[derive(Debug, Serialize)]
struct PublishedLine<'a> {
    topic: &'a str,
    #[serde(flatten)]
    value: PayloadJson<'a>,
    key: Option<&'a str>,
    properties: BTreeMap<&'a str, &'a str>,
    event_time: Option<i64>,
}

impl<'a> PublishedLine<'a> {
    fn of(publication: &'a Publication) -> Self {
        let message = &publication.message;
        Self {
            topic: &publication.topic,
            value: PayloadJson::new(&message.payload),
            key: message.key.as_deref(),
            properties: message.properties.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect(),
            event_time: message.event_time_ms,
        }
    }
}
