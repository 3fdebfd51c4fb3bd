//! What a worker needs from a transport: subscriptions to receive from and topics to publish to.
//!
//! The embedded transport ([`crate::io::embedded`]) implements these in-process; a broker
//! transport implements the same traits, so the worker's per-message loop does not change.

use std::{fmt, sync::Arc, time::Duration};

use thiserror::Error;

pub use crate::vocabulary::{SubscriptionPosition, SubscriptionType};
use crate::{
    io::producer_config::ProducerSettings,
    vocabulary::{Failure, ProcessingGuarantees},
};

/// The property naming the topic of the input an output came from (Pulsar Functions' name).
pub const INPUT_TOPIC_PROPERTY: &str = "__pfn_input_topic__";
/// The property holding the id of the input an output came from, `ledger:entry:partition:batch`.
pub const INPUT_ID_PROPERTY: &str = "__pfn_input_msg_id__";

/// One message on a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub payload: Vec<u8>,
    /// The partition key, used by Key_Shared subscriptions.
    pub key: Option<String>,
    pub properties: Vec<(String, String)>,
    /// Milliseconds since the Unix epoch, as the producer set it.
    pub event_time_ms: Option<i64>,
}

impl Message {
    /// A message with only a payload.
    pub fn from_payload(payload: Vec<u8>) -> Self {
        Self { payload, ..Self::default() }
    }

    /// The value of property `name`, if the message has it.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// A message's id on its topic: a sequence number on embedded topics, Pulsar's
/// `ledger:entry:partition:batch_index` on Pulsar topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageId {
    Sequence(u64),
    Ledger { ledger: u64, entry: u64, partition: i32, batch_index: i32 },
}

impl MessageId {
    /// The id as three words, for storing in atomics.
    pub fn to_words(self) -> [u64; 3] {
        match self {
            Self::Sequence(number) => [number, u64::MAX, 0],
            Self::Ledger { ledger, entry, partition, batch_index } => {
                [ledger, entry, (u64::from(partition as u32) << 32) | u64::from(batch_index as u32)]
            }
        }
    }

    /// The id that [`MessageId::to_words`] gave `words` for.
    pub fn from_words([first, second, third]: [u64; 3]) -> Self {
        if second == u64::MAX {
            return Self::Sequence(first);
        }
        Self::Ledger { ledger: first, entry: second, partition: (third >> 32) as i32, batch_index: third as i32 }
    }
}

/// Formats message ids without allocating for each one.
#[derive(Default)]
pub struct MessageIdText {
    numbers: itoa::Buffer,
    text: String,
}

impl fmt::Debug for MessageIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageIdText").finish_non_exhaustive()
    }
}

impl MessageIdText {
    /// `id` as text, valid until the next call.
    pub fn format(&mut self, id: MessageId) -> &str {
        match id {
            MessageId::Sequence(number) => self.numbers.format(number),
            ledger => {
                use std::fmt::Write;
                self.text.clear();
                // Writing into a String cannot fail.
                let _ = write!(self.text, "{ledger}");
                &self.text
            }
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sequence(number) => write!(f, "{number}"),
            Self::Ledger { ledger, entry, partition, batch_index } => {
                write!(f, "{ledger}:{entry}:{partition}:{batch_index}")
            }
        }
    }
}

/// The transport's handle on one delivery, used to acknowledge it.
pub type DeliveryTag = u64;

/// A message handed to one consumer, to be acknowledged or negatively acknowledged.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub tag: DeliveryTag,
    /// The message's id on its topic.
    pub message_id: MessageId,
    pub topic: Arc<str>,
    pub message: Arc<Message>,
    /// How many times this message was delivered before (on Pulsar: how many times this
    /// worker saw it fail, since the crate does not expose the broker's count).
    pub redelivery_count: u32,
    /// Why the last delivery failed, when it was negatively acknowledged.
    pub last_failure: Option<Arc<Failure>>,
}

/// A transport failure.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TransportError {
    #[error("the transport is closed")]
    Closed,
    #[error("subscription {subscription} on {topic} is {existing}, not {requested}")]
    SubscriptionType { topic: String, subscription: String, existing: SubscriptionType, requested: SubscriptionType },
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("cannot delete subscription {subscription}: {reason}")]
    Unsubscribe { subscription: String, reason: String },
    #[error("{feature} is not available on the {transport} transport: {reason}")]
    Unsupported { transport: &'static str, feature: &'static str, reason: &'static str },
}

/// One consumer on a subscription (of one or more topics).
///
/// Methods take `&self` so that a watchdog can take back the deliveries of a consumer whose
/// call is stuck while the consumer's own thread is inside that call.
pub trait Source: Send + Sync + fmt::Debug {
    /// Appends up to `max` deliveries to `into`, waiting up to `wait` for the first one.
    /// Returns how many were appended (0 when the wait ran out).
    fn receive(&self, max: usize, wait: Duration, into: &mut Vec<Delivery>) -> Result<usize, TransportError>;
    /// Acknowledges deliveries: they are done and never redelivered. Returns how many it
    /// acknowledged: tags the consumer no longer holds (it left the subscription or lost its
    /// connection since, and the messages go to it again) are not.
    fn ack(&self, tags: &[DeliveryTag]) -> usize;
    /// Gives a delivery back, to be redelivered after `delay` with a higher redelivery count.
    fn nack(&self, tag: DeliveryTag, delay: Duration, failure: &Failure);
    /// Tells the source that the function is done with these deliveries but did not
    /// acknowledge them (`manual` guarantees): they stay unacknowledged. The default does
    /// nothing; a transport that settles batches needs it to settle theirs.
    fn keep_unacked(&self, _tags: &[DeliveryTag]) {}
    /// Joins the subscription now rather than at the first receive, so that it keeps what is
    /// published from now on. The default does nothing: a transport whose subscriptions exist
    /// once requested needs nothing more.
    fn subscribe_now(&self) -> Result<(), TransportError> {
        Ok(())
    }
    /// Leaves the subscription: every unacknowledged delivery goes back to it for the others.
    fn detach(&self);
    /// Joins the subscription again after [`Source::detach`].
    fn attach(&self);
    /// Wakes a `receive` that is waiting, so that its caller can notice a request.
    fn wake(&self);
    /// Detaches this consumer and deletes its subscription on every topic, with what it kept.
    /// Refused while another consumer is attached to it, as Pulsar does.
    fn unsubscribe(&self) -> Result<(), TransportError>;
}

/// Told once whether a [`Sink::publish_then`] is held by the transport or failed. Dropped
/// untold (a task cancelled as the transport shuts down), it reports the transport closed, so
/// that nobody waits for it forever.
pub struct Published(Option<Report>);

/// What a [`Published`] calls with the result.
type Report = Box<dyn FnOnce(Result<(), TransportError>) + Send>;

impl Published {
    pub fn new(done: impl FnOnce(Result<(), TransportError>) + Send + 'static) -> Self {
        Self(Some(Box::new(done)))
    }

    /// Reports the publish's result.
    pub fn report(mut self, result: Result<(), TransportError>) {
        if let Some(done) = self.0.take() {
            done(result);
        }
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(TransportError::Closed));
        }
    }
}

impl fmt::Debug for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published").field("told", &self.0.is_none()).finish()
    }
}

/// Publishes messages to topics.
pub trait Sink: Send + Sync + fmt::Debug {
    /// Gets ready to publish to `topic`, so that a topic that cannot be written is reported
    /// before the first message. Publishing does this itself when it was not done.
    fn open(&self, _topic: &str) -> Result<(), TransportError> {
        Ok(())
    }

    /// Publishes `messages` to `topic`, in order, returning when the transport holds them.
    fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), TransportError>;

    /// Publishes `messages` to `topic`, in order and ahead of any later publish to it, and calls
    /// `done` once the transport holds them all or cannot. It may return before `done` runs, and
    /// `done` may run on another thread. The default publishes and calls `done` before returning.
    fn publish_then(&self, topic: &str, messages: Vec<Message>, done: Published) {
        done.report(self.publish(topic, messages));
    }
}

/// What a consumer joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRequest {
    pub topics: Vec<String>,
    /// A regular expression over topic names, read as well as `topics` (broker transports).
    pub topics_pattern: Option<String>,
    pub subscription: String,
    pub kind: SubscriptionType,
    pub position: SubscriptionPosition,
}

impl SubscriptionRequest {
    /// A request for `topics` on `subscription` of `kind`, reading new messages.
    pub fn new(topics: Vec<String>, subscription: impl Into<String>, kind: SubscriptionType) -> Self {
        Self {
            topics,
            topics_pattern: None,
            subscription: subscription.into(),
            kind,
            position: SubscriptionPosition::Latest,
        }
    }
}

impl<T: Sink + ?Sized> Sink for Arc<T> {
    fn open(&self, topic: &str) -> Result<(), TransportError> {
        self.as_ref().open(topic)
    }

    fn publish(&self, topic: &str, messages: Vec<Message>) -> Result<(), TransportError> {
        self.as_ref().publish(topic, messages)
    }

    fn publish_then(&self, topic: &str, messages: Vec<Message>, done: Published) {
        self.as_ref().publish_then(topic, messages, done);
    }
}

/// A transport: where subscriptions and topics come from.
pub trait Transport: Sink {
    /// Where a function whose producers are built with `settings` publishes (a transport
    /// without producers of its own ignores them).
    fn sink(&self, settings: ProducerSettings) -> Arc<dyn Sink>;

    /// Joins the subscription `request` names as a new consumer.
    fn subscribe(&self, request: &SubscriptionRequest) -> Result<Arc<dyn Source>, TransportError>;

    /// Whether outputs carry the topic and id of the input they came from (the properties
    /// [`INPUT_TOPIC_PROPERTY`] and [`INPUT_ID_PROPERTY`]), as Pulsar Functions' outputs do, so
    /// that a trigger can find the answer to its own message.
    fn marks_outputs(&self) -> bool {
        false
    }

    /// Whether functions can run with `guarantees` here; all of them can unless a transport
    /// says otherwise.
    fn offers(&self, _guarantees: ProcessingGuarantees) -> Result<(), TransportError> {
        Ok(())
    }
}
