//! The live log: the one place the library writes human-readable output. Lines go to the
//! console sink the binary hands in and to the run's `log.txt`; progress is a bar on a terminal
//! and `Processing: n/N (p%)` lines elsewhere (the log file always keeps the lines). In the file
//! each line starts with the UTC time it was logged (`2026-12-04T13:52:01Z `); the console
//! shows the lines as they are.

mod progress;

pub use progress::{Meter, Progress, Work};

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};

/// Where the log's times come from: the system's, or a test's.
pub trait Clock: Send {
    /// For rates and ETAs.
    fn now(&self) -> Instant;
    /// For the log file's timestamps.
    fn utc(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn utc(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The length of the timestamp `log.txt` puts before each line, separator included.
const STAMP_LEN: usize = "2026-12-04T13:52:01Z ".len();

/// A `log.txt` line without its timestamp (lines written before timestamps are returned as
/// they are), for whatever reads the file back.
pub fn strip_timestamp(line: &str) -> &str {
    let stamped = line.len() >= STAMP_LEN
        && line.is_char_boundary(STAMP_LEN)
        && DateTime::parse_from_rfc3339(&line[..STAMP_LEN - 1]).is_ok()
        && line.as_bytes()[STAMP_LEN - 1] == b' ';
    if stamped {
        &line[STAMP_LEN..]
    } else {
        line
    }
}

pub struct RunLog {
    console: Box<dyn Write + Send>,
    file: Option<File>,
    /// Lines logged before the run folder existed, stamped; written once a file is attached.
    pending: Vec<String>,
    bar: Option<ProgressBar>,
    use_bar: bool,
    /// Tenths of the items already reported, so lines come at 10%, 20%, … 100%.
    last_decile: usize,
    meter: Option<Meter>,
    clock: Box<dyn Clock>,
}

impl RunLog {
    /// `use_bar`: draw an indicatif bar (on stderr) instead of printing progress lines.
    pub fn new(console: Box<dyn Write + Send>, use_bar: bool) -> Self {
        Self {
            console,
            file: None,
            pending: Vec::new(),
            bar: None,
            use_bar,
            last_decile: 0,
            meter: None,
            clock: Box::new(SystemClock),
        }
    }

    /// A log that prints nothing to the console (library callers, tests).
    pub fn quiet() -> Self {
        Self::new(Box::new(std::io::sink()), false)
    }

    /// The same log on another clock (tests).
    pub fn with_clock(mut self, clock: Box<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn attach_file(&mut self, path: &Path) -> Result<()> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        self.attach(path, file)
    }

    /// Like [`Self::attach_file`], but keeps what the file holds (a resumed run's log).
    pub fn continue_file(&mut self, path: &Path) -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        self.attach(path, file)
    }

    fn attach(&mut self, path: &Path, mut file: File) -> Result<()> {
        for line in self.pending.drain(..) {
            writeln!(file, "{line}").map_err(|e| Error::io(path, e))?;
        }
        self.file = Some(file);
        Ok(())
    }

    /// Console and file write failures are not worth failing a run over; the run's own files
    /// are written separately and checked.
    pub fn line(&mut self, text: impl AsRef<str>) {
        let text = text.as_ref();
        match &self.bar {
            Some(bar) => bar.println(text),
            None => {
                let _ = writeln!(self.console, "{text}");
                let _ = self.console.flush();
            }
        }
        self.append_to_file(text);
    }

    /// Every line of `text` stamped (a table logged at once too), so the file parses line by
    /// line.
    fn append_to_file(&mut self, text: &str) {
        let stamp = self.clock.utc().format("%Y-%m-%dT%H:%M:%SZ");
        let stamped: String = text.lines().map(|l| format!("{stamp} {l}\n")).collect();
        let stamped = if stamped.is_empty() { format!("{stamp} \n") } else { stamped };
        match &mut self.file {
            Some(f) => {
                let _ = f.write_all(stamped.as_bytes());
            }
            None => self.pending.push(stamped.trim_end_matches('\n').to_string()),
        }
    }

    /// Starts the clock of a stage's rates; `done_before` items (a resumed run's) are not
    /// counted in them.
    pub fn start_progress(&mut self, done_before: usize) {
        self.meter = Some(Meter::new(self.clock.now(), done_before));
        self.last_decile = 0;
    }

    /// Reports progress, one line per 10% step (every item when fewer than 10), with the rates
    /// since [`Self::start_progress`] and the time left.
    pub fn progress(&mut self, p: Progress) {
        let Progress { done, total, .. } = p;
        if total == 0 {
            return;
        }
        let now = self.clock.now();
        let meter = *self.meter.get_or_insert_with(|| Meter::new(now, done));
        let rates = meter.rates(&p, now);
        if self.use_bar && self.bar.is_none() && done < total {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("Processing: {pos}/{len} [{bar:30}] {percent}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            // The message first, so the redraw the position triggers shows the new rates.
            bar.set_message(rates.clone());
            bar.set_position(done as u64);
        }
        let decile = done * 10 / total;
        if total < 10 || decile > self.last_decile {
            self.last_decile = decile;
            // The platform's words first, unchanged: tools read `Processing: n/N (p%)`.
            let mut text = format!("Processing: {done}/{total} ({}%)", done * 100 / total);
            if !rates.is_empty() {
                text.push(' ');
                text.push_str(&rates);
            }
            if self.bar.is_some() {
                self.append_to_file(&text);
            } else {
                self.line(text);
            }
        }
        if done >= total {
            if let Some(bar) = self.bar.take() {
                bar.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A clock a test moves by hand.
    #[derive(Clone)]
    struct TestClock(Arc<Mutex<(Instant, DateTime<Utc>)>>);

    impl TestClock {
        fn new() -> Self {
            let utc = DateTime::parse_from_rfc3339("2026-12-04T13:52:01Z").unwrap().to_utc();
            Self(Arc::new(Mutex::new((Instant::now(), utc))))
        }

        fn advance(&self, by: Duration) {
            let mut t = self.0.lock().unwrap();
            t.0 += by;
            t.1 += chrono::Duration::from_std(by).unwrap();
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Instant {
            self.0.lock().unwrap().0
        }

        fn utc(&self) -> DateTime<Utc> {
            self.0.lock().unwrap().1
        }
    }

    /// A console a test can read.
    #[derive(Clone, Default)]
    struct Console(Arc<Mutex<Vec<u8>>>);

    impl Write for Console {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Console {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn progress_lines_carry_rates_and_the_file_carries_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        let (clock, console) = (TestClock::new(), Console::default());
        let mut log =
            RunLog::new(Box::new(console.clone()), false).with_clock(Box::new(clock.clone()));
        log.line("Status: Running");
        log.attach_file(&path).unwrap();
        log.start_progress(0);
        for done in 1..=20 {
            clock.advance(Duration::from_millis(500));
            log.progress(Progress { done, total: 20, work: Work::Tokens(done * 64) });
        }
        clock.advance(Duration::from_secs(61));
        log.line("Score Breakdown\n  Accuracy 10.00%");

        let shown = console.text();
        assert!(shown.starts_with("Status: Running\nProcessing: 2/20 (10%) "), "{shown}");
        assert!(
            shown.contains("\nProcessing: 2/20 (10%) 2.0 items/s, 128 tokens/s, ETA 9s\n"),
            "{shown}"
        );
        assert!(
            shown.contains("\nProcessing: 20/20 (100%) 2.0 items/s, 128 tokens/s\n"),
            "{shown}"
        );
        assert!(!shown.contains("2026-"), "the console has no timestamps: {shown}");

        let file = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines[0], "2026-12-04T13:52:01Z Status: Running");
        assert_eq!(
            lines[1],
            "2026-12-04T13:52:02Z Processing: 2/20 (10%) 2.0 items/s, 128 tokens/s, ETA 9s"
        );
        assert_eq!(lines.len(), 13, "{file}");
        assert_eq!(lines[11], "2026-12-04T13:53:12Z Score Breakdown");
        assert_eq!(lines[12], "2026-12-04T13:53:12Z   Accuracy 10.00%");
        let plain: Vec<&str> = lines.iter().map(|l| strip_timestamp(l)).collect();
        assert_eq!(plain[0], "Status: Running");
        assert_eq!(plain[12], "  Accuracy 10.00%");
    }

    #[test]
    fn only_real_timestamps_are_stripped() {
        assert_eq!(strip_timestamp("2026-12-04T13:52:01Z Loaded 5 items"), "Loaded 5 items");
        assert_eq!(strip_timestamp("Loaded 5 items"), "Loaded 5 items");
        assert_eq!(strip_timestamp("2026-12-04 is a date: x"), "2026-12-04 is a date: x");
        assert_eq!(strip_timestamp("Ünïcödé ünïcödé ünïcödé"), "Ünïcödé ünïcödé ünïcödé");
    }
}
