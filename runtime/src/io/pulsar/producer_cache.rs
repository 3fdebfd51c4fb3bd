//! Which cached producers to close: those idle too long, then, while there are too many, the
//! least recently used. A producer in use (a send or its receipts in progress) is never closed.

use std::time::{Duration, Instant};

/// How long a producer may go unused before it is closed.
pub(super) const IDLE_CLOSE: Duration = Duration::from_secs(60);
/// The most producers a transport keeps open; past it, the least recently used idle ones close.
pub(super) const MAX_PRODUCERS: usize = 1000;
/// How often the cache looks for producers to close, at most.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// One cached producer, as the sweep sees it.
#[derive(Debug, Clone)]
pub(super) struct CacheEntry<K> {
    pub key: K,
    pub last_used: Instant,
    pub in_use: bool,
}

/// The keys of the producers to close at `now`: idle ones unused for `idle`, then the least
/// recently used of the rest until at most `max` remain.
pub(super) fn to_close<K: Clone>(mut entries: Vec<CacheEntry<K>>, now: Instant, idle: Duration, max: usize) -> Vec<K> {
    let mut closing = Vec::new();
    let mut kept = entries.len();
    entries.sort_by_key(|entry| entry.last_used);
    for entry in entries {
        if entry.in_use {
            continue;
        }
        if now.saturating_duration_since(entry.last_used) >= idle || kept > max {
            closing.push(entry.key);
            kept -= 1;
        }
    }
    closing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_the_idle_then_the_least_recently_used_but_never_one_in_use() {
        let now = Instant::now();
        let at = |seconds_ago: u64| now.checked_sub(Duration::from_secs(seconds_ago)).expect("a past instant");
        let entry = |key: u32, seconds_ago: u64, in_use: bool| CacheEntry { key, last_used: at(seconds_ago), in_use };
        let idle = Duration::from_secs(60);
        let entries = vec![entry(1, 61, false), entry(2, 70, true), entry(3, 5, false), entry(4, 1, false)];
        assert_eq!(to_close(entries.clone(), now, idle, 10), vec![1], "idle and free");
        assert_eq!(to_close(entries.clone(), now, idle, 2), vec![1, 3], "then the least recently used");
        assert_eq!(to_close(entries, now, idle, 0), vec![1, 3, 4], "one in use stays, however many");
    }
}
