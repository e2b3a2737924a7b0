use std::path::PathBuf;

use anyhow::bail;
use benchgen::eval::{verify_run, Invocation};
use benchgen::log::RunLog;
use benchgen::model::spec::SourceOptions;

pub fn run(run_id: u64, runs_dir: PathBuf, allow_scoring_program: bool) -> anyhow::Result<()> {
    // The re-run's own live log is noise here; the report below is what counts.
    let mut log = RunLog::new(Box::new(std::io::stderr()), false);
    let how = Invocation {
        runs_dir,
        sources: SourceOptions::from_vars(super::vars()),
        env_sources: super::env_sources(),
        allow_scoring_program,
    };
    let report = verify_run(run_id, &how, &mut log)?;
    let show = |v: &Option<String>| {
        v.as_deref().map_or_else(|| "(missing)".to_string(), |s| format!("{s:?}"))
    };
    for d in &report.differences {
        outln!(
            "item {} ({}): recorded {} — re-run {}",
            d.id,
            d.file,
            show(&d.recorded),
            show(&d.rerun)
        )?;
    }
    for input in &report.changed_inputs {
        outln!("changed since the run: {input}")?;
    }
    let recorded =
        report.recorded_score.map_or_else(|| "(none)".to_string(), |s| format!("{s:.2}"));
    outln!(
        "run {}: {} items, {} difference(s); Overall Score recorded {recorded}, re-run {:.2}",
        report.run_id,
        report.items,
        report.differences.len(),
        report.rerun_score
    )?;
    if !report.reproduced() {
        bail!("run {} does not reproduce", report.run_id);
    }
    outln!("run {} reproduces", report.run_id)?;
    Ok(())
}
