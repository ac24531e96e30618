//! The recorded clock: real UTC time on first execution, strictly increasing within an
//! execution, the recorded value on replay.
//!
//! Times are microseconds since the Unix epoch (UTC), the resolution of Python's `datetime`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Per-execution clock state: the last value handed out (recorded or replayed).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    last_us: Option<i64>,
}

impl Clock {
    pub fn new() -> Self {
        Clock { last_us: None }
    }

    /// A new reading: the real clock, or previous + 1 µs when the clock stalled or stepped back.
    pub fn next(&mut self) -> i64 {
        self.next_from(real_now_us())
    }

    /// As `next`, with the wall-clock reading given (so the rule can be tested).
    pub fn next_from(&mut self, wall_us: i64) -> i64 {
        let value = match self.last_us {
            Some(last) if wall_us <= last => last + 1,
            _ => wall_us,
        };
        self.last_us = Some(value);
        value
    }

    /// A value served from the journal on replay becomes the new floor.
    pub fn observe(&mut self, recorded_us: i64) {
        self.last_us = Some(match self.last_us {
            Some(last) => last.max(recorded_us),
            None => recorded_us,
        });
    }
}

/// The real UTC clock in microseconds since the epoch.
pub fn real_now_us() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_reading_is_the_real_clock() {
        let before = real_now_us();
        let v = Clock::new().next();
        let after = real_now_us();
        assert!(before <= v && v <= after);
    }

    #[test]
    fn stall_and_step_back_yield_previous_plus_one() {
        let mut c = Clock::new();
        assert_eq!(c.next_from(1_000), 1_000);
        assert_eq!(c.next_from(1_000), 1_001);
        assert_eq!(c.next_from(500), 1_002);
        assert_eq!(c.next_from(5_000), 5_000);
    }

    #[test]
    fn replayed_values_set_the_floor() {
        let mut c = Clock::new();
        c.observe(10_000);
        assert_eq!(c.next_from(9_000), 10_001);
    }

    proptest! {
        #[test]
        fn strictly_increasing_for_any_wall_clock(walls in proptest::collection::vec(any::<i32>(), 1..200)) {
            let mut c = Clock::new();
            let mut prev: Option<i64> = None;
            for w in walls {
                let v = c.next_from(i64::from(w));
                if let Some(p) = prev { prop_assert!(v > p); }
                prev = Some(v);
            }
        }
    }
}
