use std::io::IsTerminal;

use benchgen::eval::{resume_eval, run_eval, EvalOptions, GivenOptions};
use benchgen::log::RunLog;

use super::EvalArgs;

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    // Only eval has a run to keep resumable; other commands keep the default Ctrl-C.
    install_interrupt_handler();
    // With --json, stdout carries only the breakdown; the live log moves to stderr.
    let (console, is_tty): (Box<dyn std::io::Write + Send>, bool) = if args.json {
        (Box::new(std::io::stderr()), std::io::stderr().is_terminal())
    } else {
        (Box::new(std::io::stdout()), std::io::stdout().is_terminal())
    };
    let mut log = RunLog::new(console, is_tty && std::io::stderr().is_terminal());
    let (truncate, kv_dtype) = (args.truncate, args.kv_dtype);
    let outcome = match args.resume {
        Some(run_id) => {
            // Flags left out take the run's values; flags given are checked against them.
            let given = GivenOptions {
                sources: Some(args.sources.options()),
                env: args.env,
                model: args.model,
                phase: args.phase,
                device: args.device,
                dtype: args.dtype,
                batch_size: args.batch_size.map(|b| b as usize),
                limit: args.limit,
                seed: args.seed,
                truncate,
                kv_dtype,
                allow_scoring_program: args.allow_scoring_program,
            };
            resume_eval(&args.runs_dir, run_id, &given, &mut log)?
        }
        None => {
            let defaults = EvalOptions::default();
            let opts = EvalOptions {
                env: args.env,
                model: args.model,
                phase: args.phase,
                device: args.device.unwrap_or(defaults.device),
                dtype: args.dtype.unwrap_or(defaults.dtype),
                batch_size: args.batch_size.map_or(defaults.batch_size, |b| b as usize),
                limit: args.limit,
                seed: args.seed.unwrap_or(defaults.seed),
                truncate: truncate.unwrap_or_default(),
                kv_dtype: kv_dtype.unwrap_or_default(),
                runs_dir: args.runs_dir,
                sources: args.sources.options(),
                allow_scoring_program: args.allow_scoring_program,
            };
            run_eval(&opts, &mut log)?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.breakdown)?);
    } else {
        println!("Run files: {}", outcome.run_dir.path().display());
    }
    Ok(())
}

/// First Ctrl-C / SIGTERM: ask the run to stop cleanly (journal synced, run.json Interrupted).
/// Second: the user means it, exit at once; the journal is append-only, so the run stays
/// resumable even then.
fn install_interrupt_handler() {
    let mut seen = false;
    let installed = ctrlc::set_handler(move || {
        if seen {
            benchgen::eval::abandon_active_run();
            std::process::exit(crate::INTERRUPTED_EXIT);
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
