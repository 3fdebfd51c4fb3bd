//! What a batch's calls published to topics of their choosing, kept by input until the batch's
//! commit sends it: one publish per topic, in the order the calls made them.

use std::collections::HashMap;

use crate::{
    context::Publication,
    io::transport::{DeliveryTag, Message},
};

/// One topic's messages and the inputs whose calls published them.
#[derive(Debug, Default)]
pub(super) struct TopicMessages {
    pub topic: String,
    pub messages: Vec<Message>,
    pub inputs: Vec<DeliveryTag>,
}

/// A batch's publications, grouped by topic in first-use order.
#[derive(Debug, Default)]
pub(super) struct Routed {
    topics: Vec<TopicMessages>,
    index: HashMap<String, usize>,
}

impl Routed {
    /// Keeps what the call on input `tag` published.
    pub fn add(&mut self, tag: DeliveryTag, published: Vec<Publication>) {
        for Publication { topic, message } in published {
            let at = match self.index.get(&topic) {
                Some(&at) => at,
                None => {
                    self.index.insert(topic.clone(), self.topics.len());
                    self.topics.push(TopicMessages { topic, ..TopicMessages::default() });
                    self.topics.len() - 1
                }
            };
            let group = &mut self.topics[at];
            group.messages.push(message);
            if group.inputs.last() != Some(&tag) {
                group.inputs.push(tag);
            }
        }
    }

    /// Takes every topic's messages.
    pub fn take_by_topic(&mut self) -> Vec<TopicMessages> {
        self.index.clear();
        std::mem::take(&mut self.topics)
    }

    /// Drops everything kept.
    pub fn clear(&mut self) {
        self.index.clear();
        self.topics.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(topic: &str, payload: &str) -> Publication {
        Publication { topic: topic.to_owned(), message: Message::from_payload(payload.as_bytes().to_vec()) }
    }

    #[test]
    fn groups_by_topic_in_order_with_the_inputs_they_came_from() {
        let mut routed = Routed::default();
        routed.add(1, vec![publication("a", "1a"), publication("b", "1b"), publication("a", "1a'")]);
        routed.add(2, vec![]);
        routed.add(3, vec![publication("b", "3b")]);
        let topics = routed.take_by_topic();
        let payloads = |group: &TopicMessages| -> Vec<Vec<u8>> {
            group.messages.iter().map(|message| message.payload.clone()).collect()
        };
        assert_eq!((topics[0].topic.as_str(), topics[1].topic.as_str()), ("a", "b"));
        assert_eq!(payloads(&topics[0]), [b"1a".to_vec(), b"1a'".to_vec()]);
        assert_eq!(payloads(&topics[1]), [b"1b".to_vec(), b"3b".to_vec()]);
        assert_eq!((topics[0].inputs.as_slice(), topics[1].inputs.as_slice()), (&[1][..], &[1, 3][..]));
        assert!(routed.take_by_topic().is_empty());
    }
}
