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
    pub fn tick(&mut self) -> i64 {
        self.tick_from(real_now_us())
    }

    /// As `tick`, with the wall-clock reading given (so the rule can be tested).
    pub fn tick_from(&mut self, wall_us: i64) -> i64 {
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

/// A UTC instant split into calendar fields (proleptic Gregorian), for building a datetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub microsecond: u32,
}

impl Civil {
    /// Split µs since the epoch (H. Hinnant's days-to-civil algorithm).
    pub fn from_us(us: i64) -> Civil {
        let secs = us.div_euclid(1_000_000);
        let microsecond = us.rem_euclid(1_000_000) as u32;
        let sod = secs.rem_euclid(86_400) as u32;
        let z = secs.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            microsecond,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_reading_is_the_real_clock() {
        let before = real_now_us();
        let v = Clock::new().tick();
        let after = real_now_us();
        assert!(before <= v && v <= after);
    }

    #[test]
    fn stall_and_step_back_yield_previous_plus_one() {
        let mut c = Clock::new();
        assert_eq!(c.tick_from(1_000), 1_000);
        assert_eq!(c.tick_from(1_000), 1_001);
        assert_eq!(c.tick_from(500), 1_002);
        assert_eq!(c.tick_from(5_000), 5_000);
    }

    #[test]
    fn replayed_values_set_the_floor() {
        let mut c = Clock::new();
        c.observe(10_000);
        assert_eq!(c.tick_from(9_000), 10_001);
    }

    #[test]
    fn civil_fields_of_known_instants() {
        assert_eq!(
            Civil::from_us(0),
            Civil {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                microsecond: 0
            }
        );
        // 2024-02-29T23:59:59.999999Z (a leap day)
        assert_eq!(
            Civil::from_us(1_709_251_199_999_999),
            Civil {
                year: 2024,
                month: 2,
                day: 29,
                hour: 23,
                minute: 59,
                second: 59,
                microsecond: 999_999
            }
        );
        // 1969-12-31T23:59:59.000001Z (before the epoch)
        assert_eq!(
            Civil::from_us(-999_999),
            Civil {
                year: 1969,
                month: 12,
                day: 31,
                hour: 23,
                minute: 59,
                second: 59,
                microsecond: 1
            }
        );
    }

    proptest! {
        #[test]
        fn strictly_increasing_for_any_wall_clock(walls in proptest::collection::vec(any::<i32>(), 1..200)) {
            let mut c = Clock::new();
            let mut prev: Option<i64> = None;
            for w in walls {
                let v = c.tick_from(i64::from(w));
                if let Some(p) = prev { prop_assert!(v > p); }
                prev = Some(v);
            }
        }
    }
}
