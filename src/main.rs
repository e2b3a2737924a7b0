//! benchgen's binary: parse the command line, run it, turn errors into a message and exit code.

// Output goes through cli's `outln!`, whose failures are errors, not panics.
#![deny(clippy::print_stdout)]

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
        if reader_gone(&e) {
            // `benchgen runs list | head -1`: the reader had all it wanted.
            std::process::exit(0);
        }
        if matches!(e.downcast_ref::<benchgen::Error>(), Some(benchgen::Error::Interrupted)) {
            eprintln!("interrupted; the run can be resumed (its run.json has the command)");
            std::process::exit(INTERRUPTED_EXIT);
        }
        eprintln!("error: {}", error_line(&e));
        std::process::exit(1);
    }
}

/// Whether the command failed writing to a stdout its reader had closed (a broken pipe). Only
/// the command's own write error counts: a broken connection deep inside a library error (a
/// model server that went away) is a real failure.
fn reader_gone(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// The error line: the error and its causes, each after ": " as `{e:#}` writes them, except
/// that it ends at a library error, whose message already says what its cause says (so that a
/// cause kept as `#[source]` is not written twice).
fn error_line(e: &anyhow::Error) -> String {
    use benchgen::Error;
    let mut line = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            line.push_str(": ");
        }
        line.push_str(&cause.to_string());
        if cause.downcast_ref::<Error>().is_some() {
            break;
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::error_line;
    use benchgen::error::LineError;
    use benchgen::Error;

    fn bad_json() -> serde_json::Error {
        serde_json::from_str::<serde_json::Value>("{").unwrap_err()
    }

    #[test]
    fn a_library_error_that_keeps_its_cause_is_not_followed_by_it_again() {
        let e = Error::PredictionsLine {
            origin: "p.jsonl".into(),
            line: 2,
            source: LineError::Json(bad_json()),
        };
        let message = e.to_string();
        assert_eq!(error_line(&e.into()), message);
        let wrapped = anyhow::Error::from(Error::PredictionsLine {
            origin: "p.jsonl".into(),
            line: 2,
            source: LineError::Json(bad_json()),
        })
        .context("reading");
        assert_eq!(error_line(&wrapped), format!("reading: {message}"));
    }

    #[test]
    fn other_errors_read_as_with_their_causes() {
        let io = || std::io::Error::other("gone");
        // A library error's message already holds its cause: said once.
        let e = anyhow::Error::from(Error::io("f.txt", io()));
        assert_eq!(error_line(&e), "f.txt: gone");
        let e = anyhow::Error::from(io()).context("opening f.txt");
        assert_eq!(error_line(&e), format!("{e:#}"));
        let e = anyhow::anyhow!("plain");
        assert_eq!(error_line(&e), "plain");
    }
}
