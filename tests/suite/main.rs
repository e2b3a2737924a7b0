//! The integration tests, one binary (one link of the library instead of one per file): each
//! module runs the real `benchgen` binary or the library as a user would. `common` holds the
//! command builder, fake hub and OpenAI-compatible servers and decode helpers they share.
//! (`tests/isa_equivalence.rs` stays a binary of its own: it switches the process-wide kernel
//! family.)

mod common;

mod bad_inputs;
mod batch_invariance;
mod chat_templates;
mod cli_help;
mod closed_stdout;
mod env_cli;
mod eval_choice;
mod eval_embedded;
mod eval_fewshot;
mod eval_fixture_env;
mod eval_memory;
mod eval_resume;
mod families_cli;
mod generate_cli;
mod gguf;
mod gguf_families;
mod hf_datasets;
mod hub;
mod hub_layouts;
mod lora;
mod model_goldens;
mod models_cli;
mod pre_run_checks;
mod running;
mod score_benchmarks;
mod score_cli;
mod score_gsm8k;
mod scoring_program;
mod serve_browser;
mod serve_http;
mod shards;
mod template_goldens;
mod tokenize_cli;
mod tokenize_corpus;
mod verify_cli;
