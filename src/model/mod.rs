//! Model layer: checkpoints, configs, tokenizers and the decoder itself.

mod candle_decoder;
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod decoder;
pub mod embedded;
pub mod family;
pub mod gguf;
mod gguf_names;
pub mod gguf_tokenizer;
pub mod gpu;
mod host;
pub mod listing;
pub mod lora;
mod names;
pub mod random;
pub mod registry;
mod rope;
pub mod safetensors;
pub mod spec;
pub mod tokenizer;

pub use checkpoint::{Checkpoint, LoadedModel};
pub use config::ModelConfig;
pub use decoder::{Backend, Decoder, KvDtype, Segment, SeqCache, SharedCache};
pub use host::MatrixFormat;
pub use tokenizer::TextTokenizer;
