//! A function's log topic: its plugin's events, as JSON objects (time, level, message, fields,
//! fqfn, instance id), published by a thread of their own. Logging never waits for it: events go
//! through a bounded buffer, and those it has no room for are counted and dropped.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread,
    time::Duration,
};

use serde::Serialize;

use crate::io::transport::{Message, Sink};

/// Events the buffer holds before it drops new ones.
pub const BUFFER: usize = 10_000;
/// Most events published at once.
const PUBLISH_BATCH: usize = 500;

/// One log event as the topic carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEvent {
    /// RFC 3339, in UTC, to the millisecond.
    pub time: String,
    pub level: &'static str,
    pub message: String,
    pub fields: BTreeMap<String, String>,
    pub fqfn: String,
    pub instance_id: u32,
}

impl LogEvent {
    pub fn new(level: tracing::Level, message: &str, fields: &[(&str, &str)], fqfn: &str, instance_id: u32) -> Self {
        Self {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            level: level.as_str(),
            message: message.to_owned(),
            fields: fields.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect(),
            fqfn: fqfn.to_owned(),
            instance_id,
        }
    }
}

/// The buffer in front of the publishing thread, and what it dropped.
#[derive(Debug)]
pub struct LogTopic {
    events: SyncSender<LogEvent>,
    dropped: Arc<AtomicU64>,
}

impl LogTopic {
    /// Starts publishing to `topic` through `sink`, from a thread named after the function.
    pub fn start(fqfn: &str, topic: String, sink: Arc<dyn Sink>) -> std::io::Result<Self> {
        let (events, receiver) = mpsc::sync_channel(BUFFER);
        let dropped = Arc::new(AtomicU64::new(0));
        let name = format!("pfn-log-{}", fqfn.rsplit('/').next().unwrap_or(fqfn));
        let publisher = Publisher { topic, sink, dropped: Arc::clone(&dropped) };
        thread::Builder::new().name(name).spawn(move || publisher.run(&receiver))?;
        Ok(Self { events, dropped })
    }

    /// Hands an event to the publishing thread, or counts it dropped when the buffer is full.
    pub fn offer(&self, event: LogEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped so far: no room in the buffer, or not published.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The publishing thread's side.
struct Publisher {
    topic: String,
    sink: Arc<dyn Sink>,
    dropped: Arc<AtomicU64>,
}

impl Publisher {
    /// Publishes events as they come, in batches, until every sender is gone.
    fn run(self, events: &Receiver<LogEvent>) {
        while let Ok(first) = events.recv() {
            let mut batch = vec![first];
            while batch.len() < PUBLISH_BATCH {
                match events.recv_timeout(Duration::ZERO) {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            let count = batch.len() as u64;
            let messages: Vec<Message> = batch
                .into_iter()
                .filter_map(|event| serde_json::to_vec(&event).ok())
                .map(Message::from_payload)
                .collect();
            if let Err(error) = self.sink.publish(&self.topic, messages) {
                self.dropped.fetch_add(count, Ordering::Relaxed);
                // Not at the plugin's target: this must not come back to the topic.
                tracing::warn!(topic = %self.topic, %error, events = count, "cannot publish log events");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{io::transport::TransportError, sync::lock};

    /// A sink that keeps what it is given, and blocks while `gate` is held.
    #[derive(Debug, Default)]
    struct Kept {
        messages: Mutex<Vec<Message>>,
        gate: Mutex<()>,
    }

    impl Sink for Kept {
        fn publish(&self, _: &str, messages: Vec<Message>) -> Result<(), TransportError> {
            let _gate = lock(&self.gate);
            lock(&self.messages).extend(messages);
            Ok(())
        }
    }

    #[test]
    fn events_arrive_as_json_and_a_full_buffer_drops_and_counts_instead_of_blocking() {
        let sink = Arc::new(Kept::default());
        let gate = lock(&sink.gate);
        let topic = LogTopic::start("t/n/f", "logs".into(), Arc::clone(&sink) as Arc<dyn Sink>).expect("thread");
        let offered = BUFFER as u64 + 1000;
        for i in 0..offered {
            topic.offer(LogEvent::new(tracing::Level::INFO, &format!("event {i}"), &[("k", "v")], "t/n/f", 2));
        }
        // Besides the buffer, the thread holds at most one batch in hand, blocked publishing it.
        assert!(topic.dropped() >= 1000 - PUBLISH_BATCH as u64, "dropped {}", topic.dropped());
        drop(gate);
        let dropped = topic.dropped();
        drop(topic);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (lock(&sink.messages).len() as u64) < offered - dropped && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let messages = lock(&sink.messages);
        assert_eq!(messages.len() as u64, offered - dropped);
        let first: serde_json::Value = serde_json::from_slice(&messages[0].payload).expect("JSON");
        assert_eq!(first["message"], "event 0");
        assert_eq!(
            (first["level"].as_str(), first["fqfn"].as_str(), first["instance_id"].as_u64()),
            (Some("INFO"), Some("t/n/f"), Some(2))
        );
        assert_eq!(first["fields"]["k"], "v");
        assert!(first["time"].as_str().is_some_and(|time| time.ends_with('Z')), "{first}");
    }
}
