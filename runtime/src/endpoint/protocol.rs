//! The requests and answer headers of the local endpoint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    io::{
        lines::{InputFormat, OutputFormat, PayloadJson},
        pulsar::PulsarStats,
        transport::{Delivery, SubscriptionType},
    },
    state::StateEntry,
    worker::{Deleted, stats::FunctionStatus},
};

/// One request, the first line of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Publish every following line to `topic`.
    Produce { topic: String, format: InputFormat },
    /// Stream messages of `subscription` on `topic` (created if missing), acknowledging each
    /// once written.
    Consume {
        topic: String,
        subscription: String,
        subscription_type: SubscriptionType,
        /// Stop after this many messages.
        count: Option<u64>,
        /// Stop when no message came for this long.
        idle_timeout_ms: Option<u64>,
        format: OutputFormat,
    },
    /// Create a subscription so that it keeps what is published from now on.
    CreateSubscription { topic: String, subscription: String, subscription_type: SubscriptionType },
    /// Publish `value` to a function's input and answer what became of it.
    Trigger { function: String, value: String, timeout_ms: u64 },
    /// The status of every function, or of one.
    Status { function: Option<String> },
    /// Stop a function for good (see [`crate::worker::WorkerHandle::delete`]).
    Delete { function: String },
    /// One entry of a function's state, as a counter when `counter`.
    QueryState { function: String, key: String, counter: bool },
    /// Set one entry of a function's state.
    PutState { function: String, entry: StateEntry },
    /// A topic's counts.
    TopicStats { topic: String },
}

/// What became of a triggered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TriggerAnswer {
    Output { value: String },
    Filtered,
    DeadLettered { reason: String, error: String },
}

/// The counts of a topic's subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionStats {
    pub name: String,
    pub backlog: u64,
    pub unacked: u64,
    pub acked: u64,
    pub consumers: usize,
}

/// The counts of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicStats {
    pub topic: String,
    pub published: u64,
    pub subscriptions: Vec<SubscriptionStats>,
}

/// The first line of every answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerAnswer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<FunctionStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_errors: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Deleted>,
    /// Failures of the worker's Pulsar consumers and producers, when it runs on Pulsar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulsar: Option<PulsarStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateEntry>,
}

impl Header {
    pub fn ok() -> Self {
        Self { ok: true, ..Self::default() }
    }

    pub fn error(error: impl std::fmt::Display) -> Self {
        Self { ok: false, error: Some(error.to_string()), ..Self::default() }
    }
}

/// A consumed message as a JSON line.
#[derive(Debug, Serialize)]
pub struct ConsumedJson<'a> {
    pub message_id: String,
    pub topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<i64>,
    pub redelivery_count: u32,
    #[serde(flatten)]
    pub payload: PayloadJson<'a>,
}

impl<'a> ConsumedJson<'a> {
    pub fn new(delivery: &'a Delivery) -> Self {
        let message = &delivery.message;
        Self {
            message_id: delivery.message_id.to_string(),
            topic: &delivery.topic,
            key: message.key.as_deref(),
            properties: message.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            event_time: message.event_time_ms,
            redelivery_count: delivery.redelivery_count,
            payload: PayloadJson::new(&message.payload),
        }
    }
}
