//! The worker side of the local endpoint: one thread accepting connections, one per connection.

use std::{
    io::{BufRead, BufReader, BufWriter, Write},
    os::{
        fd::AsRawFd,
        unix::net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use thiserror::Error;

use super::protocol::{ConsumedJson, Header, Request, SubscriptionStats, TopicStats, TriggerAnswer};
use crate::{
    io::{
        lines::{Envelope, InputFormat, OutputFormat},
        transport::{
            Delivery, DeliveryTag, Message, Sink, SubscriptionRequest, SubscriptionType, Transport, TransportError,
        },
    },
    worker::{Outcome, Topics, WorkerHandle},
};

/// Messages published per batch by a `produce` connection.
const PRODUCE_BATCH: usize = 1024;

/// Why the endpoint could not start.
#[derive(Debug, Error)]
pub enum EndpointError {
    #[error("another worker is listening on {0}")]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
}

/// A listening endpoint.
#[derive(Debug)]
pub struct Endpoint {
    path: PathBuf,
    /// The listening socket, shut down to wake the acceptor (which holds a clone of it).
    listener: UnixListener,
    stopping: Arc<AtomicBool>,
    sessions: Arc<AtomicUsize>,
    acceptor: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Listens on `path` (replacing a stale socket file) and serves `worker`.
    pub fn start(path: &Path, worker: WorkerHandle) -> Result<Self, EndpointError> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(EndpointError::InUse(path.into()));
            }
            // A socket file left by a worker that is gone.
            let _ = std::fs::remove_file(path);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| EndpointError::Bind { path: path.into(), source })?;
        }
        let listener = UnixListener::bind(path).map_err(|source| EndpointError::Bind { path: path.into(), source })?;
        let accepting = listener.try_clone().map_err(|source| EndpointError::Bind { path: path.into(), source })?;
        let stopping = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(AtomicUsize::new(0));
        let acceptor = {
            let (stopping, sessions) = (Arc::clone(&stopping), Arc::clone(&sessions));
            std::thread::Builder::new()
                .name("pfn-endpoint".into())
                .spawn(move || accept(accepting, worker, stopping, sessions))
                .map_err(|source| EndpointError::Bind { path: path.into(), source })?
        };
        tracing::info!(socket = %path.display(), "local endpoint listening");
        Ok(Self { path: path.into(), listener, stopping, sessions, acceptor: Some(acceptor) })
    }

    /// Stops accepting, waits until `deadline` for open sessions to end, removes the socket.
    /// Returns how many sessions were still open.
    pub fn stop(mut self, deadline: Instant) -> usize {
        self.stopping.store(true, Ordering::Release);
        // Wake the acceptor by shutting the listening socket down: this works whatever became
        // of the socket file (a cleaner may have removed it, so connecting to it may not).
        // SAFETY: `shutdown` on a descriptor this struct owns, open until it is dropped.
        let shut = unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if shut != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot shut the endpoint's socket down");
            let _ = UnixStream::connect(&self.path);
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        while self.sessions.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(&self.path);
        self.sessions.load(Ordering::Acquire)
    }
}

fn accept(listener: UnixListener, worker: WorkerHandle, stopping: Arc<AtomicBool>, sessions: Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "endpoint accept failed");
                // Not a busy loop on a socket that keeps failing.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let (worker, session_count) = (worker.clone(), Arc::clone(&sessions));
        session_count.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new().name("pfn-session".into()).spawn(move || {
            if let Err(error) = serve(stream, &worker) {
                tracing::debug!(%error, "endpoint session ended with an error");
            }
            session_count.fetch_sub(1, Ordering::AcqRel);
        });
        if let Err(error) = spawned {
            sessions.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%error, "cannot start an endpoint session");
        }
    }
}

fn write_header(out: &mut impl Write, header: &Header) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, header)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn serve(stream: UnixStream, worker: &WorkerHandle) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone()?);
    let mut out = BufWriter::with_capacity(1 << 16, stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let request: Request = match serde_json::from_str(&line) {
        Ok(request) => request,
        Err(error) => return write_header(&mut out, &Header::error(format!("bad request: {error}"))),
    };
    match request {
        Request::Produce { topic, format } => {
            let header = match produce(&mut reader, worker, &topic, format) {
                Ok(produced) => Header { produced: Some(produced), ..Header::ok() },
                Err(error) => Header::error(error),
            };
            write_header(&mut out, &header)
        }
        Request::Consume { topic, subscription, subscription_type, count, idle_timeout_ms, format } => {
            let request = SubscriptionRequest::new(vec![topic], subscription, subscription_type);
            let source = match worker.transport().subscribe(&request) {
                Ok(source) => source,
                Err(error) => return write_header(&mut out, &Header::error(error)),
            };
            write_header(&mut out, &Header::ok())?;
            consume(&mut out, source.as_ref(), count, idle_timeout_ms.map(Duration::from_millis), format)
        }
        Request::CreateSubscription { topic, subscription, subscription_type } => {
            let header = match create_subscription(worker, &topic, &subscription, subscription_type) {
                Ok(()) => Header::ok(),
                Err(error) => Header::error(error),
            };
            write_header(&mut out, &header)
        }
        Request::Trigger { function, value, timeout_ms } => {
            let header = match worker.trigger(&function, value.into_bytes(), Duration::from_millis(timeout_ms)) {
                Ok(outcome) => Header { trigger: Some(answer(outcome)), ..Header::ok() },
                Err(error) => Header::error(error),
            };
            write_header(&mut out, &header)
        }
        Request::Status { function } => {
            let header = match worker.status(function.as_deref()) {
                Ok(functions) => Header {
                    functions: Some(functions),
                    spec_errors: Some(worker.spec_errors().to_vec()),
                    pulsar: worker.pulsar_stats(),
                    ..Header::ok()
                },
                Err(error) => Header::error(error),
            };
            write_header(&mut out, &header)
        }
        Request::Delete { function } => {
            let header = match worker.delete(&function) {
                Ok(deleted) => Header { deleted: Some(deleted), ..Header::ok() },
                Err(error) => Header::error(error),
            };
            write_header(&mut out, &header)
        }
        Request::QueryState { function, key, counter } => {
            let header = match worker.query_state(&function, &key, counter) {
                Ok(entry) => Header { state: Some(entry), ..Header::ok() },
                Err(error) => Header::error(error),
            };
            write_header(&mut out, &header)
        }
        Request::PutState { function, entry } => {
            let header = match worker.put_state(&function, &entry) {
                Ok(()) => Header { state: Some(entry), ..Header::ok() },
                Err(error) => Header::error(error),
            };
            write_header(&mut out, &header)
        }
        Request::TopicStats { topic } if matches!(worker.topics, Topics::Pulsar(_)) => write_header(
            &mut out,
            &Header::error(format!(
                "topic stats of {topic}: Pulsar serves them on its admin HTTP API (pulsar-admin topics stats), not \
                 on the protocol the worker speaks"
            )),
        ),
        Request::TopicStats { topic } => {
            let counts = worker.broker.counts(&topic);
            let subscriptions = counts
                .subscriptions
                .into_iter()
                .map(|(name, c)| SubscriptionStats {
                    name,
                    backlog: c.backlog,
                    unacked: c.unacked,
                    acked: c.acked,
                    consumers: c.consumers,
                })
                .collect();
            let stats = TopicStats { topic, published: counts.published, subscriptions };
            write_header(&mut out, &Header { topic: Some(stats), ..Header::ok() })
        }
    }
}

/// Creates a subscription that keeps the topic's messages from now on: on embedded topics
/// directly; on Pulsar by subscribing a consumer and closing it again (the subscription stays).
fn create_subscription(
    worker: &WorkerHandle,
    topic: &str,
    subscription: &str,
    kind: SubscriptionType,
) -> Result<(), TransportError> {
    match &worker.topics {
        Topics::Embedded => worker.broker.create_subscription(topic, subscription, kind),
        Topics::Pulsar(pulsar) => {
            let request = SubscriptionRequest::new(vec![topic.to_owned()], subscription, kind);
            let source = Arc::clone(pulsar).subscribe(&request)?;
            source.subscribe_now()?;
            source.detach();
            Ok(())
        }
    }
}

fn answer(outcome: Outcome) -> TriggerAnswer {
    match outcome {
        Outcome::Output(bytes) => TriggerAnswer::Output { value: String::from_utf8_lossy(&bytes).into_owned() },
        Outcome::Filtered => TriggerAnswer::Filtered,
        Outcome::DeadLettered { reason, error } => TriggerAnswer::DeadLettered { reason, error },
    }
}

/// Why a `produce` stopped.
#[derive(Debug, Error)]
enum ProduceError {
    #[error("reading the messages: {0}")]
    Read(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    Malformed { line: u64, reason: String },
    #[error("publishing to {topic} after {published} messages: {source}")]
    Publish { topic: String, published: u64, source: TransportError },
}

fn produce(
    reader: &mut BufReader<UnixStream>,
    worker: &WorkerHandle,
    topic: &str,
    format: InputFormat,
) -> Result<u64, ProduceError> {
    let mut batch: Vec<Arc<Message>> = Vec::with_capacity(PRODUCE_BATCH);
    let mut published = 0u64;
    let mut line = Vec::new();
    let mut number = 0u64;
    let flush = |batch: &mut Vec<Arc<Message>>, published: &mut u64| -> Result<(), ProduceError> {
        if batch.is_empty() {
            return Ok(());
        }
        let sent = match &worker.topics {
            Topics::Embedded => worker.broker.publish_shared(topic, batch).map(drop),
            Topics::Pulsar(pulsar) => pulsar.publish(topic, batch.iter().map(|message| (**message).clone()).collect()),
        };
        sent.map_err(|source| ProduceError::Publish { topic: topic.to_owned(), published: *published, source })?;
        *published += batch.len() as u64;
        batch.clear();
        Ok(())
    };
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let message = match format {
            InputFormat::Raw => Message::from_payload(line.clone()),
            InputFormat::Json => {
                let envelope =
                    Envelope::parse(&line).map_err(|reason| ProduceError::Malformed { line: number, reason })?;
                Message {
                    payload: envelope.payload(),
                    key: envelope.key,
                    properties: envelope.properties.into_iter().collect(),
                    event_time_ms: envelope.event_time,
                }
            }
        };
        batch.push(Arc::new(message));
        // Publish as soon as the client pauses, so a slow producer's messages do not wait.
        if batch.len() == PRODUCE_BATCH || reader.buffer().is_empty() {
            flush(&mut batch, &mut published)?;
        }
    }
    flush(&mut batch, &mut published)?;
    Ok(published)
}

fn consume(
    out: &mut impl Write,
    source: &dyn crate::io::transport::Source,
    count: Option<u64>,
    idle_timeout: Option<Duration>,
    format: OutputFormat,
) -> std::io::Result<()> {
    let mut delivered = 0u64;
    let mut batch: Vec<Delivery> = Vec::with_capacity(PRODUCE_BATCH);
    let mut tags: Vec<DeliveryTag> = Vec::with_capacity(PRODUCE_BATCH);
    let wait = idle_timeout.unwrap_or(Duration::from_millis(200));
    loop {
        let remaining = count.map_or(PRODUCE_BATCH as u64, |count| count - delivered).min(PRODUCE_BATCH as u64);
        if remaining == 0 {
            return Ok(());
        }
        batch.clear();
        match source.receive(remaining as usize, wait, &mut batch) {
            Ok(0) if idle_timeout.is_some() => return Ok(()),
            Ok(0) => continue,
            Ok(_) => {}
            Err(_) => return out.flush(),
        }
        tags.clear();
        for delivery in &batch {
            match format {
                OutputFormat::Raw => {
                    out.write_all(&delivery.message.payload)?;
                    out.write_all(b"\n")?;
                }
                OutputFormat::Json => {
                    serde_json::to_writer(&mut *out, &ConsumedJson::new(delivery))?;
                    out.write_all(b"\n")?;
                }
            }
            tags.push(delivery.tag);
        }
        // Acknowledged only once the client has the bytes; a client gone mid-way leaves its
        // messages to be delivered again.
        out.flush()?;
        source.ack(&tags);
        delivered += batch.len() as u64;
    }
}
