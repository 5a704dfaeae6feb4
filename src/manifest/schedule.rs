//! `spec.schedule` (SPEC 11): when an environment stops and starts again, in a time zone of
//! the tz database. Times are wall-clock times in that zone: across a daylight-saving
//! change, `19:00` stays 19:00 local (the UTC instant moves), and a time the change skips
//! (02:30 on the spring-forward night) runs at the first instant after the gap.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// `spec.schedule` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Schedule {
    /// Local time (`HH:MM`) the environment is stopped (`stop.sh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// Local time (`HH:MM`) it is started again (`start.sh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// A tz database name such as `Europe/Berlin` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The days stop and start happen on (`mon` … `sun`; default every day).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
}

/// Which end of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Stop,
    Start,
}

/// A schedule checked and ready to compute with.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub stop: Option<NaiveTime>,
    pub start: Option<NaiveTime>,
    pub zone: Tz,
    /// Monday = 0 … Sunday = 6.
    pub days: [bool; 7],
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A schedule's problems, as (field under `spec.schedule`, message).
pub fn check(s: &Schedule) -> Result<Plan, Vec<(String, String)>> {
    let mut errs = Vec::new();
    let time = |field: &str, v: &Option<String>, errs: &mut Vec<(String, String)>| {
        v.as_deref().and_then(|t| match parse_time(t) {
            Some(t) => Some(t),
            None => {
                errs.push((
                    field.to_string(),
                    format!("{t:?} is not a time of day such as 19:00 (24-hour HH:MM)"),
                ));
                None
            }
        })
    };
    let stop = time("stop", &s.stop, &mut errs);
    let start = time("start", &s.start, &mut errs);
    if s.stop.is_none() && s.start.is_none() {
        errs.push((
            "stop".into(),
            "a schedule needs a stop time, a start time or both".into(),
        ));
    }
    let zone = match s.time_zone.as_deref() {
        None => Tz::UTC,
        Some(z) => match z.parse::<Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                errs.push((
                    "timeZone".into(),
                    format!("{z:?} is not a time zone of the tz database, such as Europe/Berlin"),
                ));
                Tz::UTC
            }
        },
    };
    let mut days = [s.days.is_empty(); 7];
    for (i, d) in s.days.iter().enumerate() {
        match DAYS.iter().position(|x| x.eq_ignore_ascii_case(d)) {
            Some(n) => days[n] = true,
            None => errs.push((
                format!("days[{i}]"),
                format!("{d:?} is not a day: use mon, tue, wed, thu, fri, sat or sun"),
            )),
        }
    }
    if errs.is_empty() {
        Ok(Plan {
            stop,
            start,
            zone,
            days,
        })
    } else {
        Err(errs)
    }
}

fn parse_time(t: &str) -> Option<NaiveTime> {
    let (h, m) = t.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

impl Plan {
    /// The first `switch` strictly after `after`, with its local date (what makes it this
    /// day's and not another's). `None` when the schedule has no such time.
    pub fn next(&self, switch: Switch, after: DateTime<Utc>) -> Option<(DateTime<Utc>, NaiveDate)> {
        let time = match switch {
            Switch::Stop => self.stop?,
            Switch::Start => self.start?,
        };
        let local_today = after.with_timezone(&self.zone).date_naive();
        // Yesterday too: a time the zone's offset puts before `after`'s local date.
        (-1..=8).find_map(|offset| {
            let day = local_today + Duration::days(offset);
            if !self.days[day.weekday().num_days_from_monday() as usize] {
                return None;
            }
            let at = self.instant(day, time)?;
            (at > after).then_some((at, day))
        })
    }

    /// The UTC instant of a local date and time: the earlier of two when the clock goes back
    /// (it runs once), the end of the gap when the clock jumps over it.
    fn instant(&self, day: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
        let local = day.and_time(time);
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(early, _) => Some(early.with_timezone(&Utc)),
            LocalResult::None => (1..=180).find_map(|m| {
                match self
                    .zone
                    .from_local_datetime(&(local + Duration::minutes(m)))
                {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                        Some(t.with_timezone(&Utc))
                    }
                    LocalResult::None => None,
                }
            }),
        }
    }

    /// Whether the environment should be stopped at `at`: the latest switch before it was a
    /// stop. `false` when the schedule never starts or stops it.
    pub fn stopped_at(&self, at: DateTime<Utc>) -> bool {
        let last = |switch| {
            let week_ago = at - Duration::days(8);
            let mut t = week_ago;
            let mut last = None;
            while let Some((next, _)) = self.next(switch, t) {
                if next > at {
                    break;
                }
                last = Some(next);
                t = next;
            }
            last
        };
        match (last(Switch::Stop), last(Switch::Start)) {
            (Some(stop), Some(start)) => stop > start,
            (Some(_), None) => self.start.is_none(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn berlin_weekdays() -> Plan {
        check(&Schedule {
            stop: Some("19:00".into()),
            start: Some("08:00".into()),
            time_zone: Some("Europe/Berlin".into()),
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
        })
        .expect("valid")
    }

    #[test]
    fn local_times_hold_across_daylight_saving_in_berlin() {
        let p = berlin_weekdays();
        // Friday 2026-03-27, winter time (UTC+1): 19:00 local is 18:00 UTC.
        let (stop, day) = p
            .next(Switch::Stop, utc("2026-03-27T12:00:00Z"))
            .expect("stop");
        assert_eq!(stop, utc("2026-03-27T18:00:00Z"));
        assert_eq!(day.to_string(), "2026-03-27");
        // The clocks go forward on Sunday 29 March; the weekend is skipped; Monday 08:00
        // is summer time (UTC+2): 06:00 UTC.
        let (start, day) = p.next(Switch::Start, stop).expect("start");
        assert_eq!(day.to_string(), "2026-03-30");
        assert_eq!(start, utc("2026-03-30T06:00:00Z"));
        let (stop, _) = p.next(Switch::Stop, start).expect("stop");
        assert_eq!(stop, utc("2026-03-30T17:00:00Z"));
        // Back in October (25 Oct 2026): 08:00 on Monday 26 is UTC+1 again.
        let (start, _) = p
            .next(Switch::Start, utc("2026-10-24T12:00:00Z"))
            .expect("start");
        assert_eq!(start, utc("2026-10-26T07:00:00Z"));
    }

    #[test]
    fn a_skipped_time_runs_after_the_gap_and_a_repeated_one_once() {
        let p = check(&Schedule {
            stop: Some("02:30".into()),
            start: None,
            time_zone: Some("Europe/Berlin".into()),
            days: vec![],
        })
        .expect("valid");
        // 29 March 2026: 02:00 → 03:00 local; 02:30 does not exist: 03:00 CEST = 01:00 UTC.
        let (t, _) = p
            .next(Switch::Stop, utc("2026-03-28T12:00:00Z"))
            .expect("stop");
        assert_eq!(t, utc("2026-03-29T01:00:00Z"));
        // 25 October 2026: 02:30 happens twice; it runs at the first (CEST, 00:30 UTC) only.
        let (t, _) = p
            .next(Switch::Stop, utc("2026-10-24T12:00:00Z"))
            .expect("stop");
        assert_eq!(t, utc("2026-10-25T00:30:00Z"));
        let (after, _) = p.next(Switch::Stop, t).expect("next");
        assert_eq!(
            after,
            utc("2026-10-26T01:30:00Z"),
            "not again an hour later"
        );
    }

    #[test]
    fn stopped_between_stop_and_start() {
        let p = berlin_weekdays();
        assert!(p.stopped_at(utc("2026-03-27T20:00:00Z")), "Friday evening");
        assert!(p.stopped_at(utc("2026-03-29T12:00:00Z")), "Sunday");
        assert!(!p.stopped_at(utc("2026-03-30T09:00:00Z")), "Monday morning");
    }

    #[test]
    fn bad_schedules_name_their_field() {
        let errs = check(&Schedule {
            stop: Some("7pm".into()),
            start: Some("25:00".into()),
            time_zone: Some("Mars/Olympus".into()),
            days: vec!["monday".into()],
        })
        .expect_err("bad");
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["stop", "start", "timeZone", "days[0]"]);
        assert!(errs[2].1.contains("Europe/Berlin"), "{errs:?}");
    }
}
