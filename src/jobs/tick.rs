//! Which tick of its schedule a job run is for. Every daemon fires a job's
//! schedule at about the same moment, some a little late (the scheduler
//! polls); each names the run by the schedule's newest time at or before
//! the moment it fired, so all of them name the same tick and the store
//! lets only one claim it.

use chrono::{DateTime, SubsecRound, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// A job's schedule, parsed as the scheduler parses it (seconds required).
#[derive(Clone)]
pub struct Ticks(Cron);

impl Ticks {
    pub fn parse(schedule: &str) -> anyhow::Result<Self> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(schedule)
            .map_err(|e| anyhow::anyhow!("schedule {schedule:?}: {e}"))?;
        Ok(Ticks(cron))
    }

    /// The newest time of the schedule at or before `now` (to the second,
    /// as the schedule counts), formatted as stored; None if there is none.
    pub fn latest(&self, now: DateTime<Utc>) -> Option<String> {
        self.0
            .find_previous_occurrence(&now.trunc_subsecs(0), true)
            .ok()
            .map(crate::clock::format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32, ms: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, h, m, s).unwrap()
            + chrono::Duration::milliseconds(ms.into())
    }

    /// Daemons firing the same tick a little apart name it alike; the next
    /// tick is another name.
    #[test]
    fn late_firings_name_the_tick_they_are_for() {
        let every_ten = Ticks::parse("*/10 * * * * *").unwrap();
        let tick = every_ten.latest(at(9, 0, 20, 0)).unwrap();
        assert_eq!(tick, "2026-12-04T09:00:20.000000Z");
        assert_eq!(every_ten.latest(at(9, 0, 20, 3)).unwrap(), tick);
        assert_eq!(every_ten.latest(at(9, 0, 24, 900)).unwrap(), tick);
        assert_eq!(
            every_ten.latest(at(9, 0, 30, 1)).unwrap(),
            "2026-12-04T09:00:30.000000Z"
        );
        let nightly = Ticks::parse("0 17 3 * * *").unwrap();
        assert_eq!(
            nightly.latest(at(3, 17, 0, 450)).unwrap(),
            "2026-12-04T03:17:00.000000Z"
        );
    }

    #[test]
    fn a_bad_schedule_is_refused() {
        assert!(Ticks::parse("every hour").is_err());
        assert!(Ticks::parse("0 0 * * *").is_err());
    }
}
