//! The thread-safe name → implementation map behind every registry
//! (classifiers, budgets, hedge triggers).
//!
//! Writes are rare (start-up, reloads) and bump a generation counter that
//! call sites compare to know when their cached lookups are stale; reads
//! take a read lock, and only during resolution, never per attempt.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

pub(crate) struct Named<T: ?Sized> {
    entries: RwLock<HashMap<String, Arc<T>>>,
    generation: AtomicU64,
}

impl<T: ?Sized> Default for Named<T> {
    fn default() -> Self {
        Self { entries: RwLock::new(HashMap::new()), generation: AtomicU64::new(0) }
    }
}

impl<T: ?Sized> Named<T> {
    /// Inserts or replaces `name` (already normalized by the caller).
    pub(crate) fn insert(&self, name: &str, value: Arc<T>) {
        self.entries.write().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), value);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The entry for `name`, inserting `make()` first when there is none.
    pub(crate) fn get_or_insert_with(&self, name: &str, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        if let Some(found) = self.get(name) {
            return found;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let value = Arc::clone(entries.entry(name.to_owned()).or_insert_with(make));
        drop(entries);
        self.generation.fetch_add(1, Ordering::Release);
        value
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<T>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.entries.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        names.sort();
        names
    }
}
