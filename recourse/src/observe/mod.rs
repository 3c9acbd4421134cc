//! Observability: observers, per-call timelines, timeline capture and the
//! attempt in progress.

mod observer;
mod scope;
mod timeline;

pub use observer::{Enter, Multi, Noop, Observer};
pub use scope::{Attempt, attempt, capture};
pub(crate) use scope::{AttemptScope, Saved, Scopes, capture_requested, enter_attempt, publish};
pub use timeline::{AttemptRecord, FinalError, Timeline};
