//! A lock-free count of events over a sliding time window, shared by the
//! budgets that judge a recent past (percentage, adaptive throttling).

use std::time::Duration;

use crate::sync::{AtomicU64, Instant, Ordering};

/// Slots per window: the window slides in steps of a tenth, as Finagle's
/// and tower's do.
const SLOTS: u64 = 10;
const SLOTS_LEN: usize = 10;

/// Counts over the last `window`, in `SLOTS` slots. Each slot packs the
/// step it counts for (high half) and its count (low half), so a slot from
/// an earlier turn of the ring is recognized and restarted by the first
/// add of the new step, with no lock and no sweeper.
pub(crate) struct Window {
    origin: Instant,
    step_nanos: u64,
    slots: [AtomicU64; SLOTS_LEN],
}

impl Window {
    pub(crate) fn new(window: Duration) -> Self {
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(SLOTS);
        Self { origin: Instant::now(), step_nanos: nanos / SLOTS, slots: std::array::from_fn(|_| AtomicU64::new(0)) }
    }

    /// The current step (wrapping: steps are compared by distance).
    #[inline]
    pub(crate) fn step(&self) -> u32 {
        let nanos = u64::try_from(Instant::now().saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX);
        // Truncation wraps the step counter; only distances below `SLOTS`
        // are ever compared.
        #[allow(clippy::cast_possible_truncation, reason = "the step counter wraps on purpose")]
        let step = (nanos / self.step_nanos) as u32;
        step
    }

    fn slot(&self, step: u32) -> &AtomicU64 {
        // The remainder is below `SLOTS`, so it fits.
        &self.slots[usize::try_from(u64::from(step) % SLOTS).unwrap_or(0)]
    }

    /// Adds `n` to the count of `step` (the current one).
    #[inline]
    pub(crate) fn add(&self, step: u32, n: u32) {
        let _ = self.slot(step).fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
            let (at, count) = unpack(word);
            Some(if at == step { pack(step, count.saturating_add(n)) } else { pack(step, n) })
        });
    }

    /// Takes `n` back from the count of `step`, if that slot still counts
    /// for it (an add that turned out too much).
    pub(crate) fn undo(&self, step: u32, n: u32) {
        let _ = self.slot(step).fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
            let (at, count) = unpack(word);
            (at == step).then(|| pack(step, count.saturating_sub(n)))
        });
    }

    /// The count over the window that ends with `step`.
    pub(crate) fn sum(&self, step: u32) -> u64 {
        self.slots
            .iter()
            .map(|slot| {
                let (at, count) = unpack(slot.load(Ordering::Acquire));
                if u64::from(step.wrapping_sub(at)) < SLOTS { u64::from(count) } else { 0 }
            })
            .sum()
    }
}

const fn pack(step: u32, count: u32) -> u64 {
    ((step as u64) << 32) | count as u64
}

#[allow(clippy::cast_possible_truncation, reason = "the halves of a packed word")]
const fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window").field("sum", &self.sum(self.step())).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_slide_out_after_the_window() {
        let window = Window::new(Duration::from_secs(10));
        window.add(window.step(), 5);
        tokio::time::advance(Duration::from_secs(4)).await;
        window.add(window.step(), 3);
        assert_eq!(window.sum(window.step()), 8);
        tokio::time::advance(Duration::from_secs(6)).await;
        // The first 5 are now 10 s old: out.
        assert_eq!(window.sum(window.step()), 3);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(window.sum(window.step()), 0);
        // A slot from an earlier turn of the ring restarts.
        window.add(window.step(), 1);
        assert_eq!(window.sum(window.step()), 1);
        window.undo(window.step(), 1);
        assert_eq!(window.sum(window.step()), 0);
    }
}
