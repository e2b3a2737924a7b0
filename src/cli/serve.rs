//! `benchgen serve`: the web app, on loopback unless told otherwise.

use std::io::Write;

use benchgen::serve::{Config, Launcher};

use super::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let sources = args.sources.options();
    let config = Config {
        addr: args.addr,
        allow_remote: args.allow_remote,
        runs_dir: args.runs_dir.clone(),
        trained_dir: benchgen::model::listing::trained_dir(super::vars()),
        sources,
        env_sources: super::env_sources(),
        launcher: Launcher {
            program: std::env::current_exe()?,
            models_file: args.sources.models_file.clone(),
            offline: args.sources.offline,
            allow_scoring_program: args.allow_scoring_program,
        },
    };
    if args.allow_remote && !args.addr.ip().is_loopback() {
        eprintln!(
            "warning: serving on {} with no authentication: anyone who can reach it can see every \
             run and start evaluations with your permissions",
            args.addr
        );
    }
    let runs_dir = args.runs_dir.display().to_string();
    benchgen::serve::serve(config, |addr| {
        let _ = outln!("benchgen serve: http://{addr}/ (runs in {runs_dir}; Ctrl-C to stop)");
        // Scripts and tests read the address, chosen by the system for port 0, from this line.
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}
