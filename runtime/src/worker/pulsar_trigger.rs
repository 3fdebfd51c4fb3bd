//! Trigger on Pulsar, as Pulsar Functions does it: subscribe to the function's output, publish
//! the value to its input, and read the output until the message that names the input's id
//! (outputs carry [`INPUT_ID_PROPERTY`] on Pulsar).

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::{FunctionShared, Outcome, TriggerError};
use crate::io::{
    pulsar::PulsarTransport,
    transport::{
        Delivery, INPUT_ID_PROPERTY, Message, MessageId, SubscriptionPosition, SubscriptionRequest, SubscriptionType,
        Transport,
    },
};

/// How long one receive waits before the deadline is looked at again.
const POLL: Duration = Duration::from_millis(100);

/// Publishes `value` to `function`'s first input on Pulsar and waits up to `wait` for its output.
pub(super) fn trigger(
    pulsar: &Arc<PulsarTransport>,
    function: &FunctionShared,
    value: Vec<u8>,
    wait: Duration,
) -> Result<Outcome, TriggerError> {
    let fqfn = function.fqfn.clone();
    let spec = function.spec();
    let output = spec.output.clone().ok_or_else(|| TriggerError::NoOutput { fqfn: fqfn.clone() })?;
    let input = spec.inputs.first().cloned().ok_or_else(|| TriggerError::NoOutput { fqfn: fqfn.clone() })?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    let request = SubscriptionRequest {
        position: SubscriptionPosition::Latest,
        ..SubscriptionRequest::new(vec![output.clone()], format!("pfn-trigger-{nanos}"), SubscriptionType::Failover)
    };
    let source =
        pulsar.subscribe(&request).map_err(|source| TriggerError::Publish { topic: output.clone(), source })?;
    // Subscribe before publishing: the subscription starts at the end of the output.
    source.subscribe_now().map_err(|source| TriggerError::Publish { topic: output.clone(), source })?;
    let mut received: Vec<Delivery> = Vec::new();
    let answer = (|| {
        let id = pulsar
            .publish_for_id(&input, Message::from_payload(value))
            .map_err(|source| TriggerError::Publish { topic: input.clone(), source })?;
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            received.clear();
            if source.receive(16, POLL, &mut received).is_err() {
                break;
            }
            let tags: Vec<u64> = received.iter().map(|delivery| delivery.tag).collect();
            source.ack(&tags);
            if let Some(answer) = received.iter().find(|delivery| answers(delivery, id)) {
                return Ok(Outcome::Output(answer.message.payload.clone()));
            }
        }
        Err(TriggerError::TimedOut { fqfn: fqfn.clone(), waited: wait })
    })();
    if let Err(error) = source.unsubscribe() {
        tracing::warn!(%error, "cannot delete the trigger's subscription");
    }
    answer
}

/// Whether `delivery` is the output of the input `id` (same ledger and entry).
fn answers(delivery: &Delivery, id: MessageId) -> bool {
    let Some(named) = delivery.message.property(INPUT_ID_PROPERTY) else { return false };
    let MessageId::Ledger { ledger, entry, .. } = id else { return false };
    let mut parts = named.split(':').map(str::parse::<u64>);
    matches!((parts.next(), parts.next()), (Some(Ok(l)), Some(Ok(e))) if l == ledger && e == entry)
}
