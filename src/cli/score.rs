use benchgen::eval::{run_score, SavedPredictions, ScoreOptions};
use benchgen::log::RunLog;

use super::ScoreArgs;

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let predictions = match (args.predictions, args.submission) {
        (Some(p), None) => SavedPredictions::Jsonl(p),
        (None, Some(s)) => SavedPredictions::Submission(s),
        _ => anyhow::bail!("give exactly one of --predictions FILE or --submission ZIP"),
    };
    let opts = ScoreOptions {
        env: args.env,
        phase: args.phase,
        predictions,
        limit: args.limit,
        runs_dir: args.runs_dir,
        allow_scoring_program: args.allow_scoring_program,
        env_sources: super::env_sources(),
    };
    let (console, _) = super::console(args.json);
    let mut log = RunLog::new(console, false);
    let outcome = run_score(&opts, &mut log)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&outcome.breakdown)?)?;
    } else {
        outln!("Run files: {}", outcome.run_dir.path().display())?;
    }
    Ok(())
}
