//! Outcomes a child computed ahead of their turn, handed out as the instance loop calls for
//! each input; their inputs' keys and their outputs are kept in one buffer each.

use std::{collections::VecDeque, ops::Range};

use super::wire::{WireCalled, WireOutcome};
use crate::{
    context::{Effects, Publication},
    execute::{CallOutcome, Executed, Input},
    io::transport::Message,
    vocabulary::{Failure, FailureKind},
};

/// An outcome, its output at a range of its queue's outputs.
#[derive(Debug)]
pub(super) struct Called {
    outcome: CallOutcome<Range<usize>>,
    effects: Effects,
}

impl Called {
    pub fn failed(failure: Failure) -> Self {
        Self { outcome: CallOutcome::Failed(failure), effects: Effects::default() }
    }

    /// The outcome a child sent, its output appended to `outputs`.
    pub fn of_wire(called: WireCalled<'_>, outputs: &mut Vec<u8>) -> Self {
        let outcome = match called.outcome {
            WireOutcome::Output(output) => {
                let start = outputs.len();
                outputs.extend_from_slice(output);
                CallOutcome::Output(start..outputs.len())
            }
            WireOutcome::Filtered => CallOutcome::Filtered,
            WireOutcome::Failed(failure) => CallOutcome::Failed(failure),
        };
        let published = called
            .published
            .into_iter()
            .map(|publication| Publication {
                topic: publication.topic.to_owned(),
                message: Message {
                    payload: publication.payload.to_vec(),
                    key: publication.key.map(str::to_owned),
                    properties: publication
                        .properties
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), value.to_owned()))
                        .collect(),
                    event_time_ms: publication.event_time_ms,
                },
            })
            .collect();
        Self { outcome, effects: Effects { acked: called.acked, published } }
    }
}

/// One outcome, for the input whose topic and id are at `key` in its queue's keys.
#[derive(Debug)]
struct Ahead {
    key: Range<usize>,
    topic_len: usize,
    called: Called,
}

/// The outcomes of a batch, in the order of its inputs.
#[derive(Debug, Default)]
pub(super) struct AheadQueue {
    entries: VecDeque<Ahead>,
    keys: String,
    outputs: Vec<u8>,
}

impl AheadQueue {
    /// Empties the queue for a new batch.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.keys.clear();
        self.outputs.clear();
    }

    /// Where the outputs of the batch's outcomes go as they arrive ([`Called::of_wire`]).
    pub fn outputs(&mut self) -> &mut Vec<u8> {
        &mut self.outputs
    }

    /// Queues the outcome of `input`.
    pub fn push(&mut self, input: &Input<'_>, called: Called) {
        let start = self.keys.len();
        self.keys.push_str(input.topic);
        self.keys.push_str(input.message_id);
        self.entries.push_back(Ahead { key: start..self.keys.len(), topic_len: input.topic.len(), called });
    }

    /// Whether the next outcome is `input`'s.
    pub fn is_next(&self, input: &Input<'_>) -> bool {
        self.entries.front().is_some_and(|ahead| {
            let (topic, id) = self.keys[ahead.key.clone()].split_at(ahead.topic_len);
            topic == input.topic && id == input.message_id
        })
    }

    /// Takes the next outcome, its output borrowed from the queue.
    pub fn pop(&mut self) -> Executed<&[u8]> {
        match self.entries.pop_front() {
            Some(Ahead { called: Called { outcome, effects }, .. }) => {
                let outcome = match outcome {
                    CallOutcome::Output(range) => CallOutcome::Output(&self.outputs[range]),
                    CallOutcome::Filtered => CallOutcome::Filtered,
                    CallOutcome::Failed(failure) => CallOutcome::Failed(failure),
                };
                Executed { outcome, effects }
            }
            None => Executed {
                outcome: CallOutcome::Failed(Failure::new(FailureKind::System, "no outcome")),
                effects: Effects::default(),
            },
        }
    }
}
