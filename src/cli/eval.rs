use std::io::IsTerminal;

use benchgen::eval::{merge_runs, resume_eval, run_eval, EvalOutcome, Invocation, MergeSelection};
use benchgen::log::RunLog;
use benchgen::settings::{Settings, Shard};

use super::{EvalArgs, MergeArgs};

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    // Only eval has a run to keep resumable; other commands keep the default Ctrl-C.
    install_interrupt_handler();
    let (console, is_tty) = super::console(args.json);
    let mut log = RunLog::new(console, is_tty && std::io::stderr().is_terminal());
    let how = Invocation {
        runs_dir: args.runs_dir.clone(),
        sources: args.sources.options(),
        env_sources: super::env_sources(),
        allow_scoring_program: args.allow_scoring_program,
    };
    // The scheduler's variables are read here, at the edge, like every environment variable.
    let shard = args.shard.map(|c| c.resolve(super::vars())).transpose()?;
    let outcome = match args.resume {
        // Flags left out take the run's values; flags given are checked against them.
        Some(run_id) => {
            resume_eval(run_id, |recorded| given(&args, shard, recorded), &how, &mut log)?
        }
        None => run_eval(&given(&args, shard, Settings::default()), &how, &mut log)?,
    };
    report(&outcome, args.json)
}

/// With `--json`: the Score Breakdown, with the Run ID and the run folder beside it.
fn report(outcome: &EvalOutcome, json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::to_value(&outcome.breakdown)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("run_id".into(), outcome.run_id.into());
            map.insert("run_dir".into(), outcome.run_dir.path().display().to_string().into());
        }
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        outln!("Run files: {}", outcome.run_dir.path().display())?;
    }
    Ok(())
}

/// `benchgen merge`.
pub fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let (console, is_tty) = super::console(args.json);
    let mut log = RunLog::new(console, is_tty && std::io::stderr().is_terminal());
    let how = Invocation {
        runs_dir: args.runs_dir,
        sources: benchgen::model::spec::SourceOptions::from_vars(super::vars()),
        env_sources: super::env_sources(),
        allow_scoring_program: args.allow_scoring_program,
    };
    let selection = match args.group {
        Some(group) => MergeSelection::Group(group),
        None => MergeSelection::Runs(args.runs),
    };
    report(&merge_runs(&selection, &how, &mut log)?, args.json)
}

/// `base` with every setting flag that was given laid over it (`shard`: `--shard`, resolved).
fn given(args: &EvalArgs, shard: Option<Shard>, base: Settings) -> Settings {
    let env = args.env.as_ref().map(|p| p.to_string_lossy().into_owned());
    Settings {
        env: env.or(base.env),
        model: args.model.clone().or(base.model),
        phase: args.phase.clone().or(base.phase),
        device: args.device.unwrap_or(base.device),
        dtype: args.dtype.unwrap_or(base.dtype),
        batch_size: args.batch_size.unwrap_or(base.batch_size),
        limit: args.limit.or(base.limit),
        seed: args.seed.unwrap_or(base.seed),
        truncate: args.truncate.unwrap_or(base.truncate),
        kv_dtype: args.kv_dtype.unwrap_or(base.kv_dtype),
        kv_budget: args.kv_budget.or(base.kv_budget),
        shard: shard.or(base.shard),
        group: args.group.clone().or(base.group),
        generation: base.generation,
    }
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
