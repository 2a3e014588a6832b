//! The timing that keeps one owner per agent across a network cut (the pure decisions of
//! fencing, unit-tested here).
//!
//! A replica cut off from NATS cannot know whether its peers have declared it dead. It
//! therefore stops serving every agent ("fences itself") once it has been disconnected for
//! [`fence_after`], and its peers declare it dead only after [`GONE_AFTER`] misses, each at
//! least [`miss_spacing`] after the one before: the earliest adoption comes well after the
//! fence. Back on NATS, it claims back, one compare-and-set per agent, the agents still
//! recorded as its own (a peer adopting them at the same time gets the others).

use std::time::{Duration, Instant};

/// Checks in a row that must find a peer absent before it is declared gone.
pub(crate) const GONE_AFTER: u32 = 3;

/// How long a replica may be disconnected before it stops serving its agents: half a check
/// period. (The earliest adoption is two spacings, nearly two periods, after the first miss.)
pub(crate) fn fence_after(check_every: Duration) -> Duration {
    check_every / 2
}

/// How often a replica looks at its own connection: often enough that it is fenced within
/// three quarters of a check period of a cut.
pub(crate) fn fence_check_every(check_every: Duration) -> Duration {
    (check_every / 4).max(Duration::from_millis(10))
}

/// The least time between two misses counted against one peer, so that a burst of
/// unanswered forwards does not add up to a verdict: nine tenths of a check period (ticks
/// come a little early or late).
pub(crate) fn miss_spacing(check_every: Duration) -> Duration {
    check_every * 9 / 10
}

/// What is known about a peer found absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Suspect {
    pub misses: u32,
    pub last_miss: Instant,
}

impl Suspect {
    /// Count a miss at `now` (when far enough from the last one); whether the peer is now
    /// judged gone.
    pub fn missed(suspect: &mut Option<Suspect>, now: Instant, check_every: Duration) -> bool {
        match suspect {
            None => {
                *suspect = Some(Suspect {
                    misses: 1,
                    last_miss: now,
                });
            }
            Some(s) if now.saturating_duration_since(s.last_miss) >= miss_spacing(check_every) => {
                s.misses += 1;
                s.last_miss = now;
            }
            Some(_) => {}
        }
        suspect.is_some_and(|s| s.misses >= GONE_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK: Duration = Duration::from_millis(1000);

    #[test]
    fn a_burst_of_misses_is_one_miss() {
        let t0 = Instant::now();
        let mut s = None;
        for i in 0..50 {
            assert!(!Suspect::missed(
                &mut s,
                t0 + Duration::from_millis(i),
                CHECK
            ));
        }
        assert_eq!(s.unwrap().misses, 1);
        assert!(!Suspect::missed(
            &mut s,
            t0 + Duration::from_millis(900),
            CHECK
        ));
        assert!(Suspect::missed(
            &mut s,
            t0 + Duration::from_millis(1800),
            CHECK
        ));
    }

    #[test]
    fn the_fence_comes_before_the_earliest_adoption() {
        // Cut at 0; a peer's first miss can come at once. Adoption needs GONE_AFTER misses
        // spaced by `miss_spacing`; the cut-off replica notices within one fence check.
        let earliest_adoption = miss_spacing(CHECK) * (GONE_AFTER - 1);
        let latest_fence = fence_after(CHECK) + fence_check_every(CHECK);
        assert!(
            latest_fence < earliest_adoption,
            "{latest_fence:?} vs {earliest_adoption:?}"
        );
        assert!(earliest_adoption - latest_fence >= CHECK / 2);
    }
}
