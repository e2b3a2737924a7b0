//! benchgen's binary: parse the command line, run it, turn errors into a message and exit code.

mod cli;

use clap::FromArgMatches;

/// The shell's code for "ended by SIGINT", also used for SIGTERM: an interrupted run is not a
/// success, and scripts can tell it from a failure.
pub const INTERRUPTED_EXIT: i32 = 130;

fn main() {
    let args =
        cli::Cli::from_arg_matches(&cli::command().get_matches()).unwrap_or_else(|e| e.exit());
    // The process's variables are read here, once; the library is handed what it needs of them.
    let isa = cli::vars().get_str(benchgen::kernels::isa::ENV_VAR);
    if let Err(e) = benchgen::kernels::isa::select_named(isa) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    if let Err(e) = cli::run(args) {
        if matches!(e.downcast_ref::<benchgen::Error>(), Some(benchgen::Error::Interrupted)) {
            eprintln!("interrupted; the run can be resumed (its run.json has the command)");
            std::process::exit(INTERRUPTED_EXIT);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
