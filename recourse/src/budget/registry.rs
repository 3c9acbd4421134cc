//! The budget registry.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::{Budget, Unlimited};

/// A thread-safe map from a name to a [`Budget`].
///
/// Names are trimmed; registering an existing name replaces it. Call sites
/// cache their lookups and re-resolve when [`generation`](Self::generation)
/// changes.
#[derive(Default)]
pub struct Registry {
    entries: RwLock<HashMap<String, Arc<dyn Budget>>>,
    generation: AtomicU64,
}

/// Why a budget could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name is empty after trimming.
    #[error("budget name cannot be empty")]
    EmptyName,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding `unlimited`.
    pub fn with_builtins() -> Self {
        let registry = Self::new();
        registry.register("unlimited", Unlimited);
        registry
    }

    /// Registers `budget` under `name`, replacing any earlier one. An empty
    /// name is ignored (use [`try_register`](Self::try_register) to be told).
    pub fn register(&self, name: &str, budget: impl Budget) {
        let _ = self.try_register(name, Arc::new(budget));
    }

    /// Registers a shared budget under `name`.
    pub fn try_register(&self, name: &str, budget: Arc<dyn Budget>) -> Result<(), RegisterError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(RegisterError::EmptyName);
        }
        self.entries.write().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), budget);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Registers `make()` under `name` unless a budget is already there;
    /// returns the registered one either way (catalog budgets are created
    /// this way on first use).
    pub fn get_or_register(&self, name: &str, make: impl FnOnce() -> Arc<dyn Budget>) -> Option<Arc<dyn Budget>> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        if let Some(found) = self.get(name) {
            return Some(found);
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let budget = Arc::clone(entries.entry(name.to_owned()).or_insert_with(make));
        drop(entries);
        self.generation.fetch_add(1, Ordering::Release);
        Some(budget)
    }

    /// The budget registered under `name` (trimmed).
    pub fn get(&self, name: &str) -> Option<Arc<dyn Budget>> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        self.entries.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// A counter that changes whenever a budget is registered.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.entries.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        names.sort();
        names
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("names", &self.names()).finish()
    }
}
