//! The default environment and model, compiled into the binary so `benchgen eval` works with no
//! network and from any directory. Both are ordinary HF-layout / environment files under
//! `fixtures/embedded/`, made by `cargo run --release --example train_fixture`.

use crate::model::checkpoint::{Checkpoint, Weights};

pub const ENV_ORIGIN: &str = "embedded:arithmetic";
pub const MODEL_ORIGIN: &str = "embedded:arithmetic-llama";

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/embedded/", $path))
    };
}

/// An environment's files by relative path.
pub type EnvFileList = &'static [(&'static str, &'static [u8])];

pub static ENV_FILES: EnvFileList = &[
    ("environment.toml", fixture!("env/environment.toml")),
    ("README.md", fixture!("env/README.md")),
    ("data/test.jsonl", fixture!("env/data/test.jsonl")),
];

macro_rules! shipped_env {
    ($name:literal) => {
        (
            $name,
            &[
                (
                    "environment.toml",
                    include_bytes!(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/environments/",
                        $name,
                        "/environment.toml"
                    )) as &[u8],
                ),
                (
                    "README.md",
                    include_bytes!(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/environments/",
                        $name,
                        "/README.md"
                    )) as &[u8],
                ),
            ],
        )
    };
}

/// Environments that ship with benchgen, usable by name (`--env arc-easy`) from anywhere. Their
/// official data is read from `$BENCHGEN_DATA_DIR`; only manifests and Overviews are embedded.
pub static SHIPPED_ENVS: &[(&str, EnvFileList)] = &[
    ("arithmetic", ENV_FILES),
    shipped_env!("arc-easy"),
    shipped_env!("arc-challenge"),
    shipped_env!("arc-easy-gen"),
    shipped_env!("arc-challenge-gen"),
    shipped_env!("mmlu"),
    shipped_env!("mmlu-gen"),
    shipped_env!("truthfulqa-mc1"),
    shipped_env!("triviaqa"),
    shipped_env!("math500"),
    shipped_env!("gsm8k"),
];

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
        weights: Weights::Static(WEIGHTS),
        lora: None,
    }
}
