//! The live log: server-sent events that tail a run's `log.txt` as whichever process runs it
//! writes it, one event per complete line, then an `end` event once `run.json` says the run is
//! no longer Running. Each event's id is the byte offset after its line, so a browser that
//! reconnects (`Last-Event-ID`) continues where it was instead of receiving the log twice.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::page::not_found;
use super::runs::find_run;
use super::App;
use crate::run::{RunDir, RunFile, RunStatus};

/// How often the files are looked at while nothing new is there.
const POLL: Duration = Duration::from_millis(200);

pub async fn log(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, run)) = find_run(&app, &id) else { return not_found() };
    let offset = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let tail = Tail::new(&run, offset);
    let events = futures_util::stream::unfold(tail, |mut tail| async move {
        tail.next_event().await.map(|event| (Ok::<_, Infallible>(event), tail))
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

struct Tail {
    log: PathBuf,
    run: RunDir,
    /// Bytes of the log sent so far (complete lines only).
    offset: u64,
    ready: VecDeque<Event>,
    /// The run was seen ended once; the log is read once more before `end`, for the lines its
    /// process wrote just after recording that.
    ending: bool,
    ended: bool,
}

impl Tail {
    fn new(run: &RunDir, offset: u64) -> Self {
        Self {
            log: run.file(RunFile::Log),
            run: run.clone(),
            offset,
            ready: VecDeque::new(),
            ending: false,
            ended: false,
        }
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            if self.read_lines().await {
                continue;
            }
            if self.ending {
                self.ended = true;
                let status = self.status().map_or_else(|| "Removed".into(), |s| s.to_string());
                self.ready.push_back(Event::default().event("end").data(status));
                continue;
            }
            // No record: not written yet (a run just allocated), or the run was removed.
            match self.status() {
                // (A run no process holds was killed: its page says so instead of waiting.)
                Some(RunStatus::Running) if self.run.is_worked_on() => {}
                None if self.run.path().is_dir() => {}
                _ => self.ending = true,
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn status(&self) -> Option<RunStatus> {
        self.run.read_record().ok().map(|r| r.status)
    }

    /// Queues the complete lines written since `offset`; whether there were any.
    async fn read_lines(&mut self) -> bool {
        let Ok(mut file) = tokio::fs::File::open(&self.log).await else { return false };
        if file.seek(std::io::SeekFrom::Start(self.offset)).await.is_err() {
            return false;
        }
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).await.is_err() {
            return false;
        }
        // A line still being written waits for its newline.
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else { return false };
        for line in bytes[..end].split(|&b| b == b'\n') {
            self.offset += line.len() as u64 + 1;
            // Server-sent events end lines at a carriage return too.
            let text = String::from_utf8_lossy(line).replace('\r', "");
            self.ready.push_back(Event::default().id(self.offset.to_string()).data(text));
        }
        true
    }
}
