//! pfn's own routes for the topics a worker's functions use (embedded, or Pulsar's), which
//! `pfn topics` speaks to: produce (one message per line of the body, published as the body
//! arrives), consume (a stream of lines, each message acknowledged once handed to the
//! connection), create a subscription, and a topic's counts (embedded topics only).

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{AdminState, error::ApiError, routes::off_thread};
use crate::{
    io::{
        lines::{ConsumedJson, Envelope, InputFormat, OutputFormat},
        transport::{
            Delivery, DeliveryTag, Message, Sink, Source, SubscriptionRequest, SubscriptionType, Transport,
            TransportError,
        },
    },
    worker::{Topics, WorkerHandle},
};

/// Messages published, or taken from a subscription, at most per batch.
const BATCH: usize = 1024;

/// `?topic=` and, for produce, `&format=`.
#[derive(Debug, Deserialize)]
pub(super) struct ProduceQuery {
    topic: String,
    #[serde(default)]
    format: InputFormat,
}

/// `?topic=&subscription=` and how to take from it.
#[derive(Debug, Deserialize)]
pub(super) struct SubscriptionQuery {
    topic: String,
    subscription: String,
    #[serde(default)]
    subscription_type: SubscriptionType,
    /// Stop after this many messages.
    count: Option<u64>,
    /// Stop when no message came for this many milliseconds.
    idle_timeout_ms: Option<u64>,
    #[serde(default)]
    format: OutputFormat,
}

/// `?topic=`.
#[derive(Debug, Deserialize)]
pub(super) struct TopicQuery {
    topic: String,
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

/// `POST /pfn/v1/topics/produce`: publishes each line of the body; answers how many.
pub(super) async fn produce(
    State(state): State<AdminState>,
    Query(query): Query<ProduceQuery>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut chunks = body.into_data_stream();
    let (mut pending, mut batch, mut line_number, mut published) = (Vec::new(), Vec::new(), 0u64, 0u64);
    let malformed = |line: u64, reason: String| ApiError::bad_request(format!("line {line}: {reason}"));
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| ApiError::bad_request(format!("reading the messages: {error}")))?;
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|byte| *byte == b'\n') {
            line_number += 1;
            let message =
                parse_line(&pending[start..start + end], query.format).map_err(|e| malformed(line_number, e))?;
            batch.push(Arc::new(message));
            start += end + 1;
        }
        pending.drain(..start);
        // Published as each chunk arrives, so that a slow producer's messages do not wait.
        if !batch.is_empty() {
            published += publish(&state.worker, &query.topic, std::mem::take(&mut batch), published).await?;
        }
    }
    if !pending.is_empty() {
        line_number += 1;
        batch.push(Arc::new(parse_line(&pending, query.format).map_err(|e| malformed(line_number, e))?));
    }
    published += publish(&state.worker, &query.topic, batch, published).await?;
    Ok(Json(serde_json::json!({ "produced": published })))
}

/// One line as a message: its bytes, or a JSON envelope.
fn parse_line(line: &[u8], format: InputFormat) -> Result<Message, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Ok(match format {
        InputFormat::Raw => Message::from_payload(line.to_vec()),
        InputFormat::Json => {
            let envelope = Envelope::parse(line)?;
            Message {
                payload: envelope.payload(),
                key: envelope.key,
                properties: envelope.properties.into_iter().collect(),
                event_time_ms: envelope.event_time,
            }
        }
    })
}

/// Publishes `batch` to `topic`; how many it published.
async fn publish(worker: &WorkerHandle, topic: &str, batch: Vec<Arc<Message>>, before: u64) -> Result<u64, ApiError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let (worker, topic) = (worker.clone(), topic.to_owned());
    let count = batch.len() as u64;
    off_thread(move || {
        let sent = match &worker.topics {
            Topics::Embedded => worker.broker.publish_shared(&topic, &batch).map(drop),
            Topics::Pulsar(pulsar) => pulsar.publish(&topic, batch.iter().map(|message| (**message).clone()).collect()),
        };
        sent.map(|()| count).map_err(|error| {
            ApiError::new(StatusCode::BAD_GATEWAY, format!("publishing to {topic} after {before} messages: {error}"))
        })
    })
    .await?
}

/// `GET /pfn/v1/topics/consume`: the subscription's messages, one per line.
pub(super) async fn consume(
    State(state): State<AdminState>,
    Query(query): Query<SubscriptionQuery>,
) -> Result<Response, ApiError> {
    let request = SubscriptionRequest::new(vec![query.topic], query.subscription, query.subscription_type);
    let transport = state.worker.transport();
    let source = off_thread(move || transport.subscribe(&request)).await?.map_err(subscribe_error)?;
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let idle = query.idle_timeout_ms.map(Duration::from_millis);
    let (count, format) = (query.count, query.format);
    tokio::task::spawn_blocking(move || stream_messages(&sender, source.as_ref(), count, idle, format));
    let lines = futures::stream::unfold(receiver, |mut receiver| async {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::from_stream(lines)).into_response())
}

fn subscribe_error(error: TransportError) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, format!("cannot subscribe: {error}"))
}

/// Hands batches of lines to the connection, acknowledging each batch once handed over.
fn stream_messages(
    sender: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    source: &dyn Source,
    count: Option<u64>,
    idle_timeout: Option<Duration>,
    format: OutputFormat,
) {
    let mut delivered = 0u64;
    let mut batch: Vec<Delivery> = Vec::with_capacity(BATCH);
    let mut tags: Vec<DeliveryTag> = Vec::with_capacity(BATCH);
    let wait = idle_timeout.unwrap_or(Duration::from_millis(200));
    loop {
        let remaining = count.map_or(BATCH as u64, |count| count - delivered).min(BATCH as u64);
        if remaining == 0 {
            return;
        }
        batch.clear();
        match source.receive(usize::try_from(remaining).unwrap_or(BATCH), wait, &mut batch) {
            Ok(0) if idle_timeout.is_some() => return,
            Ok(0) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let mut lines = Vec::new();
        tags.clear();
        for delivery in &batch {
            match format {
                OutputFormat::Raw => lines.extend_from_slice(&delivery.message.payload),
                OutputFormat::Json => {
                    if let Err(error) = serde_json::to_writer(&mut lines, &ConsumedJson::new(delivery)) {
                        tracing::warn!(%error, "cannot write a consumed message as JSON");
                    }
                }
            }
            lines.push(b'\n');
            tags.push(delivery.tag);
        }
        // A client gone mid-way leaves its messages unacknowledged, to be delivered again.
        if sender.blocking_send(Ok(Bytes::from(lines))).is_err() {
            return;
        }
        source.ack(&tags);
        delivered += batch.len() as u64;
    }
}

/// `PUT /pfn/v1/topics/subscription`: a subscription that keeps the topic's messages from now
/// on (on Pulsar, a consumer subscribes and leaves again; the subscription stays).
pub(super) async fn create_subscription(
    State(state): State<AdminState>,
    Query(query): Query<SubscriptionQuery>,
) -> Result<StatusCode, ApiError> {
    let worker = state.worker.clone();
    off_thread(move || match &worker.topics {
        Topics::Embedded => {
            worker.broker.create_subscription(&query.topic, &query.subscription, query.subscription_type)
        }
        Topics::Pulsar(pulsar) => {
            let request = SubscriptionRequest::new(vec![query.topic], query.subscription, query.subscription_type);
            let source = Arc::clone(pulsar).subscribe(&request)?;
            source.subscribe_now()?;
            source.detach();
            Ok(())
        }
    })
    .await?
    .map_err(subscribe_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /pfn/v1/topics/stats`: an embedded topic's counts.
pub(super) async fn stats(
    State(state): State<AdminState>,
    Query(TopicQuery { topic }): Query<TopicQuery>,
) -> Result<Json<TopicStats>, ApiError> {
    if matches!(state.worker.topics, Topics::Pulsar(_)) {
        return Err(ApiError::bad_request(format!(
            "topic stats of {topic}: Pulsar serves them on its admin HTTP API (pulsar-admin topics stats), not on the \
             protocol the worker speaks"
        )));
    }
    let counts = state.worker.broker.counts(&topic);
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
    Ok(Json(TopicStats { topic, published: counts.published, subscriptions }))
}
