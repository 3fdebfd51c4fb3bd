//! Inputs whose call killed the instance's process (a crash, or a timeout that killed it) are
//! tried again through the function's retry topic, as Pulsar's retry letter topic does it: the
//! input is acknowledged once a copy of it is held on the retry topic, and the copy carries
//! its count of attempts (`RECONSUMETIMES`) and the last cause. The function's subscription
//! includes the retry topic, so the copy may go to any worker of the subscription, and the
//! count goes with it: a poison message is dead-lettered after `max_message_retries` kills in
//! all, not per worker.

use std::sync::Arc;

use crate::{
    io::transport::{Delivery, Message},
    vocabulary::{Failure, FailureKind},
};

/// Pulsar's property for how many times a message was consumed again through its retry topic.
pub const RECONSUME_TIMES: &str = "RECONSUMETIMES";
/// The original topic and message id, as Pulsar's retry and dead-letter topics name them.
pub const REAL_TOPIC: &str = "REAL_TOPIC";
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
const REASON: &str = "pfn.retry.reason";
const ERROR: &str = "pfn.retry.error";

/// Whether a failure goes through the retry topic: it killed the instance's process.
pub fn goes_to_retry_topic(failure: &Failure) -> bool {
    matches!(failure.kind, FailureKind::Crash | FailureKind::Timeout)
}

/// The copy of `delivery` to publish to the retry topic after it failed with `failure`.
pub fn copy_for_retry(delivery: &Delivery, failure: &Failure) -> Message {
    let input = &delivery.message;
    let mut properties: Vec<(String, String)> = input
        .properties
        .iter()
        .filter(|(key, _)| ![RECONSUME_TIMES, REASON, ERROR].contains(&key.as_str()))
        .cloned()
        .collect();
    if !properties.iter().any(|(key, _)| key == REAL_TOPIC) {
        properties.push((REAL_TOPIC.to_owned(), delivery.topic.to_string()));
        properties.push((ORIGIN_MESSAGE_ID.to_owned(), delivery.message_id.to_string()));
    }
    properties.extend([
        (RECONSUME_TIMES.to_owned(), (delivery.redelivery_count + 1).to_string()),
        (REASON.to_owned(), failure.kind.as_str().to_owned()),
        (ERROR.to_owned(), failure.message.clone()),
    ]);
    Message { payload: input.payload.clone(), key: input.key.clone(), properties, event_time_ms: input.event_time_ms }
}

/// Takes a retried copy's count of attempts and last cause into its delivery, where they are
/// more than the transport counted.
pub fn apply_count(delivery: &mut Delivery) {
    let property = |name: &str| {
        let properties = &delivery.message.properties;
        properties.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    };
    let Some(times) = property(RECONSUME_TIMES).and_then(|times| times.parse::<u32>().ok()) else { return };
    if times <= delivery.redelivery_count {
        return;
    }
    let kind = match property(REASON) {
        Some("timeout") => FailureKind::Timeout,
        Some("crash") => FailureKind::Crash,
        _ => FailureKind::System,
    };
    let failure = Failure::new(kind, property(ERROR).unwrap_or("killed the instance's process"));
    delivery.redelivery_count = times;
    delivery.last_failure = Some(Arc::new(failure));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::transport::MessageId;

    #[test]
    fn the_count_and_cause_travel_with_the_copy() {
        let mut delivery = Delivery {
            tag: 1,
            message_id: MessageId::Sequence(7),
            topic: Arc::from("in"),
            message: Arc::new(Message { payload: b"abort".to_vec(), ..Message::default() }),
            redelivery_count: 0,
            last_failure: None,
        };
        let crash = Failure::new(FailureKind::Crash, "killed by signal 6 (SIGABRT)");
        let copy = copy_for_retry(&delivery, &crash);
        delivery.message = Arc::new(copy);
        delivery.topic = Arc::from("in-sub-RETRY");
        apply_count(&mut delivery);
        assert_eq!(delivery.redelivery_count, 1);
        assert_eq!(delivery.last_failure.as_deref(), Some(&crash));
        let again = copy_for_retry(&delivery, &crash);
        let value = |name: &str| {
            again.properties.iter().filter(|(key, _)| key == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>()
        };
        assert_eq!(value(RECONSUME_TIMES), ["2"]);
        assert_eq!((value(REAL_TOPIC), value(ORIGIN_MESSAGE_ID)), (vec!["in"], vec!["7"]));
    }
}
