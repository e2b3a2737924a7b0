//! Model layer: checkpoints, configs, tokenizers and the decoder itself.

pub mod checkpoint;
pub mod config;
pub mod llama;
pub mod spec;
pub mod tokenizer;

pub use checkpoint::{Checkpoint, LoadedModel};
pub use config::LlamaConfig;
pub use llama::{Llama, SeqCache, Segment};
pub use tokenizer::TextTokenizer;
