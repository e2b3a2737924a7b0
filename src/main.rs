//! benchgen's binary: parse the command line, run it, turn errors into a message and exit code.

mod cli;

use clap::Parser;

/// The shell's code for "ended by SIGINT", also used for SIGTERM: an interrupted run is not a
/// success, and scripts can tell it from a failure.
const INTERRUPTED_EXIT: i32 = 130;

fn main() {
    install_interrupt_handler();
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        if matches!(e.downcast_ref::<benchgen::Error>(), Some(benchgen::Error::Interrupted)) {
            eprintln!("interrupted; the run is resumable (see its run.json for the command)");
            std::process::exit(INTERRUPTED_EXIT);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// First Ctrl-C / SIGTERM: ask the run to stop cleanly (journal synced, run.json Interrupted).
/// Second: the user means it, exit at once; the journal is append-only, so the run stays
/// resumable even then.
fn install_interrupt_handler() {
    let mut seen = false;
    let installed = ctrlc::set_handler(move || {
        if seen {
            std::process::exit(INTERRUPTED_EXIT);
        }
        seen = true;
        eprintln!("\nInterrupted: finishing the current step (Ctrl-C again to quit at once)");
        benchgen::interrupt::request();
    });
    // Without a handler the default signal behaviour applies, which still leaves a resumable run.
    if let Err(e) = installed {
        eprintln!("warning: cannot handle Ctrl-C: {e}");
    }
}
