//! The library's error type. Every variant names the file (or item) it is about and, where the
//! fix is not obvious, how to fix it: these messages reach users unchanged.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A model checkpoint that cannot be used: missing file, bad config, unsupported architecture.
    #[error("model {origin}: {message}")]
    Model { origin: String, message: String },

    /// An environment (benchmark) that cannot be used.
    #[error("environment {origin}: {message}")]
    Environment { origin: String, message: String },

    /// A dataset file from the hub (`hf://datasets/…`) that cannot be had.
    #[error("dataset {origin}: {message}")]
    Dataset { origin: String, message: String },

    #[error("tokenizer {origin}: {message}")]
    Tokenizer { origin: String, message: String },

    /// A tensor operation failed; `context` says what was being computed.
    #[error("{context}: {source}")]
    Tensor {
        context: String,
        #[source]
        source: candle_core::Error,
    },

    #[error("device {device}: {message}")]
    Device { device: String, message: String },

    #[error("runs directory {}: {message}", path.display())]
    Runs { path: PathBuf, message: String },

    /// A run folder whose lock another process holds: the run is still going there.
    #[error(
        "run {run_id} is still running in another process; let it finish or stop it (Ctrl-C) before resuming"
    )]
    RunLocked { run_id: u64 },

    /// A line of a predictions file (a run's journal, `score --predictions`, a submission's
    /// `predictions.jsonl`) that cannot be read or is not a prediction.
    #[error("{origin}: line {line}: {source}")]
    PredictionsLine {
        /// The file, as named in messages.
        origin: String,
        /// 1-based.
        line: usize,
        #[source]
        source: LineError,
    },

    /// A submission archive that cannot be written or read.
    #[error("{}: {source}", path.display())]
    Submission {
        path: PathBuf,
        #[source]
        source: ArchiveError,
    },

    /// Saved predictions (`benchgen score`) that hold none.
    #[error("{origin}: no predictions")]
    NoPredictions {
        /// `predictions:PATH` or `submission:PATH`.
        origin: String,
    },

    /// A submission's prediction for an item the environment does not have.
    #[error("submission has a prediction for unknown item id \"{id}\"")]
    UnknownItem { id: String },

    /// A resumed run's journal holding a prediction for an item the environment does not have.
    #[error(
        "{}: the journal has a prediction for item id \"{id}\", which the environment does not have \
         (was the environment changed since the run started?)",
        journal.display()
    )]
    JournalUnknownItem { journal: PathBuf, id: String },

    /// An engine that finished without a prediction for an item.
    #[error("the engine returned nothing for item {item}")]
    EngineReturnedNothing { item: String },

    /// A multiple-choice item without choices to score.
    #[error("item {item} has no choices")]
    NoChoices { item: String },

    /// A multiple-choice prediction with a log-likelihood count other than the item's choices.
    #[error("item {item}: {logprobs} log-likelihoods for {choices} choices")]
    ChoiceCount { item: String, logprobs: usize, choices: usize },

    /// A prompt that cannot be rendered for an item.
    #[error(transparent)]
    Prompt(#[from] PromptError),

    /// A prompt longer than the model's context, with `--truncate error`.
    #[error(
        "item \"{item}\": prompt of {tokens} tokens does not fit the model's context of {context} tokens; \
         shorten the prompt template, use a model with a longer context, or pass \
         --truncate left to keep the prompt's last tokens"
    )]
    PromptTooLong { item: String, tokens: usize, context: usize },

    /// A log-likelihood request the in-process engine cannot score.
    #[error(transparent)]
    Loglik(#[from] LoglikError),

    /// A models registry file that is missing or bad (boxed: a TOML error is large).
    #[error(transparent)]
    Registry(Box<RegistryError>),

    /// An environment's scoring program that cannot be started.
    #[error(transparent)]
    Program(#[from] ProgramError),

    /// `--dtype q8_0` asked of a device or decoder other than the CPU host kernels.
    #[error(
        "--dtype q8_0 runs on the CPU host kernels only (device cpu, not the candle backend); use f32, bf16 or f16 there"
    )]
    Q8NeedsHost,

    /// A setting's value that cannot be used (as given on the command line or in a registry).
    #[error(transparent)]
    Setting(#[from] SettingError),

    /// A run that cannot be resumed or verified as asked.
    #[error(transparent)]
    Resume(#[from] ResumeError),

    /// Shard runs that do not make one evaluation (`benchgen merge`).
    #[error("cannot merge: {reason}")]
    Merge { reason: String },

    /// Ctrl-C or SIGTERM: the run stopped early on purpose and can be resumed.
    #[error("interrupted")]
    Interrupted,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("--dtype {given}: use auto, f32, bf16, f16, q8_0, stored or stored-exact")]
    UnknownDtype { given: String },
    #[error("--dtype {dtype} runs on the CPU only; use bf16 or f16 on {gpu}")]
    DtypeNeedsCpu { dtype: &'static str, gpu: &'static str },
    #[error("--limit 0 leaves nothing to evaluate")]
    ZeroLimit,
    #[error("{flag} {given}: the submission was made with {recorded} (its metadata.json says so); leave {flag} out to score it as it was made")]
    ContradictsSubmission { flag: &'static str, given: String, recorded: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("run {run_id} re-scored saved predictions (`benchgen score`); there is no model run to {purpose}")]
    NotAModelRun { run_id: u64, purpose: &'static str },
    #[error("run {run_id} was made by a benchgen that did not record its inputs, so there is nothing to {purpose} it from; start a new run")]
    InputsUnrecorded { run_id: u64, purpose: &'static str },
    #[error("run {run_id} cannot be resumed: the environment's generation settings changed (run: {run}; now: {now})")]
    GenerationChanged { run_id: u64, run: String, now: String },
    #[error("run {run_id} cannot be resumed with a different {flag}: the run has {run}, this command gives {given} (leave {flag} out to use the run's)")]
    Different { run_id: u64, flag: String, run: String, given: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub fn model(origin: impl std::fmt::Display, message: impl Into<String>) -> Self {
        Error::Model { origin: origin.to_string(), message: message.into() }
    }

    pub fn env(origin: impl std::fmt::Display, message: impl Into<String>) -> Self {
        Error::Environment { origin: origin.to_string(), message: message.into() }
    }

    pub fn dataset(origin: impl std::fmt::Display, message: impl Into<String>) -> Self {
        Error::Dataset { origin: origin.to_string(), message: message.into() }
    }
}

/// Why a line of a predictions file is not a prediction.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Why a submission archive cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Zip(#[from] zip::result::ZipError),
    /// A prediction or the metadata that does not serialize.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The archive lacks a file it must have at its root.
    #[error("no {name} at the archive root")]
    Missing {
        name: &'static str,
        #[source]
        source: zip::result::ZipError,
    },
}

/// A prompt that cannot be rendered for an item.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A template the prompt builder compiled itself that it cannot find (a bug).
    #[error("{source}")]
    NoTemplate {
        name: &'static str,
        #[source]
        source: minijinja::Error,
    },
    /// The environment's `choice` template, for one option of an item.
    #[error("item {item}: cannot render the choice template: {source}")]
    Choice {
        item: String,
        #[source]
        source: minijinja::Error,
    },
    /// The model's chat template (`model::chat::ChatTemplateError`), for an item's conversation.
    #[error("item {item}: {source}")]
    Chat {
        item: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A log-likelihood request the in-process engine cannot score. `item` is the request's index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoglikError {
    #[error("empty context needs a BOS or EOS token, and the tokenizer has neither")]
    NoBosOrEos,
    #[error("item {item}: the continuation encodes to no tokens")]
    EmptyContinuation { item: usize },
    /// Context and continuation longer than the model's context (`excess` tokens), and not
    /// shortened: `--truncate error` (`truncate_hint`), or the continuation alone too long.
    #[error(
        "item {item}: context and continuation take {tokens} tokens, more than the model's context of {context}{}",
        if *truncate_hint { "; pass --truncate left to keep the context's last tokens" } else { "" }
    )]
    TooLong { item: usize, tokens: usize, context: usize, truncate_hint: bool },
    /// The forward pass gave another number of rows than the continuation has tokens (a bug).
    #[error("item {item}: {rows} logit rows for {tokens} continuation tokens")]
    RowCount { item: usize, rows: usize, tokens: usize },
    #[error(
        "token id {token} is outside the model's vocabulary of {vocab}: the tokenizer does not match the model"
    )]
    TokenOutsideVocabulary { token: u32, vocab: usize },
}

/// A models registry file (`--models-file`, `BENCHGEN_MODELS`, the config dir's) that is
/// missing or bad.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "models registry {} does not exist (given by --models-file or BENCHGEN_MODELS)",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("models registry {}: {problem}", path.display())]
    Bad {
        path: PathBuf,
        #[source]
        problem: RegistryProblem,
    },
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Error::Registry(Box::new(e))
    }
}

/// What is wrong in a models registry file.
#[derive(Debug, thiserror::Error)]
pub enum RegistryProblem {
    /// Not TOML, or not the registry's fields (the message is the toml crate's).
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error("[models.{alias}] dtype = {dtype:?}: expected one of {expected}")]
    Dtype { alias: String, dtype: String, expected: String },
    /// `source` is not a model spec.
    #[error("[models.{alias}] source: {source}")]
    Source {
        alias: String,
        #[source]
        source: Box<Error>,
    },
    /// `source` and `revision` that do not go together.
    #[error(transparent)]
    Entry(Box<Error>),
}

/// An environment's scoring program that cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("scoring program: empty command")]
    EmptyCommand,
    #[error("scoring program: cannot start `{program}`: {source} (is it installed and on PATH?)")]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Attaches what was being computed to a candle error.
pub trait TensorContext<T> {
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|source| Error::Tensor { context: context.to_string(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_loglik_request_hints_at_truncation_only_when_it_would_help() {
        let e = |truncate_hint| {
            Error::from(LoglikError::TooLong { item: 3, tokens: 600, context: 512, truncate_hint })
                .to_string()
        };
        assert_eq!(
            e(true),
            "item 3: context and continuation take 600 tokens, more than the model's context of 512; pass --truncate left to keep the context's last tokens"
        );
        assert_eq!(
            e(false),
            "item 3: context and continuation take 600 tokens, more than the model's context of 512"
        );
    }

    #[test]
    fn wrapped_kinds_read_as_their_own_messages_and_keep_their_causes() {
        let start = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = Error::from(ProgramError::Start { program: "py".into(), source: start });
        assert_eq!(
            e.to_string(),
            format!(
                "scoring program: cannot start `py`: {} (is it installed and on PATH?)",
                std::io::Error::from(std::io::ErrorKind::NotFound)
            )
        );
        let cause = std::error::Error::source(&e).expect("the io error");
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(
            Error::from(ProgramError::EmptyCommand).to_string(),
            "scoring program: empty command"
        );
    }
}
