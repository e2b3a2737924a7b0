//! Which engine a run's items go to (a checkpoint loaded in-process, or a running
//! OpenAI-compatible server) and the prompts in the form each one takes.

use super::Stages;
use crate::engine::remote::RemoteEngine;
use crate::engine::{Generator, LocalEngine};
use crate::env::{ChatMode, Item};
use crate::error::{Error, Result};
use crate::log::RunLog;
use crate::model::chat::Message;
use crate::model::checkpoint::Checkpoint;
use crate::model::spec::{Endpoint, ModelSource};
use crate::model::LoadedModel;
use crate::prompt::{Prompt, PromptBuilder};
use crate::run::RunRecord;

pub(super) struct Prepared {
    pub engine: Box<dyn Generator>,
    pub prompts: Vec<Prompt>,
    /// Per item, the conversation for a server's chat endpoint (`chat = true` over a server).
    pub messages: Option<Vec<Vec<Message>>>,
}

/// A run's items with their positions in the phase (a shard holds every Nth item), which
/// prompts are rendered by.
#[derive(Clone, Copy)]
pub(super) struct Positioned<'a> {
    items: &'a [Item],
    positions: &'a [usize],
}

impl Positioned<'_> {
    fn map<T>(self, f: impl Fn(usize, &Item) -> Result<T>) -> Result<Vec<T>> {
        self.positions.iter().zip(self.items).map(|(&p, it)| f(p, it)).collect()
    }
}

impl Stages<'_> {
    /// Loads or connects to the model, records it in `run.json`, and renders every prompt.
    pub(super) fn prepare_engine(
        &self,
        source: ModelSource,
        record: &mut RunRecord,
        builder: &PromptBuilder,
        items: &[Item],
        positions: &[usize],
        log: &mut RunLog,
    ) -> Result<Prepared> {
        let items = Positioned { items, positions };
        match source {
            ModelSource::Local(checkpoint) => self.local(*checkpoint, record, builder, items, log),
            ModelSource::Endpoint(endpoint) => self.remote(&endpoint, record, builder, items, log),
        }
    }

    fn local(
        &self,
        checkpoint: Checkpoint,
        record: &mut RunRecord,
        builder: &PromptBuilder,
        items: Positioned,
        log: &mut RunLog,
    ) -> Result<Prepared> {
        let hashes = checkpoint.file_hashes()?;
        if !record.model.files.is_empty() && record.model.files != hashes {
            return Err(Error::model(
                &checkpoint.origin,
                format!(
                    "its files changed since run {} started (recorded {:?}, now {:?})",
                    record.run_id, record.model.files, hashes
                ),
            ));
        }
        record.model.files = hashes;
        let model = LoadedModel::load_for_inference(
            &checkpoint,
            &self.device,
            self.weights,
            self.settings.kv_dtype,
        )?;
        record.model.origin = model.origin.clone();
        record.model.parameters = Some(model.num_parameters);
        self.run_dir.write_record(record)?;
        log.line(format!(
            "Model loaded: {} parameters, device {}, dtype {}{}",
            model.num_parameters,
            self.settings.device,
            self.weights.name(),
            if self.settings.kv_dtype.is_f32() {
                String::new()
            } else {
                format!(", KV cache {}", self.settings.kv_dtype.name())
            }
        ));
        let chat = builder.chat_template(model.chat_template.as_ref(), &model.origin)?;
        if chat.is_some() {
            log.line("Applying the model's chat template");
        }
        let prompts = items.map(|i, it| builder.render(i, it, chat))?;
        let local = LocalEngine::new(model, self.settings.batch_size)
            .with_kv_budget(self.settings.kv_budget);
        let (engine, note) = crate::engine::for_device(
            local,
            &checkpoint,
            &self.device,
            self.weights,
            self.settings.batch_size,
        );
        if let Some(note) = note {
            log.line(note);
        }
        Ok(Prepared { engine, prompts, messages: None })
    }

    fn remote(
        &self,
        endpoint: &Endpoint,
        record: &mut RunRecord,
        builder: &PromptBuilder,
        items: Positioned,
        log: &mut RunLog,
    ) -> Result<Prepared> {
        let engine =
            RemoteEngine::connect(endpoint, self.settings.batch_size, &self.how.sources.server)?;
        record.model.origin = engine.origin();
        record.model.parameters = None;
        record.model.files = Default::default();
        self.run_dir.write_record(record)?;
        log.line(format!(
            "Model: OpenAI-compatible server {}, model \"{}\", up to {} request(s) in flight",
            engine.base_url(),
            engine.model_name(),
            self.settings.batch_size.max(1)
        ));
        // Plain text for the prompt record either way; a server's chat template is its own.
        let prompts = items.map(|i, it| builder.render(i, it, None))?;
        let multiple_choice = self.multiple_choice();
        let messages = match builder.chat_mode() {
            _ if multiple_choice => {
                log.line("Scoring options through /v1/completions with echo=true and logprobs (plain-text prompts)");
                None
            }
            ChatMode::Always => {
                log.line("Sending prompts to /v1/chat/completions: the environment sets chat = true, the server applies its chat template");
                Some(items.map(|i, it| builder.messages(i, it))?)
            }
            // `auto` means "the model's chat template if it has one", and a server does not show
            // whether it has one; plain completions are what every server supports.
            ChatMode::Auto => {
                log.line(
                    "Sending prompts to /v1/completions as plain text: the environment's chat = \"auto\" follows the \
                     model's chat template, which a server does not expose (chat = true uses /v1/chat/completions)",
                );
                None
            }
            ChatMode::Never => {
                log.line("Sending prompts to /v1/completions as plain text (the environment sets chat = false)");
                None
            }
        };
        Ok(Prepared { engine: Box::new(engine), prompts, messages })
    }
}
