//! The engine turns prompts into completions. The rest of the pipeline only sees the
//! [`Generator`] trait, so backends (a local candle model, an OpenAI-compatible server) plug
//! in without touching it.

mod local;
mod loglik;
mod packed;
pub mod remote;
pub mod sampling;
mod stop;

pub use local::LocalEngine;
pub use loglik::{split_pair, LoglikOutput, LoglikRequest};
pub use packed::{for_device, PackedEngine, StepFactory};
pub use stop::{find_stop, stop_in_tail};

pub use crate::generation::{GenParams, Truncate};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::chat::Message;

#[derive(Debug, Clone)]
pub struct GenRequest {
    /// The caller's key; results come back tagged with it, in completion order.
    pub index: usize,
    /// The item's id, for messages.
    pub id: String,
    pub prompt: String,
    /// False when a chat template already put BOS and friends into `prompt`.
    pub add_special_tokens: bool,
    pub params: GenParams,
    /// Seeds this item's sampling alone, so its output does not depend on its batch-mates.
    pub seed: u64,
    /// A prompt longer than the context: refused, or cut from the left.
    pub truncate: Truncate,
    /// The conversation, for backends that apply a chat template themselves (a server's
    /// `/v1/chat/completions`); `prompt` is then its plain-text form, for the record. A local
    /// model only reads `prompt`.
    pub messages: Option<Vec<Message>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model emitted an end-of-sequence token.
    Eos,
    /// A stop string appeared; it is cut from the text.
    Stop,
    /// `max_new_tokens` (or the model's context) was reached.
    Length,
    /// Multiple choice: the options were scored, nothing was generated.
    Loglikelihood,
}

#[derive(Debug, Clone)]
pub struct GenOutput {
    pub index: usize,
    pub text: String,
    /// Empty when the backend does not expose token ids (a server).
    pub token_ids: Vec<u32>,
    pub tokens_in: usize,
    pub tokens_out: usize,
    /// Prompt tokens dropped from the left to fit the context (`--truncate left`).
    pub tokens_dropped: usize,
    pub finish_reason: FinishReason,
}

impl GenOutput {
    /// What a request for no new tokens gets: nothing, its budget spent.
    pub fn nothing(index: usize, tokens_in: usize) -> Self {
        GenOutput {
            index,
            text: String::new(),
            token_ids: Vec::new(),
            tokens_in,
            tokens_out: 0,
            tokens_dropped: 0,
            finish_reason: FinishReason::Length,
        }
    }
}

/// Anything that completes prompts in batches.
pub trait Generator {
    /// Completes every request, calling `on_done` as each one finishes (not in request order).
    fn generate(
        &mut self,
        requests: Vec<GenRequest>,
        on_done: &mut dyn FnMut(GenOutput) -> Result<()>,
    ) -> Result<()>;

    /// Scores continuations (multiple choice), calling `on_done` as each is scored.
    fn loglikelihood(
        &mut self,
        requests: Vec<LoglikRequest>,
        on_done: &mut dyn FnMut(LoglikOutput) -> Result<()>,
    ) -> Result<()>;

    /// Bytes the model's weights hold in this process, when it holds and knows them.
    fn weights_bytes(&self) -> Option<usize> {
        None
    }

    /// The most bytes the KV caches of live sequences stored at once so far (a shared prefix
    /// counted once), when this process keeps them.
    fn kv_cache_peak_bytes(&self) -> Option<usize> {
        None
    }

    /// What the engine holds on a GPU, when it keeps the model there itself.
    fn device_memory(&self) -> Option<crate::run::memory::DeviceMemory> {
        None
    }
}
