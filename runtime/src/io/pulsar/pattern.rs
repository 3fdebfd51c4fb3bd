//! `topics_pattern` as Pulsar reads it: a regular expression over fully qualified topic names,
//! all within one namespace, matching whole names.

use regex::Regex;

const DEFAULT_PREFIX: &str = "persistent://public/default/";
/// The suffix of a partition's name.
const PARTITION: &str = "-partition-[0-9]+";

/// A pattern ready for the consumer: the namespace whose topics are listed, and the regex
/// that a whole topic name must match.
#[derive(Debug)]
pub(super) struct TopicsPattern {
    pub namespace: String,
    pub regex: Regex,
}

impl TopicsPattern {
    /// Qualifies `pattern` as Pulsar's `TopicName` does: `tenant/namespace/topic` and plain
    /// `topic` gain `persistent://` (and `public/default/`); the match is anchored at both ends,
    /// and a partition matches as its topic does.
    pub fn parse(pattern: &str) -> Result<Self, regex::Error> {
        let qualified = if pattern.contains("://") {
            pattern.to_owned()
        } else if pattern.split('/').count() >= 3 {
            format!("persistent://{pattern}")
        } else {
            format!("{DEFAULT_PREFIX}{pattern}")
        };
        let path = qualified.split_once("://").map_or(qualified.as_str(), |(_, path)| path);
        let namespace = path.split('/').take(2).collect::<Vec<_>>().join("/");
        // The broker lists a partitioned topic's partitions; Pulsar matches their topic's name.
        let regex = Regex::new(&format!("^(?:{qualified})(?:{PARTITION})?$"))?;
        Ok(Self { namespace, regex })
    }
}

#[cfg(test)]
mod tests {
    use super::TopicsPattern;

    #[test]
    fn patterns_are_qualified_like_pulsar_topic_names_and_match_whole_names() {
        let full = TopicsPattern::parse("persistent://acme/orders/in-.*").expect("a regex");
        assert_eq!(full.namespace, "acme/orders");
        assert!(full.regex.is_match("persistent://acme/orders/in-1"));
        assert!(!full.regex.is_match("persistent://acme/orders/xin-1"), "matched inside a name");
        assert!(!full.regex.is_match("persistent://acme/other/in-1"));

        let three = TopicsPattern::parse("acme/orders/in-.*").expect("a regex");
        assert_eq!(three.namespace, "acme/orders");
        assert!(three.regex.is_match("persistent://acme/orders/in-2"));

        let short = TopicsPattern::parse("in-[0-9]+").expect("a regex");
        assert_eq!(short.namespace, "public/default");
        assert!(short.regex.is_match("persistent://public/default/in-42"));
        assert!(!short.regex.is_match("persistent://public/default/in-42-partition-x"));
        assert!(short.regex.is_match("persistent://public/default/in-42-partition-3"), "a partition is its topic");
        let exact = TopicsPattern::parse("orders").expect("a regex");
        assert!(exact.regex.is_match("persistent://public/default/orders-partition-0"));
        assert!(!exact.regex.is_match("persistent://public/default/orders-eu"));
    }
}
