//! benchgen: evaluate language models on benchmarks locally, in-process.
//!
//! Data flows one way: [`env`] → [`prompt`] → [`engine`] → [`run`] (journal, submission) →
//! [`score`] → [`report`]. [`eval`] wires the stages; The command line lives in the binary (`src/main.rs`, `src/cli/`).

// The library speaks through `log::RunLog`; stdout belongs to the binary.
#![deny(clippy::print_stdout)]

pub mod device;
pub mod engine;
pub mod env;
pub mod error;
pub mod eval;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod generation;
pub mod hash;
pub mod hub;
pub mod interrupt;
pub mod kernels;
pub mod leaderboard;
pub mod log;
pub mod model;
pub mod prompt;
pub mod pyrandom;
pub mod report;
pub mod rng;
pub mod run;
pub mod score;
pub mod serve;
pub mod settings;
pub mod vars;

pub use error::{Error, Result};
