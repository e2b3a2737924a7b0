//! Model layer: checkpoints, configs, tokenizers and the decoder itself.

pub mod chat;
pub mod checkpoint;
pub mod config;
mod candle_decoder;
pub mod decoder;
pub mod gguf;
pub mod gguf_tokenizer;
mod host;
pub mod hub;
pub mod listing;
pub mod lora;
mod rope;
pub mod random;
pub mod registry;
pub mod safetensors;
pub mod spec;
pub mod tokenizer;

pub use checkpoint::{Checkpoint, LoadedModel};
pub use config::ModelConfig;
pub use decoder::{Backend, Decoder, KvDtype, SeqCache, Segment, SharedCache};
pub use tokenizer::TextTokenizer;
