//! Throughput and time left, for the progress bar and the `Processing: n/N (p%)` lines.

use std::time::{Duration, Instant};

/// How far a stage has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Items finished, those a resumed run already had included.
    pub done: usize,
    pub total: usize,
    /// What the engine did for the items finished in this process.
    pub work: Work,
}

/// The engine's own unit of work, counted since the stage started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Tokens generated.
    Tokens(usize),
    /// Log-likelihood requests scored (one per option of a multiple-choice item).
    Requests(usize),
}

impl Work {
    fn count(self) -> usize {
        match self {
            Work::Tokens(n) | Work::Requests(n) => n,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Work::Tokens(_) => "tokens",
            Work::Requests(_) => "requests",
        }
    }
}

/// Rates since a stage started. Items a resumed run already had are left out of them, or the
/// first line would claim thousands of items per second.
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    started: Instant,
    done_before: usize,
}

impl Meter {
    pub fn new(started: Instant, done_before: usize) -> Self {
        Self { started, done_before }
    }

    /// `3.2 items/s, 410 tokens/s, ETA 28s` (no ETA once every item is done); empty until an
    /// item has finished and time has passed, when a rate would mean nothing.
    pub fn rates(&self, p: &Progress, now: Instant) -> String {
        let secs = now.saturating_duration_since(self.started).as_secs_f64();
        let items = p.done.saturating_sub(self.done_before);
        if items == 0 || secs < 1e-3 {
            return String::new();
        }
        let per_sec = items as f64 / secs;
        let mut text = format!(
            "{} items/s, {} {}/s",
            rate(per_sec),
            rate(p.work.count() as f64 / secs),
            p.work.unit()
        );
        let left = p.total.saturating_sub(p.done);
        if left > 0 {
            text.push_str(&format!(", ETA {}", eta(left as f64 / per_sec)));
        }
        text
    }
}

/// One decimal while small (`3.2`), whole numbers once that decimal stops mattering (`410`).
fn rate(x: f64) -> String {
    if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// `28s`, `4m05s`, `2h03m`: rounded up, so a last second never reads as 0s.
fn eta(secs: f64) -> String {
    let s = Duration::from_secs_f64(secs.clamp(0.0, 1e9).ceil()).as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(done: usize, total: usize, work: Work) -> Progress {
        Progress { done, total, work }
    }

    #[test]
    fn rates_and_eta_from_the_items_done_since_the_start() {
        let t0 = Instant::now();
        let meter = Meter::new(t0, 0);
        let p = at(10, 100, Work::Tokens(1312));
        assert_eq!(
            meter.rates(&p, t0 + Duration::from_millis(3125)),
            "3.2 items/s, 420 tokens/s, ETA 29s"
        );
        let p = at(50, 200, Work::Requests(200));
        assert_eq!(
            meter.rates(&p, t0 + Duration::from_secs(2)),
            "25.0 items/s, 100 requests/s, ETA 6s"
        );
        // Done: the rates stay, the ETA goes.
        assert_eq!(
            meter.rates(&at(100, 100, Work::Tokens(50)), t0 + Duration::from_secs(10)),
            "10.0 items/s, 5.0 tokens/s"
        );
    }

    #[test]
    fn a_resumed_runs_items_are_not_counted_and_nothing_is_claimed_too_early() {
        let t0 = Instant::now();
        let meter = Meter::new(t0, 90);
        let p = at(91, 100, Work::Tokens(30));
        assert_eq!(
            meter.rates(&p, t0 + Duration::from_secs(2)),
            "0.5 items/s, 15.0 tokens/s, ETA 18s"
        );
        assert_eq!(meter.rates(&at(90, 100, Work::Tokens(0)), t0 + Duration::from_secs(2)), "");
        assert_eq!(meter.rates(&p, t0), "");
    }

    #[test]
    fn long_waits_read_in_minutes_and_hours() {
        assert_eq!(eta(0.2), "1s");
        assert_eq!(eta(59.0), "59s");
        assert_eq!(eta(245.0), "4m05s");
        assert_eq!(eta(7385.0), "2h03m");
        assert_eq!(eta(f64::INFINITY), "277777h46m");
    }
}
