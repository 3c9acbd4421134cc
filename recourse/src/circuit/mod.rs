//! Circuit breaking: fail fast while a dependency is down.
//!
//! A breaker sits in front of every call for a key. While it is
//! [closed](State::Closed) calls flow and their verdicts are counted; when
//! the failures cross its threshold it [opens](State::Open) and refuses every
//! call with [`reason::CIRCUIT_OPEN`] for a cooldown; after the cooldown the
//! next call is admitted as the single [half-open](State::HalfOpen) probe
//! (others are refused with [`reason::HALF_OPEN_PROBE_LIMIT`]). The probe's
//! success closes the circuit, its failure opens it for another cooldown,
//! and a probe that ends without a verdict hands its slot back
//! ([`Breaker::release_probe`], DESIGN §6.4), so a breaker never wedges
//! half-open.
//!
//! Two breakers ship, chosen per key by the policy's
//! [`CircuitPolicy::failure_ratio`]:
//!
//! * [`ConsecutiveFailures`] (ratio 0, the Go original's breaker): opens
//!   after `threshold` failed calls in a row.
//! * [`FailureRate`] (ratio above 0, as in resilience4j and Polly): opens when
//!   at least that share of the calls in a sliding time window failed, once
//!   the window holds `min_throughput` calls.
//!
//! Both take no lock: the closed path of [`Breaker::allow`] is one atomic
//! load, and every state change is one compare-and-swap on a single word, so
//! under contention exactly one caller wins each transition and each probe.
//! Time is tokio's ([`tokio::time::Instant`]), so `tokio::time::pause()` and
//! `advance()` drive the cooldown and the window in tests.
//!
//! The executor keeps one breaker per key in a [`Registry`]: the first
//! configuration seen for a key wins, and [`Registry::insert`] puts a
//! breaker of your own (a manual switch, say) in front of a key.
//!
//! ```
//! use recourse::circuit::{Breaker, ConsecutiveFailures, State, reason};
//! use std::time::Duration;
//!
//! let breaker = ConsecutiveFailures::new(2, Duration::from_secs(30));
//! assert!(breaker.allow().allowed);
//! breaker.record_failure();
//! breaker.record_failure(); // the second failure in a row opens it
//! assert_eq!(breaker.state(), State::Open);
//!
//! let refused = breaker.allow();
//! assert!(!refused.allowed);
//! assert_eq!(refused.reason, reason::CIRCUIT_OPEN);
//! ```
//!
//! A breaker of your own implements [`Breaker`]:
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use recourse::circuit::{Breaker, Decision, Registry, State, Transition, reason};
//!
//! /// An operator's kill switch: open while `tripped`.
//! #[derive(Default)]
//! struct Switch {
//!     tripped: AtomicBool,
//! }
//!
//! impl Breaker for Switch {
//!     fn allow(&self) -> Decision {
//!         match self.state() {
//!             State::Open => Decision::deny(State::Open, reason::CIRCUIT_OPEN),
//!             state => Decision::allow(state),
//!         }
//!     }
//!     fn record_success(&self) -> Option<Transition> { None }
//!     fn record_failure(&self) -> Option<Transition> { None }
//!     fn release_probe(&self) {}
//!     fn state(&self) -> State {
//!         if self.tripped.load(Ordering::Relaxed) { State::Open } else { State::Closed }
//!     }
//! }
//!
//! let switch = Arc::new(Switch::default());
//! let registry = Registry::new();
//! registry.insert("payments.Charge", switch.clone());
//! switch.tripped.store(true, Ordering::Relaxed);
//! let breaker = registry.get(&"payments.Charge".into()).unwrap();
//! assert!(!breaker.allow().allowed);
//! ```

mod consecutive;
mod failure_rate;
mod machine;
mod registry;

use std::fmt;
use std::sync::Arc;

use crate::policy::CircuitPolicy;

pub use consecutive::ConsecutiveFailures;
pub use failure_rate::{FailureRate, FailureRateConfig, WindowCounts};
pub use registry::Registry;

/// A breaker's state.
///
/// ```
/// use recourse::circuit::{Breaker, ConsecutiveFailures, State};
/// use std::time::Duration;
///
/// let breaker = ConsecutiveFailures::new(1, Duration::from_secs(1));
/// assert_eq!(breaker.state(), State::Closed);
/// breaker.record_failure();
/// assert_eq!(breaker.state(), State::Open);
/// ```
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
    ///
    /// ```
    /// use recourse::circuit::State;
    ///
    /// assert_eq!(State::HalfOpen.as_str(), "half-open");
    /// assert_eq!(State::Open.to_string(), "open");
    /// ```
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

/// Reason codes of refused calls (part of the telemetry contract).
///
/// ```
/// use recourse::circuit::{Breaker, ConsecutiveFailures, reason};
/// use std::time::Duration;
///
/// let breaker = ConsecutiveFailures::new(1, Duration::from_secs(30));
/// breaker.record_failure();
/// assert_eq!(breaker.allow().reason, reason::CIRCUIT_OPEN);
/// ```
pub mod reason {
    /// The circuit is open.
    pub const CIRCUIT_OPEN: &str = "circuit_open";
    /// The circuit is half-open and its probe is already out.
    pub const HALF_OPEN_PROBE_LIMIT: &str = "circuit_half_open_probe_limit";
}

/// A change of state.
///
/// Breakers report each change exactly once: the call that caused it gets it
/// (from [`Breaker::allow`] in [`Decision::transition`], or as the return
/// value of [`Breaker::record_success`] / [`Breaker::record_failure`]), so an
/// observer that forwards them sees every change once.
///
/// ```
/// use recourse::circuit::{Breaker, ConsecutiveFailures, State, Transition};
/// use std::time::Duration;
///
/// let breaker = ConsecutiveFailures::new(1, Duration::from_secs(30));
/// assert_eq!(breaker.record_failure(), Some(Transition::new(State::Closed, State::Open)));
/// assert_eq!(breaker.record_failure(), None, "already open");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
}

impl Transition {
    /// A change from `from` to `to`.
    ///
    /// ```
    /// use recourse::circuit::{State, Transition};
    ///
    /// let t = Transition::new(State::HalfOpen, State::Closed);
    /// assert_eq!((t.from, t.to), (State::HalfOpen, State::Closed));
    /// ```
    pub const fn new(from: State, to: State) -> Self {
        Self { from, to }
    }
}

impl fmt::Display for Transition {
    /// `closed → open`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.from, self.to)
    }
}

/// A breaker's answer to one call.
///
/// ```
/// use recourse::circuit::{Decision, State, reason};
///
/// let yes = Decision::allow(State::Closed);
/// assert!(yes.allowed && yes.reason.is_empty() && yes.transition.is_none());
///
/// let no = Decision::deny(State::Open, reason::CIRCUIT_OPEN);
/// assert!(!no.allowed);
/// assert_eq!(no.reason, "circuit_open");
/// ```
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

impl Decision {
    /// The call may run; it was admitted in `state` and changed nothing.
    ///
    /// ```
    /// use recourse::circuit::{Decision, State};
    ///
    /// let d = Decision::allow(State::HalfOpen);
    /// assert!(d.allowed);
    /// assert_eq!(d.state, State::HalfOpen);
    /// ```
    pub const fn allow(state: State) -> Self {
        Self { allowed: true, state, reason: "", transition: None }
    }

    /// The call is refused in `state` for `reason` (one of [`reason`]'s
    /// codes, or a breaker's own).
    ///
    /// ```
    /// use recourse::circuit::{Decision, State, reason};
    ///
    /// let d = Decision::deny(State::HalfOpen, reason::HALF_OPEN_PROBE_LIMIT);
    /// assert!(!d.allowed);
    /// assert_eq!(d.reason, "circuit_half_open_probe_limit");
    /// ```
    pub const fn deny(state: State, reason: &'static str) -> Self {
        Self { allowed: false, state, reason, transition: None }
    }

    /// The same decision, reporting that it caused `transition`.
    ///
    /// ```
    /// use recourse::circuit::{Decision, State, Transition};
    ///
    /// let probe = Decision::allow(State::HalfOpen).with_transition(Transition::new(State::Open, State::HalfOpen));
    /// assert_eq!(probe.transition.unwrap().to, State::HalfOpen);
    /// ```
    pub const fn with_transition(mut self, transition: Transition) -> Self {
        self.transition = Some(transition);
        self
    }
}

/// A circuit breaker. One admission per call; one verdict per admitted
/// call (success, failure, or a released probe).
///
/// # Contract
///
/// * [`allow`](Self::allow) runs once per call, before its first attempt;
///   a refused call runs nothing and records nothing.
/// * An admitted call reports exactly one verdict: [`record_success`] when
///   it succeeds, [`record_failure`] when it ends non-retryable or out of
///   attempts, and [`release_probe`] when it ends without a verdict
///   (aborted, cancelled, denied by a budget). Callers should release only
///   calls whose [`Decision::state`] was [`State::HalfOpen`]: a breaker
///   cannot tell one call's release from another's, so a stray release while
///   a later probe is out lets one more probe through.
/// * Implementations are called concurrently from many tasks and must not
///   block: the executor consults the breaker on every call.
///
/// The built-in breakers ([`ConsecutiveFailures`], [`FailureRate`]) ignore
/// verdicts that arrive while they are open (they come from calls admitted
/// before the circuit opened), and treat any verdict that arrives while they
/// are half-open as the probe's.
///
/// [`record_success`]: Self::record_success
/// [`record_failure`]: Self::record_failure
/// [`release_probe`]: Self::release_probe
///
/// ```
/// use recourse::circuit::{Breaker, ConsecutiveFailures, State};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let breaker: Arc<dyn Breaker> = Arc::new(ConsecutiveFailures::new(3, Duration::from_secs(5)));
/// let decision = breaker.allow();
/// if decision.allowed {
///     // ... run the call ...
///     let ok = true;
///     let transition = if ok { breaker.record_success() } else { breaker.record_failure() };
///     assert_eq!(transition, None);
/// }
/// assert_eq!(breaker.state(), State::Closed);
/// ```
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

/// The breaker a circuit policy asks for, new; `None` when the policy's
/// circuit is disabled.
///
/// A [`failure_ratio`](CircuitPolicy::failure_ratio) above zero selects a
/// [`FailureRate`] breaker (ratio, window, minimum throughput, cooldown),
/// anything else (zero, negative, NaN) the [`ConsecutiveFailures`] breaker
/// (threshold, cooldown). The constructors fill in zero values as
/// normalization does; [`Registry::get_or_create`] uses this function.
///
/// ```
/// use recourse::circuit::{Breaker, State, breaker_for};
/// use recourse::policy::Policy;
/// use std::time::Duration;
///
/// let off = Policy::builder("svc.Op").build();
/// assert!(breaker_for(&off.circuit).is_none());
///
/// let on = Policy::builder("svc.Op").circuit(1, Duration::from_secs(5)).build();
/// let breaker = breaker_for(&on.circuit).unwrap();
/// breaker.record_failure();
/// assert_eq!(breaker.state(), State::Open);
/// ```
pub fn breaker_for(policy: &CircuitPolicy) -> Option<Arc<dyn Breaker>> {
    if !policy.enabled {
        return None;
    }
    if policy.failure_ratio > 0.0 {
        Some(Arc::new(FailureRate::new(FailureRateConfig {
            failure_ratio: policy.failure_ratio,
            window: policy.window,
            min_throughput: policy.min_throughput,
            cooldown: policy.cooldown,
        })))
    } else {
        Some(Arc::new(ConsecutiveFailures::new(policy.threshold, policy.cooldown)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_displays() {
        assert_eq!(State::Closed.to_string(), "closed");
        assert_eq!(format!("{:>9}", State::Open), "     open");
        assert_eq!(Transition::new(State::Closed, State::Open).to_string(), "closed → open");
        let d = Decision::deny(State::HalfOpen, reason::HALF_OPEN_PROBE_LIMIT);
        assert_eq!(d.reason, "circuit_half_open_probe_limit");
        assert!(!d.allowed);
    }
}
