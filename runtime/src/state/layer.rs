//! A layer of state writes not yet on disk: one call's, one batch's, or the store's staged ones.
//!
//! Layers stack: a read looks at the newest layer first and goes down until one decides the
//! key. Counter increments stay relative (`Add`) until a layer below gives them a base, so that
//! increments from many instances add up exactly whatever order their layers are merged in.

use std::collections::BTreeMap;

use super::counter;

/// One write to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(Vec<u8>),
    Delete,
    /// Adds to a counter whatever the layers below hold.
    Add(i64),
}

/// What a layer says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The layer wrote the key.
    Written(&'a Write),
    /// The layer deleted every key with a prefix of this one.
    Cleared,
    /// The layer does not touch the key: look further down.
    Untouched,
}

/// Writes and prefix deletions, each deletion older than every write in `writes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    writes: BTreeMap<String, Write>,
    cleared: Vec<String>,
}

impl Layer {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.cleared.is_empty()
    }

    pub fn lookup(&self, key: &str) -> Lookup<'_> {
        match self.writes.get(key) {
            Some(write) => Lookup::Written(write),
            None if self.clears(key) => Lookup::Cleared,
            None => Lookup::Untouched,
        }
    }

    fn clears(&self, key: &str) -> bool {
        self.cleared.iter().any(|prefix| key.starts_with(prefix.as_str()))
    }

    pub fn put(&mut self, key: &str, value: Vec<u8>) {
        self.writes.insert(key.to_owned(), Write::Put(value));
    }

    pub fn delete(&mut self, key: &str) {
        self.writes.insert(key.to_owned(), Write::Delete);
    }

    /// Adds `amount` to a counter, on top of whatever this layer and those below hold.
    pub fn add(&mut self, key: &str, amount: i64) {
        let covered = self.clears(key);
        match self.writes.get_mut(key) {
            Some(Write::Add(sum)) => *sum = sum.wrapping_add(amount),
            Some(write @ Write::Delete) => *write = Write::Put(counter::encode(amount)),
            Some(Write::Put(value)) => {
                *value = counter::encode(counter::decode(value).unwrap_or(0).wrapping_add(amount))
            }
            None if covered => {
                self.writes.insert(key.to_owned(), Write::Put(counter::encode(amount)));
            }
            None => {
                self.writes.insert(key.to_owned(), Write::Add(amount));
            }
        }
    }

    /// Deletes every key that starts with `prefix`, in this layer and below.
    pub fn delete_prefix(&mut self, prefix: &str) {
        self.writes.retain(|key, _| !key.starts_with(prefix));
        if !self.clears(prefix) {
            self.cleared.retain(|older| !older.starts_with(prefix));
            self.cleared.push(prefix.to_owned());
        }
    }

    /// Puts `newer`'s writes on top of this layer's, as if they had been made here.
    pub fn absorb(&mut self, newer: Self) {
        for prefix in &newer.cleared {
            self.delete_prefix(prefix);
        }
        for (key, write) in newer.writes {
            match write {
                Write::Add(amount) => self.add(&key, amount),
                write => {
                    self.writes.insert(key, write);
                }
            }
        }
    }

    /// The prefixes deleted, oldest first.
    pub fn cleared(&self) -> &[String] {
        &self.cleared
    }

    /// The writes, in key order.
    pub fn writes(&self) -> impl Iterator<Item = (&str, &Write)> {
        self.writes.iter().map(|(key, write)| (key.as_str(), write))
    }

    /// The keys written (put or added) from `from` on that start with `prefix`, in order.
    pub fn keys_from<'a>(&'a self, prefix: &'a str, from: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.writes
            .range::<str, _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
            .filter(|(_, write)| !matches!(write, Write::Delete))
            .map(|(key, _)| key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_writes_win_and_adds_stay_relative() {
        let mut layer = Layer::default();
        layer.add("n", 2);
        layer.add("n", 3);
        assert_eq!(layer.lookup("n"), Lookup::Written(&Write::Add(5)));
        layer.put("n", counter::encode(10));
        layer.add("n", 1);
        assert_eq!(layer.lookup("n"), Lookup::Written(&Write::Put(counter::encode(11))));
        layer.delete("n");
        layer.add("n", 4);
        assert_eq!(layer.lookup("n"), Lookup::Written(&Write::Put(counter::encode(4))));
    }

    #[test]
    fn a_prefix_deletion_hides_older_keys_not_newer_ones() {
        let mut layer = Layer::default();
        layer.put("user/1", b"a".to_vec());
        layer.put("other", b"b".to_vec());
        layer.delete_prefix("user/");
        assert_eq!(layer.lookup("user/1"), Lookup::Cleared);
        assert_eq!(layer.lookup("user/9"), Lookup::Cleared);
        assert_eq!(layer.lookup("other"), Lookup::Written(&Write::Put(b"b".to_vec())));
        layer.put("user/2", b"c".to_vec());
        layer.add("user/3", 7);
        assert_eq!(layer.lookup("user/2"), Lookup::Written(&Write::Put(b"c".to_vec())));
        assert_eq!(layer.lookup("user/3"), Lookup::Written(&Write::Put(counter::encode(7))));
        layer.delete_prefix("u");
        assert_eq!(layer.cleared(), ["u"]);
    }

    #[test]
    fn absorbing_a_layer_is_applying_its_writes_in_order() {
        let mut older = Layer::default();
        older.add("hits", 10);
        older.put("keep/a", b"1".to_vec());
        older.put("drop/a", b"1".to_vec());
        let mut newer = Layer::default();
        newer.delete_prefix("drop/");
        newer.add("hits", 5);
        newer.put("drop/b", b"2".to_vec());
        older.absorb(newer);
        assert_eq!(older.lookup("hits"), Lookup::Written(&Write::Add(15)));
        assert_eq!(older.lookup("drop/a"), Lookup::Cleared);
        assert_eq!(older.lookup("drop/b"), Lookup::Written(&Write::Put(b"2".to_vec())));
        let listed: Vec<&str> = older.keys_from("", "").collect();
        assert_eq!(listed, ["drop/b", "hits", "keep/a"]);
        let listed: Vec<&str> = older.keys_from("keep/", "keep/").collect();
        assert_eq!(listed, ["keep/a"]);
    }
}
