//! `benchgen env list|show|validate` and `benchgen leaderboard`: the Overview, Phases and
//! Leaderboard tabs.

use std::path::Path;

use anyhow::bail;
use benchgen::env::{Environment, PhaseCheck};
use benchgen::leaderboard::{leaderboard, Options};
use benchgen::run::RunsDir;

pub fn list() -> anyhow::Result<()> {
    outln!("{:<24}  SOURCE", "NAME")?;
    for (name, source) in Environment::available(&super::env_sources()) {
        outln!("{name:<24}  {source}")?;
    }
    Ok(())
}

pub fn show(spec: &str, runs_dir: &Path) -> anyhow::Result<()> {
    let env = Environment::resolve(spec, &super::env_sources())?;
    let m = &env.manifest;
    outln!("{} v{} — {}", m.name, m.version, m.description)?;
    outln!("Source: {}\n", env.origin)?;
    outln!("Overview\n--------")?;
    outln!("{}\n", env.readme.as_deref().unwrap_or("(no README.md)").trim_end())?;
    outln!("Phases\n------")?;
    for (i, phase) in m.phases.iter().enumerate() {
        let count = match env.load_items(phase) {
            Ok(items) => format!("{} items", items.len()),
            Err(e) => format!("data not available: {e}"),
        };
        let default = if i == 0 { " (default)" } else { "" };
        let shots = match (&m.fewshot, phase.shots(m.fewshot.as_ref())) {
            (Some(f), n) if n > 0 => {
                format!(", {n}-shot from phase {} ({})", f.phase, f.sampler.name())
            }
            _ => String::new(),
        };
        outln!("  {}{default}: {} — {count}{shots}", phase.name, phase.file_name())?;
    }
    let s = &m.scoring;
    outln!("\nScoring\n-------")?;
    outln!("  method {:?}, metric {:?}, primary {:?}", s.method, s.metric, s.primary)?;
    if !s.extract.is_empty() {
        outln!(
            "  extract {:?}",
            s.extract.iter().map(benchgen::score::ExtractorSpec::pattern).collect::<Vec<_>>()
        )?;
    }
    if let Some(p) = &s.program {
        outln!(
            "  scoring program: `{}` in {}/ (timeout {} s, Overall Score = \"{}\")",
            p.shown(),
            p.dir,
            p.timeout_s,
            p.primary
        )?;
        outln!("  it runs only with {}", benchgen::eval::ALLOW_FLAG)?;
    }
    for v in &s.variants {
        let extract = v.extract.as_ref().unwrap_or(&s.extract);
        outln!(
            "  variant {}: extract {:?}",
            v.name,
            extract.iter().map(benchgen::score::ExtractorSpec::pattern).collect::<Vec<_>>()
        )?;
    }
    outln!("\nLeaderboard ({})\n-----------", runs_dir.display())?;
    print_leaderboard(&m.name, runs_dir, Options::default())
}

pub fn validate(spec: &str) -> anyhow::Result<()> {
    // Manifest problems (syntax, unknown fields or metrics, bad regexes) fail here, with the file.
    let env = Environment::resolve(spec, &super::env_sources())?;
    let mut total = 0;
    if let Some(p) = &env.manifest.scoring.program {
        // The program is never run here; only its presence is checked.
        match env.program_files() {
            Ok(files) => outln!(
                "scoring program: `{}` with {} file(s) in {}/ (runs only with {})",
                p.shown(),
                files.len(),
                p.dir,
                benchgen::eval::ALLOW_FLAG
            )?,
            Err(e) => {
                outln!("scoring program: {e}")?;
                total += 1;
            }
        }
    }
    for phase in &env.manifest.phases {
        let PhaseCheck { items, mut problems, data_read } = env.check_phase(phase);
        if data_read {
            problems.extend(benchgen::prompt::check_renders(&env, phase, &items));
        }
        outln!("phase {}: {} items, {} problem(s)", phase.name, items.len(), problems.len())?;
        for p in &problems {
            outln!("  {p}")?;
        }
        total += problems.len();
    }
    if total > 0 {
        bail!("{} has {total} problem(s)", env.origin);
    }
    outln!("{}: OK", env.origin)?;
    Ok(())
}

pub fn print_leaderboard(env_name: &str, runs_dir: &Path, options: Options) -> anyhow::Result<()> {
    let entries = leaderboard(&RunsDir::new(runs_dir), env_name, options)?;
    if entries.is_empty() {
        let which = if options.include_partial { "" } else { "full-phase " };
        outln!("  no completed {which}runs of {env_name} in {}", runs_dir.display())?;
        return Ok(());
    }
    // As wide as the longest name, so the columns stay aligned.
    let width = entries.iter().map(|e| e.label().chars().count()).max().unwrap_or(0).max(5);
    outln!(
        "{:>4}  {:<width$}  {:>6}  {:>8}  {:>8}  {:>8}  {:>8}  {:>9}  {:>6}  DATE",
        "RANK",
        "MODEL",
        "ITEMS",
        "OVERALL",
        "ACCURACY",
        "EXACT",
        "ANSWERED",
        "DURATION",
        "RUN"
    )?;
    for (i, e) in entries.iter().enumerate() {
        let b = &e.breakdown;
        outln!(
            "{:>4}  {:<width$}  {:>6}  {:>8.2}  {:>7.2}%  {:>7.2}%  {:>7.2}%  {:>8.1}s  {:>6}  {}",
            i + 1,
            e.label(),
            e.items,
            b.overall_score,
            b.accuracy,
            b.exact_match,
            b.answer_rate,
            b.duration_s,
            e.run_id,
            e.created
        )?;
    }
    if !options.include_partial {
        outln!("  (full-phase runs only; --include-partial also shows runs over part of a phase)")?;
    }
    Ok(())
}

pub fn leaderboard_cmd(spec: &str, runs_dir: &Path, options: Options) -> anyhow::Result<()> {
    // A name that is no environment here still has a leaderboard if runs used it.
    let name = Environment::resolve(spec, &super::env_sources())
        .map(|e| e.manifest.name)
        .unwrap_or_else(|_| spec.to_string());
    print_leaderboard(&name, runs_dir, options)
}
