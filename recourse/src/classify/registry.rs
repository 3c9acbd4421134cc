//! The classifier registry.

use std::fmt;
use std::sync::Arc;

use super::{AlwaysRetry, Auto, Classifier, NeverRetry};

/// A thread-safe map from a low-cardinality name to a [`Classifier`].
///
/// Names are trimmed; an empty name is ignored; registering an existing
/// name replaces it. Lookups clone an `Arc`; the executor only looks up
/// classifiers that a policy names.
#[derive(Default)]
pub struct Registry {
    entries: crate::named::Named<dyn Classifier>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding the built-ins `always`, `never` and `auto`.
    pub fn with_builtins() -> Self {
        let registry = Self::new();
        registry.register_builtins();
        registry
    }

    /// Registers `always`, `never` and `auto` (and `http` with the `http`
    /// feature, `grpc` with the `tonic` feature).
    pub fn register_builtins(&self) {
        self.register("always", AlwaysRetry);
        self.register("never", NeverRetry);
        self.register("auto", Auto);
        #[cfg(feature = "http")]
        self.register("http", crate::http::Http::default());
        #[cfg(feature = "tonic")]
        self.register("grpc", crate::tonic::GrpcClassifier);
    }

    /// Registers `classifier` under `name` (trimmed; empty names are ignored).
    pub fn register(&self, name: &str, classifier: impl Classifier) {
        self.register_arc(name, Arc::new(classifier));
    }

    /// Registers a shared classifier under `name`.
    pub fn register_arc(&self, name: &str, classifier: Arc<dyn Classifier>) {
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        self.entries.insert(name, classifier);
    }

    /// A counter that changes whenever a classifier is registered.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.entries.generation()
    }

    /// The classifier registered under `name` (trimmed).
    pub fn get(&self, name: &str) -> Option<Arc<dyn Classifier>> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        self.entries.get(name)
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
