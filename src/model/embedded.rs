//! The default model, compiled into the binary so `benchgen eval` works with no network and from
//! any directory: an ordinary HF-layout checkpoint under `fixtures/embedded/model`, made by `cargo
//! run --release --example train_fixture` (with the default environment, `env::embedded`).

use super::checkpoint::{Checkpoint, WeightFiles};

pub const MODEL_ORIGIN: &str = "embedded:arithmetic-llama";

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/embedded/", $path))
    };
}

static CONFIG: &[u8] = fixture!("model/config.json");
static WEIGHTS: &[u8] = fixture!("model/model.safetensors");
static TOKENIZER: &[u8] = fixture!("model/tokenizer.json");
static TOKENIZER_CONFIG: &[u8] = fixture!("model/tokenizer_config.json");
static GENERATION_CONFIG: &[u8] = fixture!("model/generation_config.json");

fn text(bytes: &'static [u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The embedded model as a checkpoint, loaded by the same code as any checkpoint directory.
pub fn model_checkpoint() -> Checkpoint {
    Checkpoint {
        origin: MODEL_ORIGIN.to_string(),
        config_json: text(CONFIG),
        tokenizer_json: TOKENIZER.to_vec(),
        tokenizer_config_json: Some(text(TOKENIZER_CONFIG)),
        generation_config_json: Some(text(GENERATION_CONFIG)),
        chat_template_jinja: None,
        weights: WeightFiles::Static(WEIGHTS),
        lora: None,
    }
}
