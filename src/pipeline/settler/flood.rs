//! Keeps a poison flood from flooding the log: per stream, the first `lines` dead letters of each interval are
//! logged one by one; the rest are counted, and the interval's end brings one line with their count and the first
//! of their reasons. Pure bookkeeping: the settler says when letters come and when time passes.
//!
//! Uses nothing else.

use std::time::{Duration, Instant};

/// The letters of the current interval.
#[derive(Debug)]
pub(super) struct Flood {
    lines: u32,
    every: Duration,
    since: Option<Instant>,
    logged: u32,
    quiet: u64,
    first_quiet: Option<String>,
}

/// What an interval left unsaid: how many letters were not logged, and the first of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unsaid {
    /// Letters counted instead of logged.
    pub count: u64,
    /// The first of those (class and reason).
    pub first: String,
    /// The interval's length.
    pub every: Duration,
}

impl Flood {
    /// `lines` letters logged per `every`.
    pub(super) fn new(lines: u32, every: Duration) -> Self {
        Flood { lines, every, since: None, logged: 0, quiet: 0, first_quiet: None }
    }

    /// A letter at `now`: whether to log it (`describe` gives its text when it is the first one held back).
    /// Also returns what an interval that ended before it left unsaid.
    pub(super) fn letter(&mut self, now: Instant, describe: impl FnOnce() -> String) -> (bool, Option<Unsaid>) {
        let ended = self.tick(now);
        self.since.get_or_insert(now);
        if self.logged < self.lines {
            self.logged += 1;
            return (true, ended);
        }
        self.quiet += 1;
        if self.first_quiet.is_none() {
            self.first_quiet = Some(describe());
        }
        (false, ended)
    }

    /// Time passes: when the interval is over, what it left unsaid (if anything), and a new interval begins with
    /// the next letter.
    pub(super) fn tick(&mut self, now: Instant) -> Option<Unsaid> {
        let since = self.since?;
        if now.duration_since(since) < self.every {
            return None;
        }
        let unsaid = self.first_quiet.take().map(|first| Unsaid { count: self.quiet, first, every: self.every });
        (self.since, self.logged, self.quiet) = (None, 0, 0);
        unsaid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_the_first_lines_then_one_summary_per_interval() {
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        let mut f = Flood::new(3, every);
        let mut logged = 0;
        let mut summaries = Vec::new();
        // 5,000 letters over 25 s: 200 per second.
        for i in 0..5_000u64 {
            let now = t0 + Duration::from_millis(i * 5);
            let (log, unsaid) = f.letter(now, || format!("decode: letter {i}"));
            logged += u64::from(log);
            summaries.extend(unsaid);
        }
        summaries.extend(f.tick(t0 + Duration::from_secs(60)));
        assert_eq!(logged, 9, "3 per interval, 3 intervals");
        assert_eq!(summaries.len(), 3);
        assert_eq!(summaries[0], Unsaid { count: 1_997, first: "decode: letter 3".into(), every });
        assert_eq!(logged + summaries.iter().map(|u| u.count).sum::<u64>(), 5_000, "every letter is told");
    }

    #[test]
    fn a_trickle_is_logged_whole_and_quiet_intervals_say_nothing() {
        let t0 = Instant::now();
        let mut f = Flood::new(2, Duration::from_secs(10));
        assert_eq!(f.tick(t0), None, "nothing yet");
        assert_eq!(f.letter(t0, || unreachable!()), (true, None));
        assert_eq!(f.letter(t0 + Duration::from_secs(5), || unreachable!()), (true, None));
        assert_eq!(f.tick(t0 + Duration::from_secs(11)), None, "all were logged");
        assert_eq!(f.letter(t0 + Duration::from_secs(30), || unreachable!()), (true, None), "a new interval");
        let mut off = Flood::new(0, Duration::from_secs(1));
        assert_eq!(off.letter(t0, || "x".into()), (false, None), "0 lines: only summaries");
        assert_eq!(off.tick(t0 + Duration::from_secs(1)).map(|u| u.count), Some(1));
    }
}
