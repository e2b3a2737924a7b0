//! Finding and loading a checkpoint in HF layout, from a directory or from bytes compiled into
//! the binary. Both end in the same `LoadedModel::load`, so the embedded model exercises the
//! exact path every user checkpoint takes.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::chat::ChatTemplate;
use super::config::{ModelConfig, TokenIds};
use super::decoder::{Backend, Decoder};
use super::gguf::GgufWeights;
use super::host::StoredTensors;
use super::lora::LoraAdapter;
use super::tokenizer::TextTokenizer;
use super::KvDtype;
use crate::device::WeightType;
use crate::error::{Error, Result};

/// Where the weights are: mmapped files, a safetensors image in the binary, or a GGUF file.
pub enum WeightFiles {
    Files(Vec<PathBuf>),
    Static(&'static [u8]),
    Gguf(Box<GgufWeights>),
}

/// The files of an HF-layout checkpoint, read but not yet turned into tensors. A GGUF file
/// becomes one too ([`super::gguf::checkpoint`]): its metadata rendered as these JSON files.
pub struct Checkpoint {
    /// How users name it (path or "embedded:…"); used in messages and run records.
    pub origin: String,
    pub config_json: String,
    pub tokenizer_json: Vec<u8>,
    pub tokenizer_config_json: Option<String>,
    pub generation_config_json: Option<String>,
    /// transformers 5 saves the chat template here rather than in tokenizer_config.json.
    pub chat_template_jinja: Option<String>,
    pub weights: WeightFiles,
    /// A PEFT LoRA adapter merged into `weights` at load.
    pub lora: Option<Box<LoraAdapter>>,
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    if path.exists() {
        read_text(path).map(Some)
    } else {
        Ok(None)
    }
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::BTreeMap<String, String>,
}

impl Checkpoint {
    /// sha256 of every file the model is read from, by file name (weights streamed from disk).
    pub fn file_hashes(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let mut out = self.base_file_hashes()?;
        if let Some(lora) = &self.lora {
            for f in lora.files() {
                let name = f
                    .file_name()
                    .map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into_owned());
                out.insert(name, crate::hash::sha256_file(&f)?);
            }
        }
        Ok(out)
    }

    fn base_file_hashes(&self) -> Result<std::collections::BTreeMap<String, String>> {
        use crate::hash::{sha256_file, sha256_hex};
        let mut out = std::collections::BTreeMap::new();
        let file_name = |p: &Path| {
            p.file_name()
                .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
        };
        match &self.weights {
            WeightFiles::Files(files) => {
                for f in files {
                    out.insert(file_name(f), sha256_file(f)?);
                }
            }
            WeightFiles::Static(bytes) => {
                out.insert("model.safetensors".into(), sha256_hex(bytes));
            }
            // Config and tokenizer are derived from the GGUF file itself.
            WeightFiles::Gguf(g) => {
                out.insert(file_name(g.path()), sha256_file(g.path())?);
                return Ok(out);
            }
        }
        out.insert("config.json".into(), sha256_hex(self.config_json.as_bytes()));
        out.insert("tokenizer.json".into(), sha256_hex(&self.tokenizer_json));
        for (name, text) in [
            ("tokenizer_config.json", &self.tokenizer_config_json),
            ("generation_config.json", &self.generation_config_json),
            ("chat_template.jinja", &self.chat_template_jinja),
        ] {
            if let Some(t) = text {
                out.insert(name.into(), sha256_hex(t.as_bytes()));
            }
        }
        Ok(out)
    }

    /// Reads a checkpoint directory: `config.json`, `tokenizer.json`, and `model.safetensors`
    /// or the shards listed in `model.safetensors.index.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let origin = dir.display().to_string();
        if !dir.is_dir() {
            return Err(Error::model(
                &origin,
                format!(
                    "not a directory; expected an HF checkpoint folder with config.json, \
                     model.safetensors and tokenizer.json{}",
                    hub_hint(dir)
                ),
            ));
        }
        let need = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::model(&origin, format!("missing {name}")))
            }
        };
        let config_json = read_text(&need("config.json")?)?;
        let tokenizer_path = need("tokenizer.json")?;
        let tokenizer_json =
            std::fs::read(&tokenizer_path).map_err(|e| Error::io(&tokenizer_path, e))?;
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            let text = read_text(&index)?;
            let idx: ShardIndex = serde_json::from_str(&text)
                .map_err(|source| Error::Json { path: index.clone(), source })?;
            let mut shards: Vec<String> = idx.weight_map.into_values().collect();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            return Err(Error::model(
                &origin,
                "no weights: expected model.safetensors or model.safetensors.index.json",
            ));
        };
        for f in &files {
            if !f.is_file() {
                return Err(Error::model(&origin, format!("missing shard {}", f.display())));
            }
        }
        Ok(Self {
            origin,
            config_json,
            tokenizer_json,
            tokenizer_config_json: read_optional(&dir.join("tokenizer_config.json"))?,
            generation_config_json: read_optional(&dir.join("generation_config.json"))?,
            chat_template_jinja: read_optional(&dir.join("chat_template.jinja"))?,
            weights: WeightFiles::Files(files),
            lora: None,
        })
    }
}

#[derive(Deserialize, Default)]
struct GenerationConfig {
    #[serde(default)]
    eos_token_id: Option<TokenIds>,
}

#[derive(Deserialize, Default)]
struct TokenizerConfig {
    #[serde(default)]
    eos_token: Option<serde_json::Value>,
    #[serde(default)]
    bos_token: Option<serde_json::Value>,
}

/// A special token in tokenizer_config.json: a string or `{"content": …}`.
fn token_text(v: &Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => {
            o.get("content").and_then(|c| c.as_str()).map(str::to_string)
        }
        _ => None,
    }
}

fn tokenizer_config(ckpt: &Checkpoint) -> Result<TokenizerConfig> {
    match &ckpt.tokenizer_config_json {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::model(&ckpt.origin, format!("tokenizer_config.json: {e}"))),
        None => Ok(TokenizerConfig::default()),
    }
}

/// BOS as transformers' tokenizer knows it: tokenizer_config.json's `bos_token`, else config.json.
fn bos_id(ckpt: &Checkpoint, cfg: &ModelConfig, tok: &TextTokenizer) -> Result<Option<u32>> {
    let from_tokenizer =
        token_text(&tokenizer_config(ckpt)?.bos_token).and_then(|t| tok.token_to_id(&t));
    Ok(from_tokenizer
        .or_else(|| cfg.bos_token_id.as_ref().and_then(|ids| ids.to_vec().first().copied())))
}

/// A model ready to run: decoder, tokenizer and where it came from.
pub struct LoadedModel {
    pub decoder: Decoder,
    pub tokenizer: TextTokenizer,
    /// The model's chat template, when it has one (base models usually do not).
    pub chat_template: Option<ChatTemplate>,
    pub origin: String,
    pub num_parameters: usize,
}

impl LoadedModel {
    /// Loads with the weights held as `weights` (a candle `DType`, or [`WeightType::Q8_0`]).
    pub fn load(
        ckpt: &Checkpoint,
        device: &Device,
        weights: impl Into<WeightType>,
    ) -> Result<Self> {
        Self::load_with(ckpt, device, weights, Backend::Auto)
    }

    /// What `eval` and `generate` run: [`LoadedModel::load`], then the KV cache stored as
    /// `kv` (`--kv-dtype`; refused, naming the flag, where the decoder cannot).
    pub fn load_for_inference(
        ckpt: &Checkpoint,
        device: &Device,
        weights: WeightType,
        kv: KvDtype,
    ) -> Result<Self> {
        let mut model = Self::load(ckpt, device, weights)?;
        model
            .decoder
            .set_kv_dtype(kv)
            .map_err(|e| Error::model(&ckpt.origin, format!("--kv-dtype {}: {e}", kv.name())))?;
        Ok(model)
    }

    /// [`LoadedModel::load`] with a chosen decoder implementation (tests check both).
    pub fn load_with(
        ckpt: &Checkpoint,
        device: &Device,
        weights: impl Into<WeightType>,
        backend: Backend,
    ) -> Result<Self> {
        let weights = weights.into();
        if weights == WeightType::Q8_0 && !(backend == Backend::Auto && device.is_cpu()) {
            return Err(Error::Q8NeedsHost);
        }
        let dtype = weights.load_dtype();
        let origin = &ckpt.origin;
        // What the config came from, for messages.
        let config_name = match ckpt.weights {
            WeightFiles::Gguf(_) => "the GGUF metadata",
            _ => "config.json",
        };
        let cfg = ModelConfig::from_json(&ckpt.config_json)
            .map_err(|e| Error::model(origin, format!("{config_name}: {e}")))?;
        cfg.validate().map_err(|m| Error::model(origin, format!("{config_name}: {m}")))?;

        let tokenizer = TextTokenizer::from_bytes(&ckpt.tokenizer_json, origin)?;
        let eos_ids = eos_ids(ckpt, &cfg, &tokenizer)?;
        let bos_id = bos_id(ckpt, &cfg, &tokenizer)?;
        let tokenizer = tokenizer.with_eos_ids(eos_ids).with_bos_id(bos_id);
        if tokenizer.vocab_size() > cfg.vocab_size {
            return Err(Error::model(
                origin,
                format!(
                    "tokenizer.json has {} tokens but {config_name} vocab_size is {}: \
                     the tokenizer does not belong to this model",
                    tokenizer.vocab_size(),
                    cfg.vocab_size
                ),
            ));
        }

        if let WeightFiles::Files(files) = &ckpt.weights {
            for f in files {
                super::safetensors::check_safetensors(f)
                    .map_err(|m| Error::model(origin, format!("{}: {m}", f.display())))?;
            }
        }
        let weight_files = match &ckpt.weights {
            WeightFiles::Files(files) => files
                .iter()
                .map(|f| {
                    f.file_name().map_or_else(
                        || f.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            WeightFiles::Static(_) => "the embedded weights".into(),
            WeightFiles::Gguf(_) => "the GGUF tensors".into(),
        };
        // A GGUF's tensors are read one at a time as the decoder asks for them, dequantized or
        // (with `WeightType::Stored`) as stored.
        let gguf = match &ckpt.weights {
            WeightFiles::Gguf(g) => Some(g.reader(origin)?),
            _ => None,
        };
        let vb = match &ckpt.weights {
            WeightFiles::Files(files) => super::safetensors::ReadSafetensors::open(files)
                .map(|st| VarBuilder::from_backend(Box::new(st), dtype, device.clone()))
                .map_err(candle_core::Error::msg),
            WeightFiles::Static(bytes) => VarBuilder::from_slice_safetensors(bytes, dtype, device),
            WeightFiles::Gguf(g) => {
                Ok(VarBuilder::from_backend(Box::new(g.reader(origin)?), dtype, device.clone()))
            }
        }
        .map_err(|e| Error::model(origin, format!("cannot read weights: {e}")))?;
        let stored = gguf.as_ref().map(|r| r as &dyn StoredTensors);
        // LoRA adapters name the checkpoint's own modules, so they merge before the renaming;
        // a GGUF's tensors are read under Llama names already (`gguf_names`).
        let renamed = |vb| match &ckpt.weights {
            WeightFiles::Gguf(_) => Ok(vb),
            _ => super::names::llama_names(vb, &cfg),
        };
        let model = match &ckpt.lora {
            Some(lora) => {
                let (vb, merge) = lora.var_builder(vb, origin)?;
                let model = renamed(vb)
                    .and_then(|vb| Decoder::load_stored(vb, &cfg, backend, weights, stored));
                merge.finish(lora, model.is_ok(), origin)?;
                model
            }
            None => {
                renamed(vb).and_then(|vb| Decoder::load_stored(vb, &cfg, backend, weights, stored))
            }
        }
        .map_err(|e| {
            Error::model(origin, format!("{weight_files}: weights do not match {config_name}: {e}"))
        })?;
        let num_parameters = super::family::Layout::of(&cfg)
            .map_err(|m| Error::model(origin, format!("{config_name}: {m}")))?
            .parameters(&cfg);
        let chat_template = chat_template(ckpt)?;
        Ok(Self {
            decoder: model,
            tokenizer,
            chat_template,
            origin: origin.clone(),
            num_parameters,
        })
    }
}

impl Checkpoint {
    /// The checkpoint's config and its tensors under Llama names, on the CPU as `dtype`, read
    /// one at a time as asked for: what the packed step ([`super::gpu`]) loads. Safetensors
    /// only; a GGUF file or a LoRA adapter is refused with the reason.
    pub fn step_tensors(&self, dtype: DType) -> Result<(ModelConfig, VarBuilder<'static>)> {
        let origin = &self.origin;
        let cfg = ModelConfig::from_json(&self.config_json)
            .map_err(|e| Error::model(origin, format!("config.json: {e}")))?;
        if self.lora.is_some() {
            return Err(Error::model(origin, "the packed step does not merge LoRA adapters"));
        }
        let device = Device::Cpu;
        let vb = match &self.weights {
            WeightFiles::Files(files) => super::safetensors::ReadSafetensors::open(files)
                .map(|st| VarBuilder::from_backend(Box::new(st), dtype, device))
                .map_err(candle_core::Error::msg),
            WeightFiles::Static(bytes) => VarBuilder::from_slice_safetensors(bytes, dtype, &device),
            WeightFiles::Gguf(_) => {
                return Err(Error::model(origin, "the packed step reads safetensors, not GGUF"))
            }
        }
        .and_then(|vb| super::names::llama_names(vb, &cfg))
        .map_err(|e| Error::model(origin, format!("cannot read weights: {e}")))?;
        Ok((cfg, vb))
    }
}

/// The template from `chat_template.jinja` or `tokenizer_config.json`, with the special tokens
/// of `tokenizer_config.json`, as transformers assembles them.
fn chat_template(ckpt: &Checkpoint) -> Result<Option<ChatTemplate>> {
    let origin = &ckpt.origin;
    let mut config: serde_json::Map<String, serde_json::Value> = match &ckpt.tokenizer_config_json {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::model(origin, format!("tokenizer_config.json: {e}")))?,
        None => serde_json::Map::new(),
    };
    if let Some(jinja) = &ckpt.chat_template_jinja {
        config.insert("chat_template".into(), serde_json::Value::String(jinja.clone()));
    }
    let text = serde_json::Value::Object(config).to_string();
    ChatTemplate::from_tokenizer_config(&text).map_err(|e| Error::model(origin, e.to_string()))
}

/// EOS ids as transformers resolves them: generation_config.json, then config.json, then the
/// tokenizer's `eos_token`.
fn eos_ids(ckpt: &Checkpoint, cfg: &ModelConfig, tok: &TextTokenizer) -> Result<Vec<u32>> {
    let origin = &ckpt.origin;
    if let Some(text) = &ckpt.generation_config_json {
        let gc: GenerationConfig = serde_json::from_str(text)
            .map_err(|e| Error::model(origin, format!("generation_config.json: {e}")))?;
        if let Some(ids) = gc.eos_token_id {
            return Ok(ids.to_vec());
        }
    }
    if let Some(ids) = &cfg.eos_token_id {
        return Ok(ids.to_vec());
    }
    let token = token_text(&tokenizer_config(ckpt)?.eos_token);
    Ok(token.and_then(|t| tok.token_to_id(&t)).map(|id| vec![id]).unwrap_or_default())
}

/// For a path that does not exist but reads like a hub repository (`ORG/NAME`): how to ask
/// for that instead.
pub fn hub_hint(path: &Path) -> String {
    let text = path.to_string_lossy();
    let parts: Vec<&str> = text.split('/').collect();
    let hub_like = !path.exists()
        && parts.len() == 2
        && parts.iter().all(|p| !p.is_empty() && !p.starts_with('.'))
        && !text.ends_with(".gguf");
    if hub_like {
        format!("; for the HuggingFace hub model {text}, write hf:{text}")
    } else {
        String::new()
    }
}
