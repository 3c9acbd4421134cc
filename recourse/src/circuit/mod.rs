//! Circuit breaking: fail fast while a dependency is down.
//!
//! INTERFACE FILE — implementation in progress (see the helper brief).

use std::fmt;
use std::sync::Arc;

use crate::policy::{CircuitPolicy, PolicyKey};

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls flow.
    Closed,
    /// Calls are refused until the cooldown has passed.
    Open,
    /// One probe call is let through to test the dependency.
    HalfOpen,
}

impl State {
    /// `closed`, `open` or `half-open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Reason codes of refused calls.
pub mod reason {
    /// The circuit is open.
    pub const CIRCUIT_OPEN: &str = "circuit_open";
    /// The circuit is half-open and its probe is already out.
    pub const HALF_OPEN_PROBE_LIMIT: &str = "circuit_half_open_probe_limit";
}

/// A change of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
}

/// A breaker's answer to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the call may run.
    pub allowed: bool,
    /// The state the call was admitted (or refused) in.
    pub state: State,
    /// Why it was refused (empty when allowed).
    pub reason: &'static str,
    /// A state change this admission caused (open → half-open after the
    /// cooldown).
    pub transition: Option<Transition>,
}

/// A circuit breaker. One admission per call; one verdict per admitted
/// call (success, failure, or a released probe).
pub trait Breaker: Send + Sync + 'static {
    /// Admits or refuses a call.
    fn allow(&self) -> Decision;
    /// The admitted call succeeded.
    fn record_success(&self) -> Option<Transition>;
    /// The admitted call failed (non-retryable, or out of attempts).
    fn record_failure(&self) -> Option<Transition>;
    /// The admitted call ended without a verdict (aborted, cancelled,
    /// denied by a budget): a half-open probe slot is handed back so the
    /// next call can probe (DESIGN §6.4). No effect in other states.
    fn release_probe(&self);
    /// The current state.
    fn state(&self) -> State;
}

/// Per-key breakers of one executor.
#[derive(Default)]
pub struct Registry {
    _private: (),
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The breaker for `key`, created from `policy` on first use (the first
    /// configuration seen for a key wins); `None` when the policy's circuit
    /// is disabled.
    pub fn get_or_create(&self, key: &PolicyKey, policy: &CircuitPolicy) -> Option<Arc<dyn Breaker>> {
        let _ = (key, policy);
        None
    }

    /// The breaker for `key`, if one exists.
    pub fn get(&self, key: &PolicyKey) -> Option<Arc<dyn Breaker>> {
        let _ = key;
        None
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}
