//! How a pass of the decoder uses rayon's pool. A decode step is a few hundred parallel regions
//! (four products a layer, attention, the LM head), each of a few to a hundred microseconds, and
//! between them one thread does the serial parts (norms, RoPE, a short attention). Rayon puts a
//! worker that finds no work to sleep after a few dozen rounds of yielding, and waking it again
//! takes a futex round trip, which in a VM costs tens of microseconds: a batch-1 step of a 135M
//! model made about 57 context switches a token, and two threads decoded only 1.17× as fast as
//! one. So for the length of a pass the other workers stay awake: each runs a job that executes
//! whatever work the pass spawns (`rayon::yield_now`) and spins in between, until the pass
//! returns or unwinds, as llama.cpp's threads spin between its graph's nodes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a worker spins without finding work before it also lets the OS run other threads
/// between its looks (`sched_yield`): long enough for any serial part of a pass, short enough
/// that a pass waiting on something else does not hold a core from the rest of the machine.
const SPIN: Duration = Duration::from_millis(2);

/// Runs `f` on a worker of rayon's pool with every other worker kept awake until it returns.
/// The engine's loop is not a rayon worker, and from outside the pool every parallel region
/// injects its job and puts the caller to sleep until it is done: two context switches each and
/// a third thread contending for the cores. Moved onto a worker once per call, the regions run
/// between workers that are already awake.
pub(super) fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return awake(f);
    }
    // `join` from outside the pool runs both closures on a worker and waits for them.
    rayon::join(|| awake(f), || ()).0
}

/// `f`, on this worker, while every other worker of the pool runs pending work or spins.
fn awake<R>(f: impl FnOnce() -> R) -> R {
    let me = rayon::current_thread_index();
    if rayon::current_num_threads() < 2 || me.is_none() {
        return f();
    }
    let done = Done(Arc::new(AtomicBool::new(false)));
    let flag = Arc::clone(&done.0);
    // Each worker gets its own copy; this one's returns at once (it is running `f`), so no
    // worker can end up spinning below the frame that would end the spin.
    rayon::spawn_broadcast(move |ctx| {
        if Some(ctx.index()) != me {
            spin_until(&flag);
        }
    });
    f()
}

/// Sets the flag when the pass ends, by return or by panic.
struct Done(Arc<AtomicBool>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn spin_until(done: &AtomicBool) {
    let mut last_work = Instant::now();
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => last_work = Instant::now(),
            _ if last_work.elapsed() < SPIN => std::hint::spin_loop(),
            _ => std::thread::yield_now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use rayon::prelude::*;

    use super::*;

    /// Runs `f` on another thread and fails if it has not finished within a minute (a worker
    /// left spinning would make a later broadcast wait forever).
    fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(60)).expect("the pool's workers were left busy")
    }

    fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
        Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool"))
    }

    #[test]
    fn a_pass_runs_on_a_worker_and_its_parallel_work_completes() {
        let p = pool(3);
        let sum = within_a_minute(move || {
            p.install(|| {
                on_worker(|| {
                    assert!(rayon::current_thread_index().is_some());
                    // Nested passes and nested parallel regions, as the decoder's forward pass
                    // and LM head make them.
                    (0..64u64)
                        .into_par_iter()
                        .map(|i| {
                            on_worker(|| (0..1000u64).into_par_iter().map(|j| i * j).sum::<u64>())
                        })
                        .sum::<u64>()
                })
            })
        });
        assert_eq!(sum, (0..64u64).sum::<u64>() * (0..1000u64).sum::<u64>());
    }

    /// The OS state letter of thread `tid` of this process ('R' running or runnable, 'S'
    /// asleep).
    #[cfg(target_os = "linux")]
    fn state(tid: i32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).expect("stat");
        // The state follows the command name, which is in parentheses.
        stat[stat.rfind(')').expect("(comm)") + 1..].trim_start().chars().next().expect("state")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_other_workers_stay_awake_through_a_pass_and_sleep_after_it() {
        let p = pool(2);
        // SAFETY: gettid has no preconditions.
        let tids = p.broadcast(|_| unsafe { libc::gettid() });
        let q = Arc::clone(&p);
        let during = within_a_minute(move || {
            q.install(|| {
                on_worker(|| {
                    let me = rayon::current_thread_index().expect("a worker");
                    let other = tids[1 - me];
                    // Serial work far longer than rayon's own spin before it sleeps.
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_millis(50) {
                        std::hint::spin_loop();
                    }
                    (other, state(other))
                })
            })
        });
        assert_eq!(during.1, 'R', "the other worker slept during the pass");
        let asleep = within_a_minute(move || loop {
            if state(during.0) == 'S' {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        });
        assert!(asleep);
        drop(p);
    }

    #[test]
    fn the_workers_stop_spinning_when_the_pass_ends_or_panics() {
        let p = pool(3);
        let q = Arc::clone(&p);
        let panicked = within_a_minute(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                q.install(|| on_worker(|| panic!("a pass that fails")))
            }))
            .is_err()
        });
        assert!(panicked);
        let r = Arc::clone(&p);
        within_a_minute(move || r.install(|| on_worker(|| 1)));
        // Every worker free again: a broadcast needs each of them to run a job of its own.
        let seen = within_a_minute(move || p.broadcast(|ctx| ctx.index()));
        assert_eq!(seen, vec![0, 1, 2]);
    }
}
