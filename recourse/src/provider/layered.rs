//! Providers stacked in order of precedence, with the catalog as guard.

use std::fmt;
use std::sync::Arc;

use super::{PolicyProvider, ProviderError};
use crate::executor::Catalog;
use crate::policy::{Policy, PolicyKey, PolicySource};

/// Several providers, asked in order: the first answer wins.
///
/// Typical stacks are remote over file over catalog: an operator's
/// control-plane override, then the deployed file, then what the code was
/// compiled with. A layer that fails is skipped, and the answer a lower
/// layer gives carries the failure as [`Metadata::error`]
/// (`policy_error` on timelines); only when no layer answers is the
/// failure returned, for the executor's missing-policy mode to decide.
///
/// With a [`catalog`](Self::catalog), the catalog's policies are the last
/// layer and its keys are a guard: a file or remote policy (source `file`,
/// `remote` or `lkg`) for a key the catalog does not declare is rejected,
/// so configuration cannot create call-site behaviour the code never
/// declared. The key then gets the next layer's answer (or the default
/// policy) with the rejection as its `policy_error`.
///
/// [`Metadata::error`]: crate::policy::Metadata::error
///
/// ```
/// use recourse::policy::{Policy, PolicySource};
/// use recourse::provider::{LayeredProvider, PolicyProvider, StaticProvider};
///
/// let overrides = StaticProvider::new().with(Policy::builder("users.Get").max_attempts(5).build());
/// let base = StaticProvider::new()
///     .with(Policy::builder("users.Get").max_attempts(2).build())
///     .with(Policy::builder("users.Put").max_attempts(1).build());
/// let layered = LayeredProvider::new().layer(overrides).layer(base);
/// assert_eq!(layered.policy(&"users.Get".into()).unwrap().unwrap().retry.max_attempts, 5);
/// assert_eq!(layered.policy(&"users.Put".into()).unwrap().unwrap().retry.max_attempts, 1);
/// assert!(layered.policy(&"users.Delete".into()).unwrap().is_none());
/// ```
#[derive(Clone, Default)]
pub struct LayeredProvider {
    layers: Vec<Arc<dyn PolicyProvider>>,
    catalog: Option<&'static Catalog>,
}

impl LayeredProvider {
    /// No layers: every key is "not configured here".
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a layer below the ones already added. A provider the caller
    /// keeps too is passed as an `Arc` (`.layer(Arc::clone(&remote))`).
    pub fn layer(mut self, provider: impl PolicyProvider) -> Self {
        self.layers.push(Arc::new(provider));
        self
    }

    /// Adds a provider already shared as `Arc<dyn PolicyProvider>` without
    /// wrapping it again (one pointer less on every generation read).
    pub(crate) fn layer_arc(mut self, provider: Arc<dyn PolicyProvider>) -> Self {
        self.layers.push(provider);
        self
    }

    /// The compiled catalog (`recourse::catalog!()`): its policies answer
    /// below every layer, and file or remote policies for keys it does not
    /// declare are rejected.
    pub fn catalog(mut self, catalog: &'static Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Why `policy` may not be used for `key`, if the guard rejects it.
    fn rejects(&self, key: &PolicyKey, policy: &Policy) -> Option<String> {
        let catalog = self.catalog?;
        let configured =
            matches!(policy.meta.source, PolicySource::File | PolicySource::Remote | PolicySource::LastKnownGood);
        (configured && !catalog.declares(key)).then(|| {
            format!(
                "a {} policy for \"{key}\" was rejected: {} declares no such key, so configuration cannot create it",
                policy.meta.source,
                catalog.path()
            )
        })
    }
}

impl PolicyProvider for LayeredProvider {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        let mut problem: Option<(String, Option<ProviderError>)> = None;
        let catalog = self.catalog.and_then(|catalog| catalog.policy(key)).map(|p| Ok(Some(Arc::new(p))));
        let answers = self.layers.iter().map(|layer| layer.policy(key)).chain(catalog);
        for answer in answers {
            match answer {
                Ok(Some(policy)) => match self.rejects(key, &policy) {
                    Some(why) => {
                        problem.get_or_insert((why, None));
                    }
                    None => return Ok(Some(with_problem(policy, problem.map(|p| p.0)))),
                },
                Ok(None) => {}
                Err(error) => {
                    problem.get_or_insert_with(|| (crate::error::sources_text(&error), Some(error)));
                }
            }
        }
        match problem {
            None => Ok(None),
            Some((_, Some(error))) => Err(error),
            Some((why, None)) => {
                let mut policy = Policy::default_for(key.clone());
                policy.meta.error = Some(why.into());
                Ok(Some(Arc::new(policy)))
            }
        }
    }

    fn generation(&self) -> u64 {
        self.layers.iter().fold(0u64, |sum, layer| sum.wrapping_add(layer.generation()))
    }
}

/// `policy`, carrying `problem` as its `policy_error` unless it has one.
fn with_problem(policy: Arc<Policy>, problem: Option<String>) -> Arc<Policy> {
    match problem {
        Some(problem) if policy.meta.error.is_none() => {
            let mut policy = Policy::clone(&policy);
            policy.meta.error = Some(problem.into());
            Arc::new(policy)
        }
        _ => policy,
    }
}

impl fmt::Debug for LayeredProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayeredProvider")
            .field("layers", &self.layers.len())
            .field("catalog", &self.catalog.map(Catalog::path))
            .finish()
    }
}
