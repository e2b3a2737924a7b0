//! PEFT LoRA adapter directories (`adapter_config.json` + `adapter_model.safetensors`), merged
//! into their base model's weights at load: `W + scale · B·A`, as peft's `merge_and_unload()`.
//!
//! The adapter is read and checked when the spec is resolved; the merge happens as the decoder
//! asks for each weight ([`LoraAdapter::var_builder`]), so the base is never held twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::checkpoint::Checkpoint;
use super::spec::ModelSpec;
use crate::error::{Error, Result};

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// How to get a usable model from an adapter benchgen cannot merge.
const MERGE_HINT: &str =
    "merge the adapter in Python (peft's merge_and_unload() then save_pretrained()) \
                          and pass the merged checkpoint instead";

/// An adapter whose config or weights cannot be merged as `W + scale · B·A`; the message says
/// what is wrong and, where there is one, how to get a usable model.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("{CONFIG_FILE}: {0}")]
    ConfigJson(#[source] serde_json::Error),
    #[error("peft_type is {peft_type}; only LORA adapters can be merged here; {hint}", hint = MERGE_HINT)]
    NotLora { peft_type: String },
    #[error("use_dora is true: DoRA adapters are not supported; {hint}", hint = MERGE_HINT)]
    Dora,
    #[error(
        "bias is {bias:?}: adapters that train biases are not supported (only \"none\"); {hint}",
        hint = MERGE_HINT
    )]
    TrainedBias { bias: String },
    #[error("lora_bias is true: LoRA B biases are not supported; {hint}", hint = MERGE_HINT)]
    LoraBias,
    #[error(
        "fan_in_fan_out is true: adapters on GPT-2-style Conv1D layers are not supported; {hint}",
        hint = MERGE_HINT
    )]
    FanInFanOut,
    #[error(
        "modules_to_save ({}) replaces whole modules, which is not supported; {hint}",
        .modules.join(", "),
        hint = MERGE_HINT
    )]
    ModulesToSave { modules: Vec<String> },
    /// A peft feature (`layer_replication`, `trainable_token_indices`, …) that is switched on.
    #[error("{option} is set, which is not supported; {hint}", hint = MERGE_HINT)]
    UnsupportedOption { option: &'static str },
    #[error("pattern {pattern:?} is not a regex benchgen can read: {source}")]
    BadPattern {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("target_modules {pattern:?} is not a regex benchgen can read: {source}")]
    BadTargetModules {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("rank_pattern gives {module} the rank {rank}, which is not a positive integer")]
    NonIntegerRank { module: String, rank: f64 },
    #[error("{CONFIG_FILE} gives {module} rank 0")]
    ZeroRank { module: String },
    /// A tensor of a kind benchgen does not merge (`what` says which).
    #[error(
        "tensor {key}: {what} is not supported; merge the adapter in Python (peft's merge_and_unload()) instead"
    )]
    UnsupportedTensor { key: String, what: &'static str },
    #[error(
        "tensor {key} is not a peft LoRA weight (expected base_model.model.<module>.lora_A.weight)"
    )]
    NotLoraKey { key: String },
    #[error("holds no LoRA weights")]
    NoWeights,
    #[error("{module} has only one of lora_A and lora_B; the file is incomplete")]
    HalfMissing { module: String },
    /// `target_modules` is as the config writes it (Rust debug form).
    #[error(
        "holds a LoRA for {module}, which target_modules ({target_modules}) does not name: \
         {CONFIG_FILE} and {WEIGHTS_FILE} do not belong together"
    )]
    NotTargeted { module: String, target_modules: String },
    #[error(
        "{module}: lora_A is {a:?} and lora_B {b:?}, but the config gives it rank {rank} \
         (lora_A must be [{rank}, in], lora_B [out, {rank}])"
    )]
    RankMismatch { module: String, a: Vec<usize>, b: Vec<usize>, rank: usize },
}

/// Whether `dir` is a PEFT adapter rather than a full checkpoint.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// The base model an adapter folder names (`base_model_name_or_path`), read without checking
/// the rest of the adapter: enough for a listing; [`LoraAdapter::read`] checks everything.
pub fn declared_base(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(CONFIG_FILE)).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    config.get("base_model_name_or_path")?.as_str().map(str::to_string)
}

/// `rank_pattern` / `alpha_pattern`: regex → value, in file order, since peft uses the first match.
#[derive(Debug, Default, Clone, PartialEq)]
struct Patterns(Vec<(String, f64)>);

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Patterns;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of module-name pattern → number, or null")
            }
            fn visit_unit<E>(self) -> std::result::Result<Patterns, E> {
                Ok(Patterns::default())
            }
            fn visit_none<E>(self) -> std::result::Result<Patterns, E> {
                Ok(Patterns::default())
            }
            fn visit_some<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> std::result::Result<Patterns, D::Error> {
                d.deserialize_map(self)
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> std::result::Result<Patterns, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, f64>()? {
                    out.push((k, v));
                }
                Ok(Patterns(out))
            }
        }
        d.deserialize_option(Visit)
    }
}

impl Patterns {
    /// peft's `get_pattern_key`: the first pattern that matches the end of the module name at a
    /// `.` boundary.
    fn lookup(&self, module: &str) -> Result<Option<f64>, LoraError> {
        for (pattern, value) in &self.0 {
            let re = regex::Regex::new(&format!(r"^(?:.*\.)?(?:{pattern})$"))
                .map_err(|source| LoraError::BadPattern { pattern: pattern.clone(), source })?;
            if re.is_match(module) {
                return Ok(Some(*value));
            }
        }
        Ok(None)
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(untagged)]
enum TargetModules {
    Names(Vec<String>),
    Regex(String),
}

impl TargetModules {
    /// peft's `check_target_module_exists`, for the module names an adapter file holds.
    fn matches(&self, module: &str) -> Result<bool, LoraError> {
        match self {
            Self::Names(names) => {
                Ok(names.iter().any(|t| module == t || module.ends_with(&format!(".{t}"))))
            }
            // peft's shorthand for every linear layer but the output head.
            Self::Regex(s) if s == "all-linear" => Ok(!module.ends_with("lm_head")),
            Self::Regex(s) => regex::Regex::new(&format!("^(?:{s})$"))
                .map(|re| re.is_match(module))
                .map_err(|source| LoraError::BadTargetModules { pattern: s.clone(), source }),
        }
    }
}

fn default_r() -> usize {
    8
}

fn default_alpha() -> f64 {
    8.0
}

/// The fields of peft's `LoraConfig` that change the merged weights; defaults are peft's.
#[derive(Debug, Deserialize)]
struct AdapterConfig {
    #[serde(default)]
    peft_type: Option<String>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    revision: Option<String>,
    #[serde(default = "default_r")]
    r: usize,
    #[serde(default = "default_alpha")]
    lora_alpha: f64,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    bias: Option<String>,
    #[serde(default)]
    lora_bias: bool,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    target_modules: Option<TargetModules>,
    #[serde(default)]
    rank_pattern: Patterns,
    #[serde(default)]
    alpha_pattern: Patterns,
    #[serde(default)]
    layer_replication: Option<serde_json::Value>,
    #[serde(default)]
    trainable_token_indices: Option<serde_json::Value>,
    #[serde(default)]
    target_parameters: Option<serde_json::Value>,
    #[serde(default)]
    alora_invocation_tokens: Option<serde_json::Value>,
}

/// A JSON value that peft writes when a feature is off: null, `[]`, `{}`, `false` or `""`.
fn is_off(v: &Option<serde_json::Value>) -> bool {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

impl AdapterConfig {
    fn parse(text: &str) -> Result<Self, LoraError> {
        let cfg: Self = serde_json::from_str(text).map_err(LoraError::ConfigJson)?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Refuses what would make `W + scale·B·A` the wrong model, saying how to get a usable one.
    fn check(&self) -> Result<(), LoraError> {
        if let Some(t) = self.peft_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("LORA")) {
            return Err(LoraError::NotLora { peft_type: t.to_string() });
        }
        if self.use_dora {
            return Err(LoraError::Dora);
        }
        if let Some(b) = self.bias.as_deref().filter(|b| *b != "none") {
            return Err(LoraError::TrainedBias { bias: b.to_string() });
        }
        if self.lora_bias {
            return Err(LoraError::LoraBias);
        }
        if self.fan_in_fan_out {
            return Err(LoraError::FanInFanOut);
        }
        if let Some(modules) = self.modules_to_save.as_ref().filter(|m| !m.is_empty()) {
            return Err(LoraError::ModulesToSave { modules: modules.clone() });
        }
        for (name, v) in [
            ("layer_replication", &self.layer_replication),
            ("trainable_token_indices", &self.trainable_token_indices),
            ("target_parameters", &self.target_parameters),
            ("alora_invocation_tokens", &self.alora_invocation_tokens),
        ] {
            if !is_off(v) {
                return Err(LoraError::UnsupportedOption { option: name });
            }
        }
        Ok(())
    }

    /// (rank, alpha) for one module, `rank_pattern` and `alpha_pattern` first.
    fn rank_alpha(&self, module: &str) -> Result<(usize, f64), LoraError> {
        let r = match self.rank_pattern.lookup(module)? {
            Some(r) if r >= 1.0 && r.fract() == 0.0 => r as usize,
            Some(rank) => {
                return Err(LoraError::NonIntegerRank { module: module.to_string(), rank })
            }
            None => self.r,
        };
        if r == 0 {
            return Err(LoraError::ZeroRank { module: module.to_string() });
        }
        let alpha = self.alpha_pattern.lookup(module)?.unwrap_or(self.lora_alpha);
        Ok((r, alpha))
    }

    /// peft's `scaling`: alpha / r, or alpha / √r with rsLoRA.
    fn scale(&self, r: usize, alpha: f64) -> f64 {
        if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    A,
    B,
}

/// `base_model.model.<module>.lora_A.weight` → (`<module>`, A).
fn parse_key(key: &str) -> Result<(&str, Part), LoraError> {
    let unsupported =
        |what: &'static str| LoraError::UnsupportedTensor { key: key.to_string(), what };
    if key.contains("lora_embedding_A") || key.contains("lora_embedding_B") {
        return Err(unsupported("LoRA on an embedding layer"));
    }
    if key.contains("lora_magnitude_vector") {
        return Err(unsupported("DoRA (lora_magnitude_vector)"));
    }
    let Some(rest) = key.strip_prefix("base_model.model.") else {
        return Err(LoraError::NotLoraKey { key: key.to_string() });
    };
    if let Some(m) = rest.strip_suffix(".lora_A.weight") {
        return Ok((m, Part::A));
    }
    if let Some(m) = rest.strip_suffix(".lora_B.weight") {
        return Ok((m, Part::B));
    }
    if rest.ends_with(".lora_B.bias") {
        return Err(unsupported("a LoRA B bias (lora_bias)"));
    }
    Err(unsupported(
        "a tensor that is not a LoRA A/B weight (modules_to_save or another PEFT method)",
    ))
}

/// One targeted weight's low-rank update, kept in the file's dtype until the merge.
struct Update {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

/// A LoRA adapter read from disk and checked against its own config, not yet merged.
pub struct LoraAdapter {
    pub dir: PathBuf,
    /// `r` of adapter_config.json (`rank_pattern` may give some modules another).
    pub rank: usize,
    /// `base_model_name_or_path`, as written.
    pub base: String,
    /// `revision`: the hub commit or branch the adapter was trained on.
    pub base_revision: Option<String>,
    /// Base weight name (`model.layers.0.self_attn.q_proj.weight`) → its update.
    updates: BTreeMap<String, Update>,
}

impl LoraAdapter {
    pub fn read(dir: &Path) -> Result<Self> {
        let origin = dir.display().to_string();
        let bad = |m: String| Error::model(&origin, format!("LoRA adapter: {m}"));
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let cfg = AdapterConfig::parse(&text).map_err(|e| bad(e.to_string()))?;
        let base = cfg
            .base_model_name_or_path
            .clone()
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| bad(format!("{CONFIG_FILE} has no base_model_name_or_path; set it to the base model (a path or a hub id)")))?;

        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            let hint = if dir.join("adapter_model.bin").is_file() {
                "; only adapter_model.bin (a pickle) is there: convert it to safetensors, e.g. load the adapter \
                 with peft and save_pretrained(..., safe_serialization=True)"
            } else {
                ""
            };
            return Err(bad(format!("missing {WEIGHTS_FILE}{hint}")));
        }
        super::safetensors::check_safetensors(&weights)
            .map_err(|m| bad(format!("{WEIGHTS_FILE}: {m}")))?;
        let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
            .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?;
        let updates = pair_up(&cfg, tensors).map_err(|m| bad(format!("{WEIGHTS_FILE}: {m}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            rank: cfg.r,
            base,
            base_revision: cfg.revision.clone(),
            updates,
        })
    }

    /// Puts the adapter on its resolved base. Tokenizer files saved beside the adapter (trl does)
    /// win over the base's, as `AutoTokenizer.from_pretrained(adapter_dir)` would read them.
    pub fn attach(self, base: &mut Checkpoint) -> Result<()> {
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            let p = self.dir.join(name);
            if p.is_file() {
                std::fs::read(&p).map(Some).map_err(|e| Error::io(&p, e))
            } else {
                Ok(None)
            }
        };
        let text = |name: &str| -> Result<Option<String>> {
            read(name)?
                .map(|b| {
                    String::from_utf8(b).map_err(|_| {
                        Error::model(self.dir.display(), format!("{name} is not UTF-8"))
                    })
                })
                .transpose()
        };
        if let Some(t) = read("tokenizer.json")? {
            base.tokenizer_json = t;
            base.tokenizer_config_json =
                text("tokenizer_config.json")?.or(base.tokenizer_config_json.take());
        }
        if let Some(t) = text("chat_template.jinja")? {
            base.chat_template_jinja = Some(t);
        }
        base.origin = format!("{} (LoRA r={} on {})", self.dir.display(), self.rank, base.origin);
        base.lora = Some(Box::new(self));
        Ok(())
    }

    /// The files the adapter is read from, for the run record's hashes.
    pub fn files(&self) -> [PathBuf; 2] {
        [self.dir.join(CONFIG_FILE), self.dir.join(WEIGHTS_FILE)]
    }

    /// The spec of the base model: prefixed specs as written; else a path, relative to the
    /// adapter directory first (peft fixtures and training runs use relative paths) or to the
    /// working directory; else a hub id, which is what peft writes for hub models.
    pub fn base_spec(&self) -> Result<ModelSpec> {
        let b = self.base.trim();
        let prefixed =
            ["hf:", "trained:", "platform:", "running:"].iter().any(|p| b.starts_with(p))
                || b == "embedded";
        if prefixed {
            return ModelSpec::parse(b);
        }
        let beside = self.dir.join(b);
        if beside.exists() {
            return Ok(ModelSpec::Trained(beside));
        }
        if Path::new(b).exists() {
            return Ok(ModelSpec::Trained(b.into()));
        }
        if is_hub_id(b) {
            return Ok(ModelSpec::Hf { repo: b.to_string(), revision: self.base_revision.clone() });
        }
        Err(Error::model(
            self.dir.display(),
            format!(
                "LoRA adapter: base model {b:?} (base_model_name_or_path in {CONFIG_FILE}) is not found \
                 (looked relative to the adapter and to the current directory) and is not a HuggingFace id; \
                 set it to the base checkpoint's path or to hf:ORG/NAME"
            ),
        ))
    }

    /// A VarBuilder that hands out the base's weights with the adapter merged into those it
    /// targets. Call [`Merge::finish`] once the model is built.
    pub fn var_builder<'a>(
        &'a self,
        base: VarBuilder<'a>,
        origin: &str,
    ) -> Result<(VarBuilder<'a>, Merge)> {
        for name in self.updates.keys() {
            if !base.contains_tensor(name) {
                return Err(Error::model(
                    origin,
                    format!(
                        "LoRA adapter {}: it has a LoRA for {name}, which the base model does not have: \
                         the adapter was trained on another model; check base_model_name_or_path",
                        self.dir.display()
                    ),
                ));
            }
        }
        let state = Arc::new(Mutex::new(MergeState::default()));
        let (dtype, device) = (base.dtype(), base.device().clone());
        let backend = Merged { base, adapter: self, state: state.clone() };
        Ok((VarBuilder::from_backend(Box::new(backend), dtype, device), Merge { state }))
    }
}

/// Hub ids as the hub allows them: `NAME` or `ORG/NAME`, no part starting with `.` or `-`.
fn is_hub_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with(['.', '-'])
                && !p.contains("..")
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// Pairs each module's A and B, checks them against each other, the config and `target_modules`.
fn pair_up(
    cfg: &AdapterConfig,
    tensors: std::collections::HashMap<String, Tensor>,
) -> Result<BTreeMap<String, Update>, LoraError> {
    let mut halves: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    for (key, t) in tensors {
        let (module, part) = parse_key(&key)?;
        let slot = halves.entry(module.to_string()).or_default();
        match part {
            Part::A => slot.0 = Some(t),
            Part::B => slot.1 = Some(t),
        }
    }
    if halves.is_empty() {
        return Err(LoraError::NoWeights);
    }
    let mut out = BTreeMap::new();
    for (module, (a, b)) in halves {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(LoraError::HalfMissing { module });
        };
        if let Some(t) = &cfg.target_modules {
            if !t.matches(&module)? {
                return Err(LoraError::NotTargeted { module, target_modules: format!("{t:?}") });
            }
        }
        let (r, alpha) = cfg.rank_alpha(&module)?;
        let (ad, bd) = (a.dims().to_vec(), b.dims().to_vec());
        if ad.len() != 2 || bd.len() != 2 || ad[0] != r || bd[1] != r {
            return Err(LoraError::RankMismatch { module, a: ad, b: bd, rank: r });
        }
        out.insert(format!("{module}.weight"), Update { a, b, scale: cfg.scale(r, alpha) });
    }
    Ok(out)
}

#[derive(Default)]
struct MergeState {
    merged: BTreeSet<String>,
    /// The first merge failure; it explains a failed load better than the decoder's error.
    error: Option<String>,
}

/// Watches a merge through the decoder's load.
pub struct Merge {
    state: Arc<Mutex<MergeState>>,
}

impl Merge {
    /// After the decoder was built (`built`) or not: the merge's own failure if there was one,
    /// else an error if some update was never asked for (the decoder does not read that weight).
    pub fn finish(self, adapter: &LoraAdapter, built: bool, origin: &str) -> Result<()> {
        let state = self.state.lock().map_err(|_| Error::model(origin, "LoRA merge panicked"))?;
        let name = adapter.dir.display();
        if let Some(e) = &state.error {
            return Err(Error::model(origin, format!("LoRA adapter {name}: {e}")));
        }
        if built {
            if let Some(unused) = adapter.updates.keys().find(|k| !state.merged.contains(*k)) {
                return Err(Error::model(
                    origin,
                    format!("LoRA adapter {name}: it has a LoRA for {unused}, a weight benchgen's decoder does not use"),
                ));
            }
        }
        Ok(())
    }
}

struct Merged<'a> {
    base: VarBuilder<'a>,
    adapter: &'a LoraAdapter,
    state: Arc<Mutex<MergeState>>,
}

impl Merged<'_> {
    fn merge(
        &self,
        name: &str,
        w: Tensor,
        u: &Update,
        dtype: DType,
    ) -> candle_core::Result<Tensor> {
        let (out, inp) = w.dims2()?;
        let (ad, bd) = (u.a.dims(), u.b.dims());
        if ad[1] != inp || bd[0] != out {
            let msg = format!(
                "{name}: lora_B {bd:?} · lora_A {ad:?} does not fit the base weight [{out}, {inp}]: \
                 the adapter was trained on another model; check base_model_name_or_path"
            );
            if let Ok(mut s) = self.state.lock() {
                s.error.get_or_insert_with(|| msg.clone());
            }
            return Err(candle_core::Error::Msg(msg));
        }
        let dev = w.device();
        let a = u.a.to_dtype(DType::F32)?.to_device(dev)?;
        let b = u.b.to_dtype(DType::F32)?.to_device(dev)?;
        // As peft: (B·A)·scale in f32, added to the f32 weight, then cast once.
        let merged = (w + (b.matmul(&a)? * u.scale)?)?.to_dtype(dtype)?;
        if let Ok(mut s) = self.state.lock() {
            s.merged.insert(name.to_string());
        }
        Ok(merged)
    }
}

impl SimpleBackend for Merged<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        match self.adapter.updates.get(name) {
            Some(u) => {
                let w = self.base.get_with_hints_dtype(s, name, h, DType::F32)?.to_device(dev)?;
                self.merge(name, w, u, dtype)
            }
            None => self.base.get_with_hints_dtype(s, name, h, dtype)?.to_device(dev),
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.adapter.updates.get(name) {
            Some(u) => {
                let w = self.base.get_unchecked_dtype(name, DType::F32)?.to_device(dev)?;
                self.merge(name, w, u, dtype)
            }
            None => self.base.get_unchecked_dtype(name, dtype)?.to_device(dev),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.base.contains_tensor(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Result<AdapterConfig, LoraError> {
        AdapterConfig::parse(&format!(
            r#"{{"peft_type": "LORA", "base_model_name_or_path": "../base", "r": 4, "lora_alpha": 8,
                "target_modules": ["q_proj", "down_proj"] {extra}}}"#
        ))
    }

    #[test]
    fn scale_is_alpha_over_r_or_over_its_square_root() {
        let c = cfg("").unwrap();
        assert_eq!(c.rank_alpha("model.layers.0.self_attn.q_proj").unwrap(), (4, 8.0));
        assert_eq!(c.scale(4, 8.0), 2.0);
        let c = cfg(r#", "use_rslora": true"#).unwrap();
        assert_eq!(c.scale(4, 8.0), 4.0);
        assert_eq!(c.scale(16, 8.0), 2.0);
    }

    #[test]
    fn rank_and_alpha_patterns_match_the_end_of_the_module_name_first_match_wins() {
        let c = cfg(
            r#", "rank_pattern": {"layers.1.mlp.down_proj": 8, "q_proj": 2, "layers.0.self_attn.q_proj": 16},
                 "alpha_pattern": {"v_proj": 32}"#,
        )
        .unwrap();
        assert_eq!(c.rank_alpha("model.layers.1.mlp.down_proj").unwrap(), (8, 8.0));
        assert_eq!(c.rank_alpha("model.layers.0.mlp.down_proj").unwrap(), (4, 8.0));
        // "q_proj" comes first in the file, so it wins over the longer pattern, as in peft.
        assert_eq!(c.rank_alpha("model.layers.0.self_attn.q_proj").unwrap(), (2, 8.0));
        assert_eq!(c.rank_alpha("model.layers.0.self_attn.v_proj").unwrap(), (4, 32.0));
        // Only whole name segments: "q_proj" is no pattern for "xq_proj".
        assert_eq!(c.rank_alpha("model.layers.0.self_attn.xq_proj").unwrap(), (4, 8.0));
        assert!(cfg(r#", "rank_pattern": {"q_proj": 2.5}"#)
            .unwrap()
            .rank_alpha("a.q_proj")
            .is_err());
        assert!(cfg(r#", "rank_pattern": null, "alpha_pattern": {}"#).is_ok());
    }

    #[test]
    fn target_modules_as_names_or_regex() {
        let names = TargetModules::Names(vec!["q_proj".into()]);
        assert!(names.matches("model.layers.0.self_attn.q_proj").unwrap());
        assert!(!names.matches("model.layers.0.self_attn.k_proj").unwrap());
        assert!(!names.matches("model.layers.0.self_attn.xq_proj").unwrap());
        let re = TargetModules::Regex(r".*\.(q_proj|v_proj)".into());
        assert!(re.matches("model.layers.3.self_attn.v_proj").unwrap());
        assert!(!re.matches("model.layers.3.self_attn.v_proj2").unwrap());
        let all = TargetModules::Regex("all-linear".into());
        assert!(
            all.matches("model.layers.0.mlp.up_proj").unwrap() && !all.matches("lm_head").unwrap()
        );
        assert!(TargetModules::Regex("(".into()).matches("x").is_err());
    }

    #[test]
    fn keys_map_to_base_weights_and_unsupported_ones_are_refused() {
        assert_eq!(
            parse_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").unwrap(),
            ("model.layers.0.self_attn.q_proj", Part::A)
        );
        assert_eq!(
            parse_key("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").unwrap(),
            ("model.layers.1.mlp.down_proj", Part::B)
        );
        for (key, says) in [
            ("base_model.model.model.embed_tokens.lora_embedding_A", "embedding"),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", "DoRA"),
            ("base_model.model.lm_head.weight", "modules_to_save"),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", "lora_bias"),
            ("model.layers.0.self_attn.q_proj.lora_A.weight", "base_model.model."),
        ] {
            let e = parse_key(key).unwrap_err().to_string();
            assert!(e.contains(says), "{key}: {e}");
        }
    }

    #[test]
    fn unsupported_configs_are_refused_with_the_reason() {
        for (extra, says) in [
            (r#", "use_dora": true"#, "DoRA"),
            (r#", "bias": "lora_only""#, "bias"),
            (r#", "fan_in_fan_out": true"#, "fan_in_fan_out"),
            (r#", "modules_to_save": ["lm_head"]"#, "modules_to_save"),
            (r#", "layer_replication": [[0, 1]]"#, "layer_replication"),
        ] {
            let e = cfg(extra).unwrap_err().to_string();
            assert!(e.contains(says), "{extra}: {e}");
        }
        let e = AdapterConfig::parse(r#"{"peft_type": "IA3", "r": 4}"#).unwrap_err().to_string();
        assert!(e.contains("IA3") && e.contains("LORA"), "{e}");
        for extra in [
            r#", "bias": "none", "modules_to_save": null, "layer_replication": null, "trainable_token_indices": null"#,
            r#", "target_parameters": []"#,
        ] {
            assert!(cfg(extra).is_ok(), "{extra}");
        }
    }

    #[test]
    fn errors_are_typed_carry_their_cause_and_keep_their_messages() {
        use std::error::Error as _;
        let e = cfg(r#", "rank_pattern": {"(": 2}"#).unwrap().rank_alpha("a.q_proj").unwrap_err();
        let LoraError::BadPattern { pattern, .. } = &e else { panic!("{e:?}") };
        assert_eq!(pattern, "(");
        assert!(e.source().is_some_and(|s| s.is::<regex::Error>()), "{e:?}");
        assert!(e.to_string().starts_with("pattern \"(\" is not a regex benchgen can read: "));

        let e = AdapterConfig::parse("{").unwrap_err();
        assert!(matches!(e, LoraError::ConfigJson(_)));
        assert!(e.source().is_some_and(|s| s.is::<serde_json::Error>()));
        assert!(e.to_string().starts_with("adapter_config.json: EOF"), "{e}");

        let e = cfg(r#", "use_dora": true"#).unwrap_err();
        assert!(matches!(e, LoraError::Dora));
        assert_eq!(
            e.to_string(),
            "use_dora is true: DoRA adapters are not supported; merge the adapter in Python \
             (peft's merge_and_unload() then save_pretrained()) and pass the merged checkpoint instead"
        );
        let e = cfg(r#", "modules_to_save": ["lm_head", "embed_tokens"]"#).unwrap_err();
        assert!(e.to_string().starts_with(
            "modules_to_save (lm_head, embed_tokens) replaces whole modules, which is not supported; merge"
        ));
        let e = parse_key("base_model.model.x.lora_B.bias").unwrap_err();
        assert!(matches!(
            e,
            LoraError::UnsupportedTensor { what: "a LoRA B bias (lora_bias)", .. }
        ));
    }

    #[test]
    fn hub_ids_and_paths_are_told_apart() {
        for id in ["gpt2", "HuggingFaceTB/SmolLM2-135M", "Qwen/Qwen2.5-0.5B"] {
            assert!(is_hub_id(id), "{id}");
        }
        for p in ["../base", "./base", "/abs/base", "a/b/c", "", "a b"] {
            assert!(!is_hub_id(p), "{p}");
        }
    }

    fn adapter(base: &str, revision: Option<&str>, dir: &Path) -> LoraAdapter {
        LoraAdapter {
            dir: dir.into(),
            rank: 4,
            base: base.into(),
            base_revision: revision.map(Into::into),
            updates: BTreeMap::new(),
        }
    }

    #[test]
    fn base_spec_is_a_prefixed_spec_a_path_beside_the_adapter_or_a_hub_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("adapter");
        std::fs::create_dir_all(tmp.path().join("base")).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            adapter("../base", None, &dir).base_spec().unwrap(),
            ModelSpec::Trained(dir.join("../base"))
        );
        assert_eq!(
            adapter("hf:a/b", None, &dir).base_spec().unwrap(),
            ModelSpec::Hf { repo: "a/b".into(), revision: None }
        );
        assert_eq!(
            adapter("Org/Model", Some("abc"), &dir).base_spec().unwrap(),
            ModelSpec::Hf { repo: "Org/Model".into(), revision: Some("abc".into()) }
        );
        let e = adapter("../missing", None, &dir).base_spec().unwrap_err().to_string();
        assert!(e.contains("../missing") && e.contains("adapter"), "{e}");
    }
}
