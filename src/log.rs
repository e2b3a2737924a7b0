//! The live log: the one place the library writes human-readable output. Lines go to the
//! console sink the binary hands in and to the run's `log.txt`; progress is a bar on a terminal
//! and `Processing: n/N (p%)` lines elsewhere (the log file always keeps the lines).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};

pub struct RunLog {
    console: Box<dyn Write + Send>,
    file: Option<File>,
    /// Lines logged before the run folder existed; written once a file is attached.
    pending: Vec<String>,
    bar: Option<ProgressBar>,
    use_bar: bool,
    /// Tenths of the items already reported, so lines come at 10%, 20%, … 100%.
    last_decile: usize,
}

impl RunLog {
    /// `use_bar`: draw an indicatif bar (on stderr) instead of printing progress lines.
    pub fn new(console: Box<dyn Write + Send>, use_bar: bool) -> Self {
        Self { console, file: None, pending: Vec::new(), bar: None, use_bar, last_decile: 0 }
    }

    /// A log that prints nothing to the console (library callers, tests).
    pub fn quiet() -> Self {
        Self::new(Box::new(std::io::sink()), false)
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

    fn append_to_file(&mut self, text: &str) {
        match &mut self.file {
            Some(f) => {
                let _ = writeln!(f, "{text}");
            }
            None => self.pending.push(text.to_string()),
        }
    }

    /// Reports `done` of `total` items, one line per 10% step (every item when fewer than 10).
    pub fn progress(&mut self, done: usize, total: usize) {
        if total == 0 {
            return;
        }
        if self.use_bar && self.bar.is_none() && done < total {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "Processing: {pos}/{len} [{bar:30}] {percent}% {elapsed} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
        let decile = done * 10 / total;
        if total < 10 || decile > self.last_decile {
            self.last_decile = decile;
            let text = format!("Processing: {done}/{total} ({}%)", done * 100 / total);
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
