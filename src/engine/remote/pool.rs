//! A fixed pool of workers pulling jobs from a shared list: as many requests in flight as
//! there are workers, and each result reaches the caller (on the caller's thread) the moment
//! it arrives, so the journal and the live log keep up with the server.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::error::{Error, Result};

/// Runs `work` on every job with up to `workers` at a time, handing each result to `on_done`.
/// The first error (from a job or from `on_done`) stops new jobs from starting; jobs already in
/// flight finish, their results dropped, and that error is returned. An interruption
/// likewise stops new jobs, and ends in `Error::Interrupted`.
pub fn run<T: Sync, R: Send>(
    jobs: Vec<T>,
    workers: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
    on_done: &mut dyn FnMut(R) -> Result<()>,
) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Result<R>>();
        for _ in 0..workers.clamp(1, jobs.len()) {
            let tx = tx.clone();
            let (next, stop, jobs, work) = (&next, &stop, &jobs, &work);
            scope.spawn(move || loop {
                if stop.load(Ordering::SeqCst) || crate::interrupt::requested() {
                    break;
                }
                let Some(job) = jobs.get(next.fetch_add(1, Ordering::SeqCst)) else { break };
                // A request cut short by Ctrl-C (during a retry pause) is an interruption, not a failure.
                let result = match work(job) {
                    Err(_) if crate::interrupt::requested() => Err(Error::Interrupted),
                    r => r,
                };
                let failed = result.is_err();
                // Stop the other workers now, not when the caller gets to this result.
                if failed {
                    stop.store(true, Ordering::SeqCst);
                }
                if tx.send(result).is_err() || failed {
                    break;
                }
            });
        }
        // The loop below ends when the last worker drops its sender.
        drop(tx);
        let mut first_error: Option<Error> = None;
        for result in rx {
            if first_error.is_some() {
                continue;
            }
            if let Err(e) = result.and_then(&mut *on_done) {
                stop.store(true, Ordering::SeqCst);
                first_error = Some(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => crate::interrupt::check(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn every_job_once_with_at_most_the_workers_in_flight() {
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let mut seen = Vec::new();
        run(
            (0..40).collect(),
            4,
            |&i: &usize| {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(i * 2)
            },
            &mut |r| {
                seen.push(r);
                Ok(())
            },
        )
        .unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..40).map(|i| i * 2).collect::<Vec<_>>());
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak > 1 && peak <= 4, "peak {peak}");
    }

    #[test]
    fn the_first_error_stops_new_jobs() {
        // What a request that fails for good gives (`RemoteEngine::error`).
        let failed = || Error::model("running:http://h:1", "job 3 failed");
        let started = AtomicUsize::new(0);
        let err = run(
            (0..100).collect(),
            2,
            |&i: &usize| {
                started.fetch_add(1, Ordering::SeqCst);
                // Jobs take a little time, as requests do, so "stops new jobs" is observable.
                std::thread::sleep(Duration::from_millis(1));
                if i == 3 {
                    Err(failed())
                } else {
                    Ok(i)
                }
            },
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), failed().to_string());
        assert!(started.load(Ordering::SeqCst) < 100);
    }
}
