//! Error types whose own outcome is looked for inside wrapping errors.
//!
//! Stable Rust cannot ask a `dyn Error` for a `Classify` impl it does not
//! name, so an executor is told which types to look for
//! ([`ExecutorBuilder::classify_wrapped`](crate::ExecutorBuilder::classify_wrapped)).

use std::any::TypeId;
use std::error::Error as StdError;

use std::sync::Arc;

use super::{Classifier, Classify, ErrorView, Outcome};

type Finder = fn(&(dyn StdError + 'static)) -> Option<Outcome>;

/// The registered types, in registration order; checked only when a
/// failed attempt's error has no outcome of its own.
#[derive(Default, Clone)]
pub(crate) struct Inside {
    finders: Vec<(TypeId, Finder)>,
}

impl Inside {
    pub(crate) fn is_empty(&self) -> bool {
        self.finders.is_empty()
    }

    pub(crate) fn add<E: Classify + StdError + 'static>(&mut self) {
        let id = TypeId::of::<E>();
        if !self.finders.iter().any(|(known, _)| *known == id) {
            self.finders.push((id, |link| link.downcast_ref::<E>().and_then(Classify::classify)));
        }
    }

    /// The outcome of the outermost registered error in `error`'s chain
    /// that has one.
    fn outcome(&self, error: &dyn ErrorView) -> Option<Outcome> {
        error.chain().find_map(|link| self.finders.iter().find_map(|(_, find)| find(link)))
    }

    /// The executor's default classifier, looking inside first. Built only
    /// when a type is registered, so the executor's hot state keeps its
    /// size and layout (one more field there slowed S2 in BENCHMARKS.md).
    pub(crate) fn before(self, then: Arc<dyn Classifier>) -> Arc<dyn Classifier> {
        Arc::new(LookInside { inside: self, then })
    }
}

struct LookInside {
    inside: Inside,
    then: Arc<dyn Classifier>,
}

impl Classifier for LookInside {
    fn classify(&self, error: &dyn ErrorView) -> Outcome {
        self.inside.outcome(error).unwrap_or_else(|| self.then.classify(error))
    }
}

impl std::fmt::Debug for Inside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inside").field("types", &self.finders.len()).finish()
    }
}
