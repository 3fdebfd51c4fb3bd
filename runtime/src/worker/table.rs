//! The worker's functions by fully qualified name. The coordinator adds and removes functions
//! while it runs; status, triggers and the admin API read the table from their own threads.

use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError, RwLock},
};

use super::FunctionShared;

/// The functions a worker knows, by fully qualified name.
#[derive(Debug, Default)]
pub(super) struct FunctionTable(RwLock<BTreeMap<String, Arc<FunctionShared>>>);

impl FunctionTable {
    /// Function `fqfn`, if the worker has it.
    pub fn get(&self, fqfn: &str) -> Option<Arc<FunctionShared>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).get(fqfn).cloned()
    }

    /// Every function, in name order.
    pub fn all(&self) -> Vec<Arc<FunctionShared>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Adds `function`, replacing one of the same name.
    pub fn insert(&self, function: Arc<FunctionShared>) {
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        table.insert(function.fqfn.clone(), function);
    }

    /// Removes function `fqfn`.
    pub fn remove(&self, fqfn: &str) -> Option<Arc<FunctionShared>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner).remove(fqfn)
    }
}
