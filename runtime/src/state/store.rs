//! The worker's state store: one redb file, every function's keys in one table, written by one
//! flusher thread that commits whatever was staged since its last commit in one transaction (a
//! group commit: one fsync for the writes of many calls, of every instance and function).
//!
//! Staged writes are visible to every read at once; they are durable once the flusher's commit
//! returns, and whoever staged them is told then. A read looks at the staged writes, then at the
//! ones being flushed, then at the file. The file records the last flush it holds (its epoch),
//! so that a read that begins after that commit does not count the flushed writes twice.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::Instant,
};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::{
    StateEntry, StateError, counter,
    layer::{Layer, Lookup, Write},
};
use crate::{
    sync::lock,
    telemetry::{FlushMetrics, StateOpMetrics},
};

/// Every function's values, keyed by (fully qualified function name, key).
const VALUES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("values");
/// The store's own records: the epoch of the last flush the file holds.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EPOCH: &str = "epoch";

/// Told once whether staged writes are on disk.
pub type Durable = Box<dyn FnOnce(Result<(), StateError>) + Send>;

/// Writes accepted but not on disk yet, per function.
type Staged = HashMap<Arc<str>, Layer>;

#[derive(Default)]
struct Layers {
    /// Writes accepted since the flush in progress began; they go with the next one.
    staged: Staged,
    /// Who waits for `staged` to be on disk.
    staged_waiters: Vec<Durable>,
    /// The writes of the flush in progress, and its epoch (0 when none is in progress).
    flushing: Arc<Staged>,
    flushing_epoch: u64,
    /// The epoch the next flush takes, and so `staged`'s. Epochs only grow, even past a flush
    /// that failed.
    next_epoch: u64,
    closing: bool,
}

struct Shared {
    db: Database,
    path: PathBuf,
    layers: Mutex<Layers>,
    work: Condvar,
    flushes: Arc<FlushMetrics>,
}

/// The state store of one worker (or one `pfn run`). Dropping it flushes what is staged.
pub struct StateStore {
    shared: Arc<Shared>,
    flusher: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

/// A function's view of the store: what its instances and the command line use.
#[derive(Clone)]
pub struct FunctionStore {
    shared: Arc<Shared>,
    fqfn: Arc<str>,
    ops: Arc<StateOpMetrics>,
}

impl std::fmt::Debug for FunctionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionStore").field("fqfn", &self.fqfn).finish_non_exhaustive()
    }
}

impl StateStore {
    /// Opens (or creates) the store at `path`, repairing it quickly if the last process died.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let failed = |source: redb::Error| StateError::Open { path: path.to_path_buf(), reason: Arc::new(source) };
        let db = Database::create(path).map_err(|e| failed(e.into()))?;
        let stored = stored_epoch(&db.begin_read().map_err(|e| failed(e.into()))?).map_err(failed)?;
        let layers = Layers { next_epoch: stored + 1, ..Layers::default() };
        let shared = Arc::new(Shared {
            db,
            path: path.to_path_buf(),
            layers: Mutex::new(layers),
            work: Condvar::new(),
            flushes: Arc::default(),
        });
        let flusher = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("pfn-state".into())
                .spawn(move || shared.flush_until_closed())
                .map_err(|source| StateError::Flusher { reason: Arc::new(source) })?
        };
        Ok(Self { shared, flusher: Some(flusher) })
    }

    /// The file the store is in.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The view of function `fqfn`, with metrics of its own.
    pub fn function(&self, fqfn: &str) -> FunctionStore {
        FunctionStore { shared: Arc::clone(&self.shared), fqfn: Arc::from(fqfn), ops: Arc::default() }
    }

    /// What the store's group commits measured.
    pub fn flush_metrics(&self) -> Arc<FlushMetrics> {
        Arc::clone(&self.shared.flushes)
    }
}

impl Drop for StateStore {
    fn drop(&mut self) {
        lock(&self.shared.layers).closing = true;
        self.shared.work.notify_all();
        if let Some(flusher) = self.flusher.take()
            && flusher.join().is_err()
        {
            tracing::error!(path = %self.shared.path.display(), "the state flusher panicked");
        }
    }
}

fn stored_epoch(read: &ReadTransaction) -> Result<u64, redb::Error> {
    match read.open_table(META) {
        Ok(meta) => Ok(meta.get(EPOCH)?.map_or(0, |epoch| epoch.value())),
        Err(TableError::TableDoesNotExist(_)) => Ok(0),
        Err(error) => Err(error.into()),
    }
}

impl Shared {
    fn flush_until_closed(&self) {
        loop {
            let mut layers = lock(&self.layers);
            while layers.staged.is_empty() && layers.staged_waiters.is_empty() && !layers.closing {
                layers = self.work.wait(layers).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if layers.staged.is_empty() && layers.staged_waiters.is_empty() {
                return;
            }
            let epoch = layers.next_epoch;
            layers.next_epoch += 1;
            layers.flushing = Arc::new(std::mem::take(&mut layers.staged));
            layers.flushing_epoch = epoch;
            let waiters = std::mem::take(&mut layers.staged_waiters);
            drop(layers);
            let started = Instant::now();
            let written = self.write(epoch);
            self.flushes.record(started.elapsed());
            let mut layers = lock(&self.layers);
            layers.flushing = Arc::default();
            layers.flushing_epoch = 0;
            let result = match written {
                Ok(()) => Ok(()),
                Err(source) => {
                    let error = StateError::Write { path: self.path.clone(), reason: Arc::new(source) };
                    tracing::error!(%error, "state writes lost; their inputs will be redelivered");
                    Err(error)
                }
            };
            drop(layers);
            for waiter in waiters {
                waiter(result.clone());
            }
        }
    }

    /// Writes the layers being flushed in one transaction, with `epoch`.
    fn write(&self, epoch: u64) -> Result<(), redb::Error> {
        let flushing = Arc::clone(&lock(&self.layers).flushing);
        let mut txn = self.db.begin_write()?;
        txn.set_quick_repair(true);
        {
            let mut values = txn.open_table(VALUES)?;
            for (fqfn, layer) in flushing.iter() {
                for prefix in layer.cleared() {
                    let mut doomed = Vec::new();
                    for entry in values.range((fqfn.as_ref(), prefix.as_str())..)? {
                        let (key, _) = entry?;
                        let (owner, key) = key.value();
                        if owner != fqfn.as_ref() || !key.starts_with(prefix.as_str()) {
                            break;
                        }
                        doomed.push(key.to_owned());
                    }
                    for key in doomed {
                        values.remove((fqfn.as_ref(), key.as_str()))?;
                    }
                }
                for (key, write) in layer.writes() {
                    match write {
                        Write::Put(value) => {
                            values.insert((fqfn.as_ref(), key), value.as_slice())?;
                        }
                        Write::Delete => {
                            values.remove((fqfn.as_ref(), key))?;
                        }
                        Write::Add(amount) => {
                            let base =
                                values.get((fqfn.as_ref(), key))?.and_then(|value| counter::decode(value.value()));
                            let sum = base.unwrap_or(0).wrapping_add(*amount);
                            values.insert((fqfn.as_ref(), key), counter::encode(sum).as_slice())?;
                        }
                    }
                }
            }
            txn.open_table(META)?.insert(EPOCH, epoch)?;
        }
        // Readers keep seeing `flushing` until the commit is done, and skip it once the file has
        // its epoch.
        txn.commit()?;
        Ok(())
    }
}

/// A key's value as the layers above the file decided it, or what they add to the file's.
#[derive(Debug, Default)]
struct Resolution {
    /// The value, when a layer decided it (None: deleted).
    decided: Option<Option<Vec<u8>>>,
    /// What counter increments add on top.
    added: i64,
    /// Whether any layer incremented the key as a counter.
    counted: bool,
}

impl Resolution {
    /// Looks at one more layer, below the ones seen; true once the key is decided.
    fn see(&mut self, lookup: Lookup<'_>) -> bool {
        match lookup {
            Lookup::Untouched => false,
            Lookup::Cleared | Lookup::Written(Write::Delete) => {
                self.decided = Some(None);
                true
            }
            Lookup::Written(Write::Put(value)) => {
                self.decided = Some(Some(value.clone()));
                true
            }
            Lookup::Written(Write::Add(amount)) => {
                self.added = self.added.wrapping_add(*amount);
                self.counted = true;
                false
            }
        }
    }

    fn finish(self, key: &str, base: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, StateError> {
        let base = self.decided.unwrap_or(base);
        if !self.counted {
            return Ok(base);
        }
        let base = match base.as_deref() {
            None => 0,
            Some(bytes) => counter::decode(bytes).ok_or_else(|| StateError::NotACounter { key: key.to_owned() })?,
        };
        Ok(Some(counter::encode(base.wrapping_add(self.added))))
    }
}

impl FunctionStore {
    /// The function's fully qualified name.
    pub fn fqfn(&self) -> &str {
        &self.fqfn
    }

    /// What the function's state operations measured.
    pub fn ops(&self) -> &StateOpMetrics {
        &self.ops
    }

    /// Reads `key` through `above` (newest first: a call's writes, then its batch's), then the
    /// store.
    pub fn get(&self, above: &[&Layer], key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut resolution = Resolution::default();
        for layer in above {
            if resolution.see(layer.lookup(key)) {
                return resolution.finish(key, None);
            }
        }
        // What the staged and the flushing writes say of the key, with the epoch each will have
        // in the file: a read that begins after the file got that epoch must not count it again.
        let pending: [(Option<OwnedLookup>, u64); 2] = {
            let layers = lock(&self.shared.layers);
            let lookup = |staged: Option<&Layer>| staged.and_then(|layer| owned_lookup(layer.lookup(key)));
            [
                (lookup(layers.staged.get(&self.fqfn)), layers.next_epoch),
                (lookup(layers.flushing.get(&self.fqfn)), layers.flushing_epoch),
            ]
        };
        let read = self.shared.db.begin_read().map_err(|e| self.read_error(e.into()))?;
        if pending.iter().any(|(write, _)| write.is_some()) {
            let stored = stored_epoch(&read).map_err(|e| self.read_error(e))?;
            for (write, epoch) in &pending {
                if let Some(write) = write
                    && stored < *epoch
                    && resolution.see(write.as_lookup())
                {
                    return resolution.finish(key, None);
                }
            }
        }
        let base = match read.open_table(VALUES) {
            Ok(values) => values
                .get((self.fqfn.as_ref(), key))
                .map_err(|e| self.read_error(e.into()))?
                .map(|value| value.value().to_vec()),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(self.read_error(error.into())),
        };
        resolution.finish(key, base)
    }

    /// Reads a counter: 0 when absent, an error when the key holds something else.
    pub fn get_counter(&self, above: &[&Layer], key: &str) -> Result<i64, StateError> {
        match self.get(above, key)? {
            None => Ok(0),
            Some(bytes) => counter::decode(&bytes).ok_or_else(|| StateError::NotACounter { key: key.to_owned() }),
        }
    }

    /// Up to `limit` keys that start with `prefix` and sort after `start_after`, in order.
    pub fn list(
        &self,
        above: &[&Layer],
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        let from = start_after.filter(|after| *after > prefix).unwrap_or(prefix);
        let after = |key: &str| start_after.is_none_or(|start| key > start);
        // Snapshot the layers above the file: their keys in range and what they decide.
        let mut layers: Vec<Layer> = above.iter().map(|layer| (*layer).clone()).collect();
        // The staged and the flushing writes, with the epoch each will have in the file: skipped
        // when the read below begins after the file got it (as in `get`).
        let pending: [(Option<Layer>, u64); 2] = {
            let shared = lock(&self.shared.layers);
            [
                (shared.staged.get(&self.fqfn).cloned(), shared.next_epoch),
                (shared.flushing.get(&self.fqfn).cloned(), shared.flushing_epoch),
            ]
        };
        let read = self.shared.db.begin_read().map_err(|e| self.read_error(e.into()))?;
        if pending.iter().any(|(layer, _)| layer.is_some()) {
            let stored = stored_epoch(&read).map_err(|e| self.read_error(e))?;
            layers.extend(pending.into_iter().filter(|(_, epoch)| stored < *epoch).filter_map(|(layer, _)| layer));
        }
        let decided = |key: &str| {
            layers.iter().find_map(|layer| match layer.lookup(key) {
                Lookup::Untouched => None,
                Lookup::Cleared | Lookup::Written(Write::Delete) => Some(false),
                Lookup::Written(_) => Some(true),
            })
        };
        let mut keys: BTreeSet<String> = layers
            .iter()
            .flat_map(|layer| layer.keys_from(prefix, from))
            .filter(|key| after(key) && decided(key) == Some(true))
            .map(str::to_owned)
            .collect();
        match read.open_table(VALUES) {
            Ok(values) => {
                let stored = values.range((self.fqfn.as_ref(), from)..).map_err(|e| self.read_error(e.into()))?;
                let mut taken = 0;
                for entry in stored {
                    let (key, _) = entry.map_err(|e| self.read_error(e.into()))?;
                    let (owner, key) = key.value();
                    if owner != self.fqfn.as_ref() || !key.starts_with(prefix) {
                        break;
                    }
                    if after(key) && decided(key) != Some(false) && keys.insert(key.to_owned()) {
                        taken += 1;
                        if taken >= limit {
                            break;
                        }
                    }
                }
            }
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(error) => return Err(self.read_error(error.into())),
        }
        Ok(keys.into_iter().take(limit).collect())
    }

    /// The entry of `key` as the command line shows it (see [`StateEntry`]).
    pub fn query(&self, key: &str, as_counter: bool) -> Result<StateEntry, StateError> {
        super::check_key(key)?;
        let value = self.get(&[], key)?.ok_or_else(|| StateError::NoKey { key: key.to_owned() })?;
        StateEntry::read(key, &value, as_counter)
    }

    /// Sets an entry from the command line, returning once it is on disk.
    pub fn put_entry(&self, entry: &StateEntry) -> Result<(), StateError> {
        self.write_now(entry.write()?)
    }

    /// Stages `writes` (a batch's, or one command's) and calls `durable` once they are on disk.
    /// Reads see them at once.
    /// Once the store is closed, `durable` is told so at once.
    pub fn stage(&self, writes: Layer, durable: Durable) {
        let mut layers = lock(&self.shared.layers);
        if layers.closing {
            drop(layers);
            return durable(Err(StateError::Closed));
        }
        if !writes.is_empty() {
            layers.staged.entry(Arc::clone(&self.fqfn)).or_default().absorb(writes);
        }
        layers.staged_waiters.push(durable);
        drop(layers);
        self.shared.work.notify_one();
    }

    /// Stages `writes` and waits until they are on disk.
    pub fn write_now(&self, writes: Layer) -> Result<(), StateError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        self.stage(
            writes,
            Box::new(move |result| {
                // The caller waits on the receiver below; it cannot be gone.
                let _ = sender.send(result);
            }),
        );
        receiver.recv().map_err(|_| StateError::Closed)?
    }

    fn read_error(&self, source: redb::Error) -> StateError {
        StateError::Read { path: self.shared.path.clone(), reason: Arc::new(source) }
    }
}

/// A layer's decision about a key, owned.
enum OwnedLookup {
    Written(Write),
    Cleared,
}

impl OwnedLookup {
    fn as_lookup(&self) -> Lookup<'_> {
        match self {
            Self::Written(write) => Lookup::Written(write),
            Self::Cleared => Lookup::Cleared,
        }
    }
}

fn owned_lookup(lookup: Lookup<'_>) -> Option<OwnedLookup> {
    match lookup {
        Lookup::Written(write) => Some(OwnedLookup::Written(write.clone())),
        Lookup::Cleared => Some(OwnedLookup::Cleared),
        Lookup::Untouched => None,
    }
}
