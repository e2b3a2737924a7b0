//! The command line (design doc §1). Each subcommand is a thin adapter over the library.

// Commands print through these instead of `println!`, which panics when the reader has gone
// (`benchgen runs list | head -1`); the error they return ends the command quietly (main).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod env;
mod eval;
mod generate;
mod models;
mod numeric;
mod runs;
mod score;
mod serve;
mod template;
mod tokenize;
mod verify;

use std::path::PathBuf;
use std::sync::OnceLock;

use benchgen::device::{DeviceSpec, DtypeSpec};
use benchgen::env::EnvSources;
use benchgen::eval::RUNS_DIR;
use benchgen::generation::Truncate;
use benchgen::model::spec::SourceOptions;
use benchgen::model::KvDtype;
use benchgen::settings::{Settings, ShardChoice};
use benchgen::vars::ProcessVars;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, Parser, Subcommand};

/// The process's variables, read once (the first call, at start) and kept: the library reads
/// none itself, the commands hand it what they need of these.
pub fn vars() -> &'static ProcessVars {
    static VARS: OnceLock<ProcessVars> = OnceLock::new();
    VARS.get_or_init(ProcessVars::from_process)
}

/// Where environments and their data are found: `$BENCHGEN_ENVS`, `$BENCHGEN_DATA_DIR`, the hub.
pub fn env_sources() -> EnvSources {
    EnvSources::from_vars(vars())
}

/// Where a command's live log goes, and whether that is a terminal: with `--json`, stdout
/// carries only the JSON, so the log moves to stderr.
fn console(json: bool) -> (Box<dyn std::io::Write + Send>, bool) {
    use std::io::IsTerminal;
    if json {
        (Box::new(std::io::stderr()), std::io::stderr().is_terminal())
    } else {
        (Box::new(std::io::stdout()), std::io::stdout().is_terminal())
    }
}

/// `--truncate`: one of [`Truncate::NAMES`], typed.
fn truncate_parser() -> impl TypedValueParser<Value = Truncate> {
    PossibleValuesParser::new(Truncate::NAMES)
        .map(|s| Truncate::parse(&s).expect("the parser admits only Truncate::NAMES"))
}

/// `--dtype`: one of [`DtypeSpec::NAMES`], typed.
fn dtype_parser() -> impl TypedValueParser<Value = DtypeSpec> {
    PossibleValuesParser::new(DtypeSpec::NAMES)
        .map(|s| s.parse().expect("the parser admits only DtypeSpec::NAMES"))
}

/// `--kv-dtype`: one of [`KvDtype::NAMES`], typed.
fn kv_dtype_parser() -> impl TypedValueParser<Value = KvDtype> {
    PossibleValuesParser::new(KvDtype::NAMES)
        .map(|s| KvDtype::parse(&s).expect("the parser admits only KvDtype::NAMES"))
}

/// The command line, with `eval`'s defaults (its flags are optional, so that `--resume` can tell
/// a flag given from one left out) shown in its help from [`Settings::default`], as
/// `generate`'s are by clap.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("eval", |mut eval| {
        for (id, value) in Settings::shown_defaults() {
            eval = eval.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {value}]"))
            });
        }
        eval
    })
}

#[derive(Parser)]
#[command(
    name = "benchgen",
    version,
    about = "Evaluate language models on benchmarks locally, in-process"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a model on an environment and write the run's files (defaults: the embedded ones).
    Eval(EvalArgs),
    /// Complete prompts with any model (quick checks outside an environment).
    Generate(GenerateArgs),
    /// Re-score saved predictions against an environment, without a model, as a new run.
    Score(ScoreArgs),
    /// Show the token ids (and pieces) a model's tokenizer gives for a text; only the tokenizer
    /// is loaded.
    Tokenize(TokenizeArgs),
    /// Chat templates: render one as transformers renders it, without a model.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Environments: list them, show one (Overview, Phases, Leaderboard), validate one.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Rank the models evaluated on an environment (best Overall Score per model).
    Leaderboard {
        /// Environment: path, .zip or name
        env: String,
        /// Also rank runs over part of the phase (a --limit that cut items, or a shard)
        #[arg(long)]
        include_partial: bool,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Re-run a run from its run.json and compare every item and the score with what it recorded.
    Verify {
        #[arg(value_parser = numeric::whole, allow_negative_numbers = true)]
        run_id: u64,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        /// Let the re-run execute the environment's own scoring program (not replayed from the run)
        #[arg(long)]
        allow_scoring_program: bool,
    },
    /// Make the shards of one evaluation (`eval --shard K/N`) into one run, as if it had run whole.
    Merge(MergeArgs),
    /// The Evaluations tab: list and inspect runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// The model picker: registry aliases, cached HF models, trained checkpoints, endpoints.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// The platform's pages in a browser: environments, Evaluate, runs with their live log and
    /// files
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, default_value = RUNS_DIR)]
    pub runs_dir: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Allow an address other than loopback; the pages have no authentication
    #[arg(long)]
    pub allow_remote: bool,
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Let evaluations started from the pages run an environment's own scoring program
    #[arg(long)]
    pub allow_scoring_program: bool,
}

/// Where models come from: offline mode and the models registry.
#[derive(Args, Clone)]
pub struct SourceArgs {
    /// Use the HuggingFace cache only, never the network (also HF_HUB_OFFLINE=1)
    #[arg(long)]
    pub offline: bool,
    /// Models registry for platform:ALIAS [default: $BENCHGEN_MODELS, else
    /// ~/.config/benchgen/models.toml]
    #[arg(long, value_name = "FILE")]
    pub models_file: Option<PathBuf>,
}

impl SourceArgs {
    pub fn options(&self) -> SourceOptions {
        use std::io::IsTerminal;
        let mut o = SourceOptions::from_vars(vars());
        o.offline |= self.offline;
        if let Some(f) = &self.models_file {
            o.models_file = Some(f.clone());
        }
        o.progress = std::io::stderr().is_terminal();
        o
    }
}

#[derive(Args)]
pub struct MergeArgs {
    /// The shard runs, one per shard
    #[arg(
        value_name = "RUN_ID",
        required_unless_present = "group",
        conflicts_with = "group",
        value_parser = numeric::whole,
        allow_negative_numbers = true
    )]
    pub runs: Vec<u64>,
    /// Every Completed run of this group (`eval --shard` prints it)
    #[arg(long)]
    pub group: Option<String>,
    /// Run the environment's own scoring program ([scoring.program]), if it has one
    #[arg(long)]
    pub allow_scoring_program: bool,
    #[arg(long, default_value = RUNS_DIR)]
    pub runs_dir: PathBuf,
    /// Print the score breakdown as JSON on stdout (the log goes to stderr)
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Models by source, like the platform's model picker: Platform Models (registry aliases),
    /// Running (endpoints in the registry), Trained ($BENCHGEN_TRAINED_DIR, default ./checkpoints)
    /// and HuggingFace (the HF cache)
    List {
        #[command(flatten)]
        sources: SourceArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct EvalArgs {
    /// Environment: a directory, a .zip, or a name from `benchgen env list` [default: arithmetic]
    #[arg(long)]
    pub env: Option<PathBuf>,
    /// Model: hf:ORG/NAME[@REV], trained:PATH or a plain path (checkpoint folder, LoRA adapter,
    /// .gguf), platform:ALIAS, running:URL[#NAME], or `embedded` [default: embedded]
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Phase to evaluate [default: the environment's first phase]
    #[arg(long)]
    pub phase: Option<String>,
    /// cpu, cuda, cuda:N or metal
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// auto: a GGUF file's types as stored on the CPU, products on int8 activations as
    /// llama.cpp's, else f32 on CPU and bf16 on GPUs; stored-exact: a GGUF's weights on f32
    /// activations; q8_0: 8-bit weights, CPU only
    #[arg(long, value_parser = dtype_parser())]
    pub dtype: Option<DtypeSpec>,
    /// Sequences decoded together (continuous batching)
    #[arg(long, value_parser = numeric::count, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,
    /// Evaluate only the first N items
    #[arg(long, value_parser = numeric::count, allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// Seed for sampled decoding (each item's stream depends on this and its id only)
    #[arg(long, value_parser = numeric::whole, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// A prompt longer than the model's context: `error` refuses the item, `left` keeps its last
    /// tokens that fit (context − max_new_tokens) and records how many were dropped
    #[arg(long, value_parser = truncate_parser())]
    pub truncate: Option<Truncate>,
    /// How the KV cache stores keys and values on the CPU host path: `f32` (exact), `bf16`
    /// (half the cache memory; attention reads keys and values rounded to bf16) or `int8` (a byte
    /// a value and an f32 scale per position and KV head)
    #[arg(long, value_parser = kv_dtype_parser())]
    pub kv_dtype: Option<KvDtype>,
    /// Most memory the running sequences' KV caches may take, e.g. 600MB or 2GiB: a sequence
    /// joins the batch only when its whole cache (prompt and max new tokens) fits, so the
    /// caches stay under it whatever --batch-size is; outputs do not change [default: no bound]
    #[arg(long, value_name = "SIZE", value_parser = numeric::bytes)]
    pub kv_budget: Option<u64>,
    /// Evaluate only shard K of N (counting from 0): the items i with i mod N = K, after
    /// --limit. `auto` reads a Slurm job array's or a Kubernetes Indexed Job's variables
    /// (JOB_COMPLETION_INDEX, with N from BENCHGEN_SHARDS)
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<ShardChoice>,
    /// The evaluation a shard belongs to, for `merge` [default: the environment, phase and a
    /// hash of the other settings]
    #[arg(long, requires = "shard")]
    pub group: Option<String>,
    /// Continue run RUN_ID (crashed, killed or interrupted) with only its missing items; its
    /// settings come from its run.json, and flags given again must match them
    #[arg(long, value_name = "RUN_ID", value_parser = numeric::whole, allow_negative_numbers = true)]
    pub resume: Option<u64>,
    /// Run the environment's own scoring program ([scoring.program]), if it has one: code that
    /// came with the environment, run with your permissions under a time limit
    #[arg(long)]
    pub allow_scoring_program: bool,
    #[arg(long, default_value = RUNS_DIR)]
    pub runs_dir: PathBuf,
    /// Print the score breakdown as JSON on stdout (the live log goes to stderr)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Model: hf:ORG/NAME[@REV], trained:PATH or a plain path (checkpoint folder, LoRA adapter,
    /// .gguf), platform:ALIAS, running:URL[#NAME], or `embedded` [default: embedded]
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
    /// One prompt
    #[arg(long, conflicts_with = "prompts")]
    pub prompt: Option<String>,
    /// A JSONL file of {"id", "prompt"} lines
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    #[arg(long, default_value_t = 64, value_parser = numeric::count, allow_negative_numbers = true)]
    pub max_new_tokens: usize,
    /// Stop string (repeatable); cut from the output
    #[arg(long)]
    pub stop: Vec<String>,
    /// 0 is greedy
    #[arg(long, default_value_t = 0.0, value_parser = numeric::temperature, allow_negative_numbers = true)]
    pub temperature: f64,
    #[arg(long, default_value_t = Settings::default().seed, value_parser = numeric::whole, allow_negative_numbers = true)]
    pub seed: u64,
    #[arg(long, default_value_t = Settings::default().batch_size, value_parser = numeric::count, allow_negative_numbers = true)]
    pub batch_size: usize,
    /// Wrap each prompt as a user turn in the model's chat template
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = Settings::default().device)]
    pub device: DeviceSpec,
    /// auto, f32, bf16, f16, q8_0, stored or stored-exact (auto: a GGUF file's types as stored
    /// on the CPU, products on int8 activations as llama.cpp's; stored-exact: on f32
    /// activations; q8_0: 8-bit weights, CPU only)
    #[arg(long, default_value_t = Settings::default().dtype, value_parser = dtype_parser())]
    pub dtype: DtypeSpec,
    /// How the KV cache stores keys and values on the CPU host path: f32 (exact), bf16 (half the
    /// cache memory) or int8 (a byte a value and an f32 scale per position and KV head)
    #[arg(long, default_value = Settings::default().kv_dtype.name(), value_parser = kv_dtype_parser())]
    pub kv_dtype: KvDtype,
    /// Most memory the running sequences' KV caches may take, e.g. 600MB or 2GiB (see `eval
    /// --help`) [default: no bound]
    #[arg(long, value_name = "SIZE", value_parser = numeric::bytes)]
    pub kv_budget: Option<u64>,
    /// One JSON object per prompt: id, prompt, text, token_ids, finish_reason
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TokenizeArgs {
    /// Model: a checkpoint folder (its tokenizer.json), a .gguf file (its embedded vocabulary;
    /// vocabulary-only files too), hf:ORG/NAME[@REV], platform:ALIAS or `embedded`
    /// [default: embedded]
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Text to tokenize (repeatable: each is tokenized on its own)
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub text: Vec<String>,
    /// File whose whole content, byte for byte, is one text (repeatable)
    #[arg(long)]
    pub file: Vec<PathBuf>,
    /// Add the special tokens the model adds to a prompt (BOS, and EOS or SEP for some)
    #[arg(long)]
    pub add_special: bool,
    /// Tokenize the text of special tokens (`<s>`, `<|im_end|>`, …) like any other text instead
    /// of as those tokens (llama.cpp's parse_special = false); user-defined added tokens are
    /// still matched
    #[arg(long)]
    pub no_parse_special: bool,
    /// One JSON object per text: {"ids": [...], "pieces": [...]}
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Print the text a Jinja chat template gives for a conversation, exactly as transformers'
    /// apply_chat_template(..., tokenize=False) gives it (no newline added)
    Render(TemplateRenderArgs),
}

#[derive(Args)]
pub struct TemplateRenderArgs {
    /// The template: a .jinja file (e.g. a model's chat_template.jinja)
    pub template: PathBuf,
    /// JSON list of messages ({"role", "content", ...}); every field is passed to the template
    #[arg(long, value_name = "FILE.json")]
    pub messages: PathBuf,
    /// JSON list of tool schemas, the template's `tools`
    #[arg(long, value_name = "FILE.json")]
    pub tools: Option<PathBuf>,
    /// Leave out the assistant header that asks for a reply (add_generation_prompt=False)
    #[arg(long)]
    pub no_generation_prompt: bool,
    /// An extra template variable (repeatable): bos_token=<s>, enable_thinking=false; VALUE is
    /// read as JSON when it parses as JSON, else taken as a string
    #[arg(long, value_name = "NAME=VALUE", value_parser = template::var_arg)]
    pub var: Vec<(String, String)>,
}

#[derive(Args)]
pub struct ScoreArgs {
    /// Environment directory or .zip [default: the embedded arithmetic environment]
    #[arg(long)]
    pub env: Option<PathBuf>,
    #[arg(long)]
    pub phase: Option<String>,
    /// A JSONL file of {"id", "prediction"} lines (ids as in a run)
    #[arg(long, conflicts_with = "submission", required_unless_present = "submission")]
    pub predictions: Option<PathBuf>,
    /// A submission archive with predictions.jsonl at its root
    #[arg(long)]
    pub submission: Option<PathBuf>,
    /// Score only the first N items (as `eval --limit N` ran them); others count as unanswered
    #[arg(long, value_parser = numeric::count, allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// Run the environment's own scoring program ([scoring.program]), if it has one: code that
    /// came with the environment, run with your permissions under a time limit
    #[arg(long)]
    pub allow_scoring_program: bool,
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Print the score breakdown as JSON on stdout (the log goes to stderr)
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum EnvCommand {
    /// Environments reachable by name: shipped ones and those in $BENCHGEN_ENVS directories
    List,
    /// Overview (README), phases with item counts, scoring, and the local leaderboard
    Show {
        env: String,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Check a manifest and its data; report every problem with file and line
    Validate { env: String },
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// One line per run: id, status, model, environment, created, Overall Score
    List {
        /// Only runs of this environment (its name)
        #[arg(long)]
        env: Option<String>,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// A run's record, score breakdown and files
    Show {
        #[arg(value_parser = numeric::whole, allow_negative_numbers = true)]
        run_id: u64,
        /// Print the generated fine-tune dataset instead
        #[arg(long)]
        finetune: bool,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Remove runs (their whole folders); a run still going in another process is refused
    Rm {
        #[arg(required = true, value_parser = numeric::whole, allow_negative_numbers = true)]
        run_ids: Vec<u64>,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Eval(args) => eval::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Score(args) => score::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Verify { run_id, runs_dir, allow_scoring_program } => {
            verify::run(run_id, runs_dir, allow_scoring_program)
        }
        Command::Template(TemplateCommand::Render(args)) => template::render(args),
        Command::Env(EnvCommand::List) => env::list(),
        Command::Env(EnvCommand::Show { env, runs_dir }) => env::show(&env, &runs_dir),
        Command::Env(EnvCommand::Validate { env }) => env::validate(&env),
        Command::Leaderboard { env, include_partial, runs_dir } => {
            let options = benchgen::leaderboard::Options { include_partial };
            env::leaderboard_cmd(&env, &runs_dir, options)
        }
        Command::Merge(args) => eval::merge(args),
        Command::Runs(RunsCommand::List { env, runs_dir }) => runs::list(&runs_dir, env.as_deref()),
        Command::Runs(RunsCommand::Rm { run_ids, runs_dir }) => runs::remove(&runs_dir, &run_ids),
        Command::Runs(RunsCommand::Show { run_id, finetune, runs_dir }) => {
            runs::show(&runs_dir, run_id, finetune)
        }
        Command::Models(ModelsCommand::List { sources, json }) => models::list(&sources, json),
        Command::Serve(args) => serve::run(args),
    }
}
