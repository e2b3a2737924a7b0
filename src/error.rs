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

    #[error("{0}")]
    Invalid(String),

    /// Ctrl-C or SIGTERM: the run stopped early on purpose and can be resumed.
    #[error("interrupted")]
    Interrupted,
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

/// Attaches what was being computed to a candle error.
pub trait TensorContext<T> {
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|source| Error::Tensor { context: context.to_string(), source })
    }
}
