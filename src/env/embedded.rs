//! The default environment (and the shipped ones' manifests), compiled into the binary so
//! `benchgen eval` works with no network and from any directory. They are ordinary environment
//! folders under `fixtures/embedded/` (the default one made with the embedded model by `cargo run
//! --release --example train_fixture`; see `model::embedded`).

pub const ENV_ORIGIN: &str = "embedded:arithmetic";

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
