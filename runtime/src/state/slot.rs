//! An instance's state writes in progress: those of the call it is in, and those of the calls of
//! its batch that succeeded. Shared by the versions of one instance (the running one, the one it
//! is swapped to, the one kept on probation), so that each sees what the others wrote.

use std::{sync::Mutex, time::Instant};

use super::{FunctionStore, Layer, StateError, check_key, store::Durable};
use crate::{context::StateAccess, sync::lock, telemetry::StateOp};

#[derive(Debug, Default)]
struct Pending {
    call: Layer,
    batch: Layer,
}

/// One instance's view of its function's state.
#[derive(Debug)]
pub struct StateSlot {
    store: FunctionStore,
    pending: Mutex<Pending>,
}

impl StateSlot {
    pub fn new(store: FunctionStore) -> Self {
        Self { store, pending: Mutex::new(Pending::default()) }
    }

    /// The function's store.
    pub fn store(&self) -> &FunctionStore {
        &self.store
    }

    /// Runs `op` on the writes in progress, counting it and timing it.
    fn measured<T>(
        &self,
        op: StateOp,
        run: impl FnOnce(&mut Pending) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let started = Instant::now();
        let result = run(&mut lock(&self.pending));
        self.store.ops().record(op, started.elapsed());
        result
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        self.measured(StateOp::Get, |pending| self.store.get(&[&pending.call, &pending.batch], key))
    }

    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        check_key(key)?;
        self.measured(StateOp::Put, |pending| {
            pending.call.put(key, value.to_vec());
            Ok(())
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), StateError> {
        check_key(key)?;
        self.measured(StateOp::Delete, |pending| {
            pending.call.delete(key);
            Ok(())
        })
    }

    /// Adds `amount` to counter `key`; returns its value as this call sees it now.
    pub fn incr(&self, key: &str, amount: i64) -> Result<i64, StateError> {
        check_key(key)?;
        self.measured(StateOp::Incr, |pending| {
            let current = self.store.get_counter(&[&pending.call, &pending.batch], key)?;
            let new = current.checked_add(amount).ok_or_else(|| StateError::Overflow { key: key.to_owned() })?;
            pending.call.add(key, amount);
            Ok(new)
        })
    }

    pub fn get_counter(&self, key: &str) -> Result<i64, StateError> {
        check_key(key)?;
        self.measured(StateOp::GetCounter, |pending| self.store.get_counter(&[&pending.call, &pending.batch], key))
    }

    /// Up to `limit` keys starting with `prefix`, after `start_after`, in order.
    pub fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<String>, StateError> {
        self.measured(StateOp::List, |pending| {
            self.store.list(&[&pending.call, &pending.batch], prefix, start_after, limit.min(super::MAX_PAGE))
        })
    }

    /// Deletes every key that starts with `prefix` (an empty prefix: every key).
    pub fn delete_prefix(&self, prefix: &str) -> Result<(), StateError> {
        self.measured(StateOp::DeletePrefix, |pending| {
            pending.call.delete_prefix(prefix);
            Ok(())
        })
    }

    /// Ends a call: its writes join the batch's when it succeeded, and are dropped otherwise.
    pub fn end_call(&self, succeeded: bool) {
        let mut pending = lock(&self.pending);
        let call = std::mem::take(&mut pending.call);
        if succeeded && !call.is_empty() {
            pending.batch.absorb(call);
        }
    }

    /// Stages the batch's writes, if it made any, and calls `durable` once they are on disk.
    /// Returns whether there were any.
    pub fn commit_batch(&self, durable: impl FnOnce() -> Durable) -> bool {
        let batch = std::mem::take(&mut lock(&self.pending).batch);
        if batch.is_empty() {
            return false;
        }
        self.store.stage(batch, durable());
        true
    }

    /// Takes the batch's writes, to stage them elsewhere.
    pub fn take_batch(&self) -> Layer {
        std::mem::take(&mut lock(&self.pending).batch)
    }

    /// Drops the batch's writes: the batch was taken back, and its inputs go to be redelivered.
    pub fn discard_batch(&self) {
        let mut pending = lock(&self.pending);
        pending.call = Layer::default();
        pending.batch = Layer::default();
    }
}

impl StateAccess for StateSlot {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Self::get(self, key)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        Self::put(self, key, value)
    }

    fn delete(&self, key: &str) -> Result<(), StateError> {
        Self::delete(self, key)
    }

    fn incr(&self, key: &str, amount: i64) -> Result<i64, StateError> {
        Self::incr(self, key, amount)
    }

    fn get_counter(&self, key: &str) -> Result<i64, StateError> {
        Self::get_counter(self, key)
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<String>, StateError> {
        Self::list(self, prefix, start_after, limit)
    }

    fn delete_prefix(&self, prefix: &str) -> Result<(), StateError> {
        Self::delete_prefix(self, prefix)
    }

    fn end_call(&self, succeeded: bool) {
        Self::end_call(self, succeeded);
    }

    fn checkpoint(&self) -> Option<Layer> {
        Some(lock(&self.pending).batch.clone())
    }

    fn rewind(&self, checkpoint: Layer) {
        let mut pending = lock(&self.pending);
        pending.call = Layer::default();
        pending.batch = checkpoint;
    }
}
