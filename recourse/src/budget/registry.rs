//! The budget registry.

use std::fmt;
use std::sync::Arc;

use super::{Budget, Unlimited};

/// A thread-safe map from a name to a [`Budget`].
///
/// Names are trimmed; registering an existing name replaces it. Call sites
/// cache their lookups and re-resolve when [`generation`](Self::generation)
/// changes.
#[derive(Default)]
pub struct Registry {
    entries: crate::named::Named<dyn Budget>,
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
        self.entries.insert(name, budget);
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
        Some(self.entries.get_or_insert_with(name, make))
    }

    /// The budget registered under `name` (trimmed).
    pub fn get(&self, name: &str) -> Option<Arc<dyn Budget>> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        self.entries.get(name)
    }

    /// A counter that changes whenever a budget is registered.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.entries.generation()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.names()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("names", &self.names()).finish()
    }
}
