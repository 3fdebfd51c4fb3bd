//! Topic names as Pulsar resolves them: `name` and `tenant/namespace/name` are short for
//! `persistent://public/default/name` and `persistent://tenant/namespace/name`. Pulsar's own
//! clients expand them before they reach the broker (Java's `TopicName.get`); so does pfn.

use std::borrow::Cow;

/// `topic` with its domain, tenant and namespace.
pub(super) fn full(topic: &str) -> Cow<'_, str> {
    if topic.contains("://") {
        return Cow::Borrowed(topic);
    }
    match topic.matches('/').count() {
        0 => Cow::Owned(format!("persistent://public/default/{topic}")),
        _ => Cow::Owned(format!("persistent://{topic}")),
    }
}

#[cfg(test)]
mod tests {
    use super::full;

    #[test]
    fn short_names_get_pulsars_defaults() {
        assert_eq!(full("out"), "persistent://public/default/out");
        assert_eq!(full("acme/billing/out"), "persistent://acme/billing/out");
        assert_eq!(full("non-persistent://public/default/x"), "non-persistent://public/default/x");
        assert_eq!(full("persistent://a/b/c"), "persistent://a/b/c");
    }
}
