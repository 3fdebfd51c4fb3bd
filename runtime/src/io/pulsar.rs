//! The Pulsar transport: functions read and write Pulsar topics through the `pulsar` crate.
//!
//! The worker's threads are not async; each call here runs its future on the transport's own
//! small tokio runtime and waits for it. See `docs/PULSAR.md` for the delivery semantics.

mod entries;
mod failures;
mod pattern;
mod producer_cache;
mod producers;
mod source;
mod topic_name;

use std::{
    mem::ManuallyDrop,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use pulsar::{Authentication, Pulsar, TokioExecutor};
use serde::{Deserialize, Serialize};

use crate::{io::producer_config::ProducerSettings, vocabulary::ProcessingGuarantees};

use self::producers::Producers;
pub use self::source::PulsarSource;
use super::transport::{Message, MessageId, Published, Sink, Source, SubscriptionRequest, Transport, TransportError};

/// The first wait before connecting again to a broker that could not be reached; it doubles up
/// to [`MAX_CONNECT_BACKOFF`].
const MIN_CONNECT_BACKOFF: Duration = Duration::from_millis(500);
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// Where the cluster is and how to authenticate.
#[derive(Debug, Clone, Default)]
pub struct PulsarSettings {
    /// `pulsar://host:port` or `pulsar+ssl://host:port`.
    pub url: String,
    /// A JWT for token authentication.
    pub token: Option<String>,
    /// PEM file of the certificates that TLS connections trust (else the system's).
    pub tls_trust_certs: Option<PathBuf>,
    /// Accept any TLS certificate (testing only).
    pub tls_allow_insecure: bool,
    /// Threads of the client's runtime (at least 1).
    pub io_threads: usize,
}

/// Failures counted since the worker started.
#[derive(Debug, Default)]
pub struct PulsarCounters {
    /// Consumers lost (stream ended or failed) or that could not subscribe.
    pub consumer_failures: AtomicU64,
    /// Producers that failed and were dropped to be rebuilt.
    pub producer_failures: AtomicU64,
}

impl PulsarCounters {
    /// The counts as they are now.
    pub fn snapshot(&self) -> PulsarStats {
        PulsarStats {
            consumer_failures: self.consumer_failures.load(Ordering::Relaxed),
            producer_failures: self.producer_failures.load(Ordering::Relaxed),
        }
    }
}

/// What the Pulsar transport counted since the worker started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulsarStats {
    /// Consumers lost (stream ended or failed) or that could not subscribe; each is rebuilt.
    pub consumer_failures: u64,
    /// Producers that failed and were rebuilt.
    pub producer_failures: u64,
}

/// The client and the runtime its futures run on, shared by every source and producer.
pub(crate) struct PulsarClient {
    /// Dropped in [`PulsarClient`]'s `Drop`, inside the runtime (its drop spawns tasks).
    pulsar: ManuallyDrop<Pulsar<TokioExecutor>>,
    runtime: tokio::runtime::Runtime,
    counters: Arc<PulsarCounters>,
    closed: AtomicBool,
    consumer_ids: AtomicU64,
    failures: failures::Failures,
    /// Every function's producers, by topic and settings.
    producers: Producers,
}

impl Drop for PulsarClient {
    fn drop(&mut self) {
        let _inside = self.runtime.enter();
        // Producers spawn tasks as they close.
        self.producers.close_all();
        // SAFETY: `pulsar` is dropped exactly once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.pulsar) };
    }
}

impl PulsarClient {
    /// A consumer id no other process is likely to use: the broker may key consumers by id
    /// within a subscription, and every client library starts at 0.
    fn next_consumer_id(&self) -> u64 {
        self.consumer_ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// Functions' topics on a Pulsar cluster.
pub struct PulsarTransport {
    client: Arc<PulsarClient>,
    /// Publishes with Pulsar Functions' default producer settings.
    default_sink: PulsarSink,
}

impl std::fmt::Debug for PulsarTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulsarTransport").field("producers", &self.client.producers).finish_non_exhaustive()
    }
}

/// Publishes to Pulsar topics through producers built with one function's settings.
pub struct PulsarSink {
    client: Arc<PulsarClient>,
    settings: ProducerSettings,
}

impl std::fmt::Debug for PulsarSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulsarSink").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot start the Pulsar client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{url} is not a Pulsar service URL (pulsar:// or pulsar+ssl://)")]
    Url { url: String },
    #[error("cannot read the TLS trust certificates {path}: {source}")]
    TrustCerts { path: PathBuf, source: std::io::Error },
    #[error("stopped before Pulsar at {url} could be reached")]
    Stopped { url: String },
}

impl PulsarTransport {
    /// Connects to `settings.url`, retrying with back-off (each failure logged) until it
    /// succeeds or `stop` returns true.
    pub fn connect(settings: &PulsarSettings, stop: impl Fn() -> bool) -> Result<Self, ConnectError> {
        if !(settings.url.starts_with("pulsar://") || settings.url.starts_with("pulsar+ssl://")) {
            return Err(ConnectError::Url { url: settings.url.clone() });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.io_threads.max(1))
            .thread_name("pfn-pulsar")
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        let certificates = match &settings.tls_trust_certs {
            Some(path) => {
                Some(std::fs::read(path).map_err(|source| ConnectError::TrustCerts { path: path.clone(), source })?)
            }
            None => None,
        };
        let mut backoff = MIN_CONNECT_BACKOFF;
        let pulsar = loop {
            let mut builder = Pulsar::builder(settings.url.clone(), TokioExecutor)
                .with_allow_insecure_connection(settings.tls_allow_insecure)
                .with_connection_retry_options(pulsar::ConnectionRetryOptions {
                    max_retries: 2,
                    connection_timeout: Duration::from_secs(5),
                    ..pulsar::ConnectionRetryOptions::default()
                });
            if let Some(token) = &settings.token {
                builder = builder.with_auth(Authentication { name: "token".into(), data: token.clone().into_bytes() });
            }
            if let Some(certificates) = &certificates {
                builder = builder.with_certificate_chain(certificates.clone());
            }
            match runtime.block_on(builder.build()) {
                Ok(pulsar) => break pulsar,
                Err(error) => {
                    tracing::error!(url = %settings.url, %error, retry_in = ?backoff, "cannot reach Pulsar");
                    let deadline = std::time::Instant::now() + backoff;
                    while std::time::Instant::now() < deadline {
                        if stop() {
                            return Err(ConnectError::Stopped { url: settings.url.clone() });
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
                }
            }
        };
        tracing::info!(url = %settings.url, "connected to Pulsar");
        let client = PulsarClient {
            pulsar: ManuallyDrop::new(pulsar),
            runtime,
            counters: Arc::default(),
            closed: AtomicBool::new(false),
            consumer_ids: AtomicU64::new(process_unique_seed()),
            failures: failures::Failures::default(),
            producers: Producers::default(),
        };
        let client = Arc::new(client);
        let default_sink = PulsarSink { client: Arc::clone(&client), settings: ProducerSettings::default() };
        Ok(Self { client, default_sink })
    }

    /// The failures counted so far.
    pub fn counters(&self) -> Arc<PulsarCounters> {
        Arc::clone(&self.client.counters)
    }

    /// Publishes one message, unbatched, and returns its id once the broker has it.
    pub fn publish_for_id(&self, topic: &str, message: Message) -> Result<MessageId, TransportError> {
        let unbatched = ProducerSettings { batch_delay_ms: None, ..ProducerSettings::default() };
        self.client.runtime.block_on(async {
            let receipts = self.client.producers.send(&self.client, topic, unbatched, vec![message]).await?;
            let ids = receipts.wait_for_ids(&self.client.counters).await?;
            ids.into_iter()
                .next()
                .ok_or_else(|| TransportError::Topic { topic: topic.to_owned(), reason: "no receipt".into() })
        })
    }

    /// Makes every source's `receive` report [`TransportError::Closed`].
    pub fn close(&self) {
        self.client.closed.store(true, Ordering::Release);
    }
}

/// A starting consumer id that differs between processes: the process id in the high bits,
/// the clock's nanoseconds below.
fn process_unique_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    (u64::from(std::process::id()) << 40) | (u64::from(nanos) << 8)
}

impl Sink for PulsarSink {
    /// Creates the topic's producer, as Pulsar Functions does when an instance starts.
    fn open(&self, topic: &str) -> Result<(), TransportError> {
        self.client.runtime.block_on(self.client.producers.open(&self.client, topic, self.settings))
    }

    fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), TransportError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.client.runtime.block_on(async {
            let receipts = self.client.producers.send(&self.client, topic, self.settings, messages).await?;
            receipts.wait(&self.client.counters).await
        })
    }

    /// Sends on the caller's thread (so sends to a topic keep their order) and waits for the
    /// receipts on the transport's runtime.
    fn publish_then(&self, topic: &str, messages: Vec<Message>, done: Published) {
        if messages.is_empty() {
            return done.report(Ok(()));
        }
        let sent =
            self.client.runtime.block_on(self.client.producers.send(&self.client, topic, self.settings, messages));
        match sent {
            Ok(receipts) => {
                // Not the client: the task must never hold the last reference to the runtime.
                let counters = Arc::clone(&self.client.counters);
                self.client.runtime.spawn(async move { done.report(receipts.wait(&counters).await) });
            }
            Err(error) => done.report(Err(error)),
        }
    }
}

/// Publishes with Pulsar Functions' default producer settings.
impl Sink for PulsarTransport {
    fn open(&self, topic: &str) -> Result<(), TransportError> {
        self.default_sink.open(topic)
    }

    fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), TransportError> {
        self.default_sink.publish(topic, messages)
    }

    fn publish_then(&self, topic: &str, messages: Vec<Message>, done: Published) {
        self.default_sink.publish_then(topic, messages, done);
    }
}

impl Transport for Arc<PulsarTransport> {
    fn sink(&self, settings: ProducerSettings) -> Arc<dyn Sink> {
        Arc::new(PulsarSink { client: Arc::clone(&self.client), settings })
    }

    fn subscribe(&self, request: &SubscriptionRequest) -> Result<Arc<dyn Source>, TransportError> {
        if request.topics.is_empty() && request.topics_pattern.is_none() {
            return Err(TransportError::Topic { topic: String::new(), reason: "no input topics".into() });
        }
        let mut request = request.clone();
        request.topics = request.topics.iter().map(|topic| topic_name::full(topic).into_owned()).collect();
        Ok(Arc::new(PulsarSource::new(Arc::clone(&self.client), request)))
    }

    fn marks_outputs(&self) -> bool {
        true
    }

    fn offers(&self, guarantees: ProcessingGuarantees) -> Result<(), TransportError> {
        match guarantees {
            ProcessingGuarantees::EffectivelyOnce => Err(TransportError::Unsupported {
                transport: "Pulsar",
                feature: "effectively_once",
                reason: "it needs producer sequence ids for broker deduplication, which the pulsar crate does not \
                         let a producer set; use at_least_once",
            }),
            _ => Ok(()),
        }
    }
}
