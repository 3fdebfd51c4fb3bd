//! The child's side: `pfn instance-host`, started by a worker with its socket on fd 3 and the
//! progress word on fd 4. It opens the plugin, creates the instance, then calls it on every
//! batch the worker sends, until told to close or until the worker is gone.
//!
//! State is served by the worker over the socket ([`RemoteState`]); metric values and log
//! events go back to it; publishes and acknowledgements travel with each call's outcome.

use std::{
    io::{self, Write},
    os::{fd::FromRawFd, unix::net::UnixStream},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    thread::ThreadId,
};

use thiserror::Error;

use super::{
    progress::Progress,
    wire::{
        FrameReader, Init, StateAnswer, StateAsk, ToChild, ToWorker, WireCalled, WireInput, WireOutcome,
        WirePublication, decode, write_frame,
    },
};
use crate::{
    context::{Effects, FunctionIdentity, MetricRecorder, Services, StateAccess},
    execute::{CallOutcome, Executed, Input, execute, properties},
    instance::PluginInstance,
    loader::{Loader, Pin, PluginCache},
    plugin_log::{self, Forward},
    secrets::Secrets,
    state::{StateError, check_key},
    sync::lock,
    verify::Sha256Digest,
    vocabulary::{Failure, FailureKind},
};

/// The descriptors a worker hands its child.
pub const SOCKET_FD: i32 = 3;
pub const PROGRESS_FD: i32 = 4;

/// Why a child stopped hosting its instance.
#[derive(Debug, Error)]
pub enum HostError {
    #[error("the worker's socket failed: {0}")]
    Socket(#[from] io::Error),
    #[error("the worker sent {0} where it was not expected")]
    Unexpected(&'static str),
}

/// The socket, shared by the calling thread and whichever plugin thread logs.
#[derive(Debug)]
struct Channel {
    writer: Mutex<(UnixStream, Vec<u8>)>,
    reader: Mutex<(UnixStream, FrameReader)>,
}

impl Channel {
    fn send(&self, frame: &ToWorker<'_>) -> io::Result<()> {
        let mut writer = lock(&self.writer);
        let (stream, buffer) = &mut *writer;
        write_frame(stream, buffer, frame)
    }

    /// The next frame, copied out (the batch in it is read while state asks are answered).
    fn receive(&self, into: &mut Vec<u8>) -> io::Result<()> {
        let mut reader = lock(&self.reader);
        let (stream, frames) = &mut *reader;
        loop {
            if let Some(frame) = frames.next(stream)? {
                into.clear();
                into.extend_from_slice(frame);
                return Ok(());
            }
        }
    }
}

/// Hosts the instance the worker describes; returns when the worker closes it or is gone.
pub fn host_instance() -> Result<(), HostError> {
    // SAFETY: a worker starts this command with its socket on fd 3 and nothing else owns it.
    let socket = unsafe { UnixStream::from_raw_fd(SOCKET_FD) };
    // SAFETY: the worker puts the progress memory file on fd 4, at least 8 bytes long.
    let progress = unsafe { Progress::inherited(PROGRESS_FD) }?;
    let channel = Arc::new(Channel {
        writer: Mutex::new((socket.try_clone()?, Vec::new())),
        reader: Mutex::new((socket, FrameReader::default())),
    });
    let mut frame = Vec::new();
    channel.receive(&mut frame)?;
    let ToChild::Init(init) = decode(&frame)? else { return Err(HostError::Unexpected("a frame before Init")) };
    let log_level = Arc::new(AtomicU8::new(init.log_level));
    plugin_log::forward_to(Box::new(LogForward { channel: Arc::clone(&channel), level: Arc::clone(&log_level) }));
    let metrics = Arc::new(MetricBuffer::default());
    let mut instance = match open(&init, &channel, &metrics) {
        Ok(instance) => instance,
        Err(failure) => {
            channel.send(&ToWorker::InitFailed(failure))?;
            return Ok(());
        }
    };
    channel.send(&ToWorker::Ready)?;
    let mut calls = Calls::default();
    loop {
        match channel.receive(&mut frame) {
            Ok(()) => {}
            // The worker is gone: so is the reason to run.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        match decode(&frame)? {
            ToChild::Batch(inputs) => {
                calls.run(&mut instance, &inputs, &progress);
                let drained = metrics.drain();
                let called = calls.wire();
                let metrics = drained.iter().map(|(name, value)| (name.as_str(), *value)).collect();
                channel.send(&ToWorker::Done { called, metrics })?;
            }
            ToChild::LogLevel(level) => log_level.store(level, Ordering::Relaxed),
            ToChild::Close => {
                let closed = instance.close().err();
                channel.send(&ToWorker::Closed(closed))?;
                return Ok(());
            }
            ToChild::Init(_) => return Err(HostError::Unexpected("a second Init")),
            ToChild::State(_) => return Err(HostError::Unexpected("a state answer")),
        }
    }
}

/// Opens the plugin and creates the instance, or says why not.
fn open(init: &Init<'_>, channel: &Arc<Channel>, metrics: &Arc<MetricBuffer>) -> Result<PluginInstance, Failure> {
    let system = |message: String| Failure::new(FailureKind::System, message);
    let path = Path::new(init.plugin);
    let digest = Sha256Digest::parse(init.sha256).map_err(|reason| system(format!("bad digest: {reason}")))?;
    // The worker's private copy is opened where it is: its cache is the directory above it.
    let cache = path.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let plugin =
        Loader::new(PluginCache::new(cache)).load(path, Pin::Digest(digest)).map_err(|e| system(e.to_string()))?;
    let identity = FunctionIdentity {
        tenant: init.tenant.to_owned(),
        namespace: init.namespace.to_owned(),
        name: init.name.to_owned(),
        instance_id: init.instance_id,
        num_instances: init.num_instances,
        input_topics: init.input_topics.iter().map(|topic| (*topic).to_owned()).collect(),
        output_topic: init.output_topic.map(str::to_owned),
        user_config: init.user_config.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect(),
    };
    let state: Option<Arc<dyn StateAccess>> = init.state.then(|| {
        Arc::new(RemoteState {
            channel: Arc::clone(channel),
            thread: std::thread::current().id(),
            touched: AtomicBool::new(false),
        }) as _
    });
    let services = Services {
        state,
        metrics: init.metrics.then(|| Arc::clone(metrics) as Arc<dyn MetricRecorder>),
        secrets: Some(Secrets::from_resolved(init.secrets.iter().copied()).shared()),
        log: None,
    };
    plugin.instantiate(identity, services).map_err(|error| error.cause)
}

/// A batch's outcomes, with their outputs copied out of the instance.
#[derive(Debug, Default)]
struct Calls {
    outputs: Vec<u8>,
    called: Vec<(CallOutcome<(usize, usize)>, Effects)>,
}

impl Calls {
    fn run(&mut self, instance: &mut PluginInstance, inputs: &[WireInput<'_>], progress: &Progress) {
        self.outputs.clear();
        self.called.clear();
        for (index, wire) in inputs.iter().enumerate() {
            let input = Input {
                payload: wire.payload,
                key: wire.key,
                properties: properties(wire.properties.iter().copied()),
                event_time_ms: wire.event_time_ms,
                topic: wire.topic,
                message_id: wire.message_id,
                redelivery_count: wire.redelivery_count,
            };
            progress.enter(index);
            let Executed { outcome, effects } = execute(instance, &input);
            let outcome = match outcome {
                CallOutcome::Output(output) => {
                    let start = self.outputs.len();
                    self.outputs.extend_from_slice(output);
                    CallOutcome::Output((start, self.outputs.len()))
                }
                CallOutcome::Filtered => CallOutcome::Filtered,
                CallOutcome::Failed(failure) => CallOutcome::Failed(failure),
            };
            self.called.push((outcome, effects));
        }
        progress.idle();
    }

    fn wire(&self) -> Vec<WireCalled<'_>> {
        self.called
            .iter()
            .map(|(outcome, effects)| WireCalled {
                outcome: match outcome {
                    CallOutcome::Output((start, end)) => WireOutcome::Output(&self.outputs[*start..*end]),
                    CallOutcome::Filtered => WireOutcome::Filtered,
                    CallOutcome::Failed(failure) => WireOutcome::Failed(failure.clone()),
                },
                acked: effects.acked,
                published: effects
                    .published
                    .iter()
                    .map(|publication| WirePublication {
                        topic: &publication.topic,
                        payload: &publication.message.payload,
                        key: publication.message.key.as_deref(),
                        properties: publication
                            .message
                            .properties
                            .iter()
                            .map(|(key, value)| (key.as_str(), value.as_str()))
                            .collect(),
                        event_time_ms: publication.message.event_time_ms,
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The function's state, served by the worker. Only the thread the function is called on can
/// reach it (a plugin's own threads would read answers meant for the calls).
#[derive(Debug)]
struct RemoteState {
    channel: Arc<Channel>,
    thread: ThreadId,
    /// Whether the call in progress asked for anything: only then does its end need saying.
    touched: AtomicBool,
}

impl RemoteState {
    fn ask(&self, ask: &StateAsk<'_>) -> Result<Option<Vec<u8>>, StateError> {
        if std::thread::current().id() != self.thread {
            return Err(StateError::Remote {
                message: "in the process runtime, state is reachable only from the thread the function is called on"
                    .to_owned(),
                invalid_argument: true,
            });
        }
        self.touched.store(true, Ordering::Relaxed);
        let lost = |error: io::Error| StateError::Remote {
            message: format!("the worker is gone: {error}"),
            invalid_argument: false,
        };
        self.channel.send(&ToWorker::State(*ask)).map_err(lost)?;
        if !ask.is_answered() {
            return Ok(None);
        }
        let mut frame = Vec::new();
        self.channel.receive(&mut frame).map_err(lost)?;
        Ok(Some(frame))
    }

    fn answer<T>(&self, ask: &StateAsk<'_>, read: impl FnOnce(StateAnswer<'_>) -> Option<T>) -> Result<T, StateError> {
        let frame = self.ask(ask)?.unwrap_or_default();
        let unexpected =
            || StateError::Remote { message: "the worker answered something else".to_owned(), invalid_argument: false };
        match decode::<ToChild<'_>>(&frame) {
            Ok(ToChild::State(StateAnswer::Failed { invalid_argument, message })) => {
                Err(StateError::Remote { message, invalid_argument })
            }
            Ok(ToChild::State(answer)) => read(answer).ok_or_else(unexpected),
            _ => Err(unexpected()),
        }
    }
}

impl StateAccess for RemoteState {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        self.answer(&StateAsk::Get(key), |answer| match answer {
            StateAnswer::Value(value) => Some(value.map(<[u8]>::to_vec)),
            _ => None,
        })
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        check_key(key)?;
        self.ask(&StateAsk::Put(key, value)).map(drop)
    }

    fn delete(&self, key: &str) -> Result<(), StateError> {
        check_key(key)?;
        self.ask(&StateAsk::Delete(key)).map(drop)
    }

    fn incr(&self, key: &str, amount: i64) -> Result<i64, StateError> {
        check_key(key)?;
        self.answer(&StateAsk::Incr(key, amount), counter)
    }

    fn get_counter(&self, key: &str) -> Result<i64, StateError> {
        check_key(key)?;
        self.answer(&StateAsk::GetCounter(key), counter)
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<String>, StateError> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        self.answer(&StateAsk::List { prefix, start_after, limit }, |answer| match answer {
            StateAnswer::Keys(keys) => Some(keys.into_iter().map(str::to_owned).collect()),
            _ => None,
        })
    }

    fn delete_prefix(&self, prefix: &str) -> Result<(), StateError> {
        self.ask(&StateAsk::DeletePrefix(prefix)).map(drop)
    }

    fn end_call(&self, succeeded: bool) {
        if self.touched.swap(false, Ordering::Relaxed) {
            // A lost worker is noticed by the next read of the socket.
            let _ = self.ask(&StateAsk::EndCall(succeeded));
            self.touched.store(false, Ordering::Relaxed);
        }
    }
}

fn counter(answer: StateAnswer<'_>) -> Option<i64> {
    match answer {
        StateAnswer::Counter(value) => Some(value),
        _ => None,
    }
}

/// Metric values recorded during a batch, sent with its outcomes.
#[derive(Debug, Default)]
struct MetricBuffer(Mutex<Vec<(String, f64)>>);

impl MetricBuffer {
    fn drain(&self) -> Vec<(String, f64)> {
        std::mem::take(&mut *lock(&self.0))
    }
}

impl MetricRecorder for MetricBuffer {
    fn record(&self, name: &str, value: f64) {
        lock(&self.0).push((name.to_owned(), value));
    }
}

/// Sends the plugin's log events to the worker as they happen (a crash must not lose them).
struct LogForward {
    channel: Arc<Channel>,
    level: Arc<AtomicU8>,
}

impl Forward for LogForward {
    fn enabled(&self, level: tracing::Level) -> bool {
        plugin_log::level_of_code(self.level.load(Ordering::Relaxed)).is_some_and(|most| level <= most)
    }

    fn event(&self, level: tracing::Level, target: &str, message: &str, fields: &[(&str, &str)]) {
        if !self.enabled(level) {
            return;
        }
        let level = plugin_log::level_code(Some(level.into()));
        let fields = fields.to_vec();
        if self.channel.send(&ToWorker::Log { level, target, message, fields }).is_err() {
            // The worker is gone; the calling thread finds out on its next read.
            let _ = io::stderr().write_all(b"pfn instance-host: a log event was lost\n");
        }
    }
}
