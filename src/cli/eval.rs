use std::io::IsTerminal;

use benchgen::eval::{run_eval, EvalOptions};
use benchgen::log::RunLog;

use super::EvalArgs;

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let opts = EvalOptions {
        env: args.env,
        model: args.model,
        phase: args.phase,
        device: args.device,
        dtype: args.dtype,
        batch_size: args.batch_size as usize,
        limit: args.limit,
        seed: args.seed,
        runs_dir: args.runs_dir,
    };
    // With --json, stdout carries only the breakdown; the live log moves to stderr.
    let (console, is_tty): (Box<dyn std::io::Write + Send>, bool) = if args.json {
        (Box::new(std::io::stderr()), std::io::stderr().is_terminal())
    } else {
        (Box::new(std::io::stdout()), std::io::stdout().is_terminal())
    };
    let mut log = RunLog::new(console, is_tty && std::io::stderr().is_terminal());
    let outcome = run_eval(&opts, &mut log)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.breakdown)?);
    } else {
        println!("Run files: {}", outcome.run_dir.display());
    }
    Ok(())
}
