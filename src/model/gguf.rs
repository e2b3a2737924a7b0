//! A `.gguf` file as a model: the architecture and hyper-parameters from its metadata, the
//! tokenizer from its embedded vocabulary ([`super::gguf_tokenizer`]), and its tensors
//! dequantized and renamed to the HF names [`super::decoder::Decoder`] loads. The result is an
//! ordinary [`Checkpoint`], so `LoadedModel::load` treats it like any other.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Shape, Tensor};
use serde_json::json;

use super::checkpoint::{Checkpoint, WeightFiles};
use super::config::{ConfigError, ModelConfig};
use super::gguf_names;
use super::gguf_tokenizer;
use super::host::StoredTensors;
use crate::error::{Error, Result};
use crate::kernels::{GgufType, QuantType};

/// llama.cpp's per-frequency rope divisors (Llama 3 scaling), read into the config.
const ROPE_FREQS: &str = "rope_freqs.weight";

/// `general.architecture` values this build runs (`llama` with experts is Mixtral).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "olmo2", "gptneox", "gpt2", "qwen2moe",
    "qwen3moe", "olmoe",
];

/// Typed access to GGUF metadata; errors name the key.
pub(crate) struct Meta<'a>(pub &'a HashMap<String, Value>);

/// A GGUF metadata key that is missing or holds the wrong kind of value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("missing metadata key {key}")]
    MissingKey { key: String },
    /// The value is not of the expected kind; `found` is its type (or the value itself).
    #[error("metadata key {key} is {found}, expected {expected}")]
    WrongType { key: String, found: String, expected: &'static str },
    /// An array holds an element of the wrong kind.
    #[error("metadata key {key} holds {found}, expected {expected}")]
    WrongElement { key: String, found: String, expected: &'static str },
    #[error("metadata key {key} is a per-layer array; only one value for all layers is supported")]
    PerLayerArray { key: String },
}

/// GGUF metadata that does not describe a model this build runs.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(
        "general.architecture \"{architecture}\" is not supported; supported: {}",
        SUPPORTED_ARCHITECTURES.join(", ")
    )]
    UnsupportedArchitecture { architecture: String },
    #[error("{key} is 0")]
    Zero { key: String },
    #[error("{key} ({value_length}) differs from the key length ({head_dim}); not supported")]
    ValueLength { key: String, value_length: usize, head_dim: usize },
    #[error(
        "{key} is {rope_dim} but heads have {head_dim} dimensions; it must be even and at most that"
    )]
    PartialRotary { key: String, rope_dim: usize, head_dim: usize },
    #[error("{key} \"{scaling_type}\" is not supported; supported: none, linear")]
    UnsupportedRopeScaling { key: String, scaling_type: String },
    /// The config built from the metadata does not deserialize.
    #[error("{0}")]
    Config(#[source] serde_json::Error),
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// llama q/k rows that cannot be un-permuted.
    #[error("{rows} rows cannot be split into {heads} heads of rotary pairs")]
    RotaryRows { rows: usize, heads: usize },
}

fn wrong_type(key: &str, v: &Value, expected: &'static str) -> MetadataError {
    MetadataError::WrongType { key: key.to_string(), found: type_name(v), expected }
}

fn wrong_element(key: &str, found: String, expected: &'static str) -> MetadataError {
    MetadataError::WrongElement { key: key.to_string(), found, expected }
}

fn type_name(v: &Value) -> String {
    format!("{:?}", v.value_type()).to_lowercase()
}

fn integer(v: &Value) -> Option<i128> {
    Some(match v {
        Value::U8(x) => *x as i128,
        Value::I8(x) => *x as i128,
        Value::U16(x) => *x as i128,
        Value::I16(x) => *x as i128,
        Value::U32(x) => *x as i128,
        Value::I32(x) => *x as i128,
        Value::U64(x) => *x as i128,
        Value::I64(x) => *x as i128,
        _ => return None,
    })
}

impl Meta<'_> {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    fn require(&self, key: &str) -> Result<&Value, MetadataError> {
        self.0.get(key).ok_or_else(|| MetadataError::MissingKey { key: key.to_string() })
    }

    fn array(&self, key: &str) -> Result<&Vec<Value>, MetadataError> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            other => Err(wrong_type(key, other, "an array")),
        }
    }

    pub fn string(&self, key: &str) -> Result<String, MetadataError> {
        match self.require(key)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(wrong_type(key, other, "a string")),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>, MetadataError> {
        self.array(key)?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong_element(key, type_name(other), "strings")),
            })
            .collect()
    }

    pub fn u32s(&self, key: &str) -> Result<Vec<u32>, MetadataError> {
        self.array(key)?
            .iter()
            .map(|v| {
                integer(v)
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or_else(|| wrong_element(key, format!("{v:?}"), "non-negative integers"))
            })
            .collect()
    }

    /// An array of 8-bit integers (signed or not) as raw bytes.
    pub fn bytes(&self, key: &str) -> Result<Vec<u8>, MetadataError> {
        self.array(key)?
            .iter()
            .map(|v| match v {
                Value::U8(x) => Ok(*x),
                Value::I8(x) => Ok(*x as u8),
                other => Err(wrong_element(key, type_name(other), "8-bit integers")),
            })
            .collect()
    }

    pub fn f32s(&self, key: &str) -> Result<Vec<f32>, MetadataError> {
        self.array(key)?
            .iter()
            .map(|v| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                // llama.cpp also reads int32 scores.
                other => integer(other)
                    .map(|i| i as f32)
                    .ok_or_else(|| wrong_element(key, type_name(other), "floats")),
            })
            .collect()
    }

    /// An integer; negative values (llama.cpp's "unset" -1) read as absent.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, MetadataError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => match integer(v) {
                Some(i) => Ok(u64::try_from(i).ok()),
                None => Err(wrong_type(key, v, "an integer")),
            },
        }
    }

    fn usize(&self, key: &str) -> Result<usize, MetadataError> {
        match self.require(key)? {
            Value::Array(_) => Err(MetadataError::PerLayerArray { key: key.to_string() }),
            v => integer(v).and_then(|i| usize::try_from(i).ok()).ok_or_else(|| {
                MetadataError::WrongType {
                    key: key.to_string(),
                    found: format!("{v:?}"),
                    expected: "a non-negative integer",
                }
            }),
        }
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>, MetadataError> {
        if self.0.contains_key(key) {
            self.usize(key).map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>, MetadataError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::F32(x)) => Ok(Some(*x as f64)),
            Some(Value::F64(x)) => Ok(Some(*x)),
            Some(other) => Err(wrong_type(key, other, "a float")),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, MetadataError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(key, other, "a bool")),
        }
    }
}

/// A candle error without the backtrace candle attaches when `RUST_BACKTRACE` is set: these
/// messages reach users.
fn plain(e: &candle_core::Error) -> &candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => plain(inner),
        other => other,
    }
}

/// One tensor of the file and where it goes.
struct Mapped {
    gguf: String,
    hf: String,
    /// Heads whose rows llama.cpp permuted for ggml's interleaved rope (llama q/k).
    unpermute_heads: Option<usize>,
    /// The rows `(start, len)` of the GGUF tensor this name is (a fused tensor's part, an
    /// expert of a 3-D one); `None`: all of it.
    rows: Option<(usize, usize)>,
}

/// A GGUF file's tensors, ready to be dequantized into a `VarBuilder`.
pub struct GgufWeights {
    path: PathBuf,
    content: Content,
    tensors: Vec<Mapped>,
}

impl GgufWeights {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `general.architecture`, if this build runs it.
fn architecture(meta: &Meta) -> Result<String, GgufError> {
    let arch = meta.string("general.architecture")?;
    if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(GgufError::UnsupportedArchitecture { architecture: arch });
    }
    Ok(arch)
}

/// Tensors read into the config rather than loaded: llama.cpp's rope divisors (Llama 3 scaling)
/// and Phi-3's longrope factors.
#[derive(Default)]
struct RopeTensors {
    freqs: Option<Vec<f32>>,
    short: Option<Vec<f32>>,
    long: Option<Vec<f32>>,
}

/// The `model_type` a GGUF architecture is in HF's terms.
fn model_type(arch: &str, experts: bool) -> &str {
    match arch {
        "llama" if experts => "mixtral",
        "gemma3" => "gemma3_text",
        "gptneox" => "gpt_neox",
        "qwen2moe" => "qwen2_moe",
        "qwen3moe" => "qwen3_moe",
        other => other,
    }
}

/// The model config the metadata describes (`{arch}.*` keys, as llama.cpp writes them). Where
/// the file is silent, llama.cpp's own assumptions hold (Gemma's attention scale and layer
/// pattern, which experts renormalise), so a file runs as llama.cpp runs it.
fn model_config(
    meta: &Meta,
    content: &Content,
    vocab_size: usize,
    rope: RopeTensors,
) -> Result<ModelConfig, GgufError> {
    let arch = architecture(meta)?;
    let key = |k: &str| format!("{arch}.{k}");
    let experts = meta.opt_usize(&key("expert_count"))?.filter(|&n| n > 0);
    let model_type = model_type(&arch, experts.is_some());
    let hidden = meta.usize(&key("embedding_length"))?;
    let heads = meta.usize(&key("attention.head_count"))?;
    if heads == 0 {
        return Err(GgufError::Zero { key: key("attention.head_count") });
    }
    let kv_heads = meta.opt_usize(&key("attention.head_count_kv"))?.unwrap_or(heads);
    let head_dim = meta.opt_usize(&key("attention.key_length"))?.unwrap_or(hidden / heads);
    if let Some(v) = meta.opt_usize(&key("attention.value_length"))? {
        if v != head_dim {
            return Err(GgufError::ValueLength {
                key: key("attention.value_length"),
                value_length: v,
                head_dim,
            });
        }
    }
    let mut partial_rotary = None;
    if let Some(rope_dim) = meta.opt_usize(&key("rope.dimension_count"))? {
        if rope_dim > head_dim || !rope_dim.is_multiple_of(2) || rope_dim == 0 {
            return Err(GgufError::PartialRotary {
                key: key("rope.dimension_count"),
                rope_dim,
                head_dim,
            });
        }
        if rope_dim != head_dim {
            partial_rotary = Some(rope_dim as f64 / head_dim as f64);
        }
    }
    let scaling_type = match meta.get(&key("rope.scaling.type")) {
        Some(_) => meta.string(&key("rope.scaling.type"))?,
        None => "none".into(),
    };
    let factor =
        meta.opt_f64(&key("rope.scaling.factor"))?.or(meta.opt_f64(&key("rope.scale_linear"))?);
    let mut rope_scaling = match (scaling_type.as_str(), factor) {
        ("none", None) => None,
        ("none" | "linear", Some(1.0)) => None,
        ("none" | "linear", Some(f)) => Some(json!({"rope_type": "linear", "factor": f})),
        (other, _) => {
            return Err(GgufError::UnsupportedRopeScaling {
                key: key("rope.scaling.type"),
                scaling_type: other.to_string(),
            })
        }
    };
    if let Some(short) = &rope.short {
        rope_scaling = Some(json!({
            "rope_type": "longrope",
            "short_factor": short,
            "long_factor": rope.long,
            "original_max_position_embeddings": meta.opt_usize(&key("rope.scaling.original_context_length"))?,
            "attention_factor": meta.opt_f64(&key("rope.scaling.attn_factor"))?,
        }));
    }
    let vocab_size = meta.opt_usize(&key("vocab_size"))?.unwrap_or(vocab_size);
    let has = |t: &str| content.tensor_infos.contains_key(t);
    let bias = |t: &str| has(&format!("blk.0.{t}.bias"));
    let eps = match meta.opt_f64(&key("attention.layer_norm_rms_epsilon"))? {
        Some(e) => e,
        None => meta.opt_f64(&key("attention.layer_norm_epsilon"))?.ok_or_else(|| {
            MetadataError::MissingKey { key: key("attention.layer_norm_rms_epsilon") }
        })?,
    };
    let layers = meta.usize(&key("block_count"))?;
    let feed_forward = meta.usize(&key("feed_forward_length"))?;
    let mut cfg = json!({
        "model_type": model_type,
        "hidden_size": hidden,
        "intermediate_size": feed_forward,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab_size,
        "rms_norm_eps": eps,
        "rope_theta": meta.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
        "rope_scaling": rope_scaling,
        "partial_rotary_factor": partial_rotary,
        "max_position_embeddings": meta.usize(&key("context_length"))?,
        "tie_word_embeddings": !has("output.weight"),
        "attention_bias": bias("attn_q") || bias("attn_qkv"),
        "mlp_bias": bias("ffn_up"),
        "rope_freq_factors": rope.freqs,
    });
    let set = |cfg: &mut serde_json::Value, k: &str, v: serde_json::Value| {
        cfg[k] = v;
    };
    match model_type {
        "gemma2" | "gemma3_text" => {
            // llama.cpp scales queries by head_dim^-0.5, or (hidden/heads)^-0.5 for the 27B
            // models, which it knows by their layer count; files carry no query_pre_attn_scalar.
            let big = (model_type == "gemma2" && layers == 46) || layers == 62;
            let scalar = if big { hidden / heads } else { head_dim };
            set(&mut cfg, "query_pre_attn_scalar", json!(scalar));
            set(&mut cfg, "hidden_activation", json!("gelu_pytorch_tanh"));
            set(&mut cfg, "norm_weights_include_one", json!(true));
            set(
                &mut cfg,
                "final_logit_softcapping",
                json!(meta.opt_f64(&key("final_logit_softcapping"))?),
            );
            let window = meta.opt_usize(&key("attention.sliding_window"))?.filter(|&w| w > 0);
            let pattern = if model_type == "gemma2" { 2 } else { 6 };
            let window = if model_type == "gemma2" { Some(window.unwrap_or(4096)) } else { window };
            set(&mut cfg, "sliding_window", json!(window));
            set(
                &mut cfg,
                "layer_types",
                json!(layer_types(
                    meta,
                    &key("attention.sliding_window_pattern"),
                    layers,
                    pattern,
                    window.is_some()
                )?),
            );
            if model_type == "gemma2" {
                set(
                    &mut cfg,
                    "attn_logit_softcapping",
                    json!(meta.opt_f64(&key("attn_logit_softcapping"))?),
                );
            } else {
                let local = meta.opt_f64(&key("rope.freq_base_swa"))?.unwrap_or(10_000.0);
                set(&mut cfg, "rope_local_base_freq", json!(local));
            }
        }
        "phi3" => {
            let window = meta.opt_usize(&key("attention.sliding_window"))?.filter(|&w| w > 0);
            set(&mut cfg, "sliding_window", json!(window));
        }
        "gpt_neox" => {
            set(&mut cfg, "hidden_act", json!("gelu"));
            let parallel = meta.opt_bool(&key("use_parallel_residual"))?.unwrap_or(true);
            set(&mut cfg, "use_parallel_residual", json!(parallel));
        }
        "gpt2" => set(&mut cfg, "hidden_act", json!("gelu_new")),
        _ => {}
    }
    if let Some(experts) = experts {
        set(&mut cfg, "num_experts", json!(experts));
        set(&mut cfg, "num_experts_per_tok", json!(meta.usize(&key("expert_used_count"))?));
        let width = meta.opt_usize(&key("expert_feed_forward_length"))?.unwrap_or(feed_forward);
        set(&mut cfg, "moe_intermediate_size", json!(width));
        let shared = meta.opt_usize(&key("expert_shared_feed_forward_length"))?;
        set(&mut cfg, "shared_expert_intermediate_size", json!(shared));
        // As llama.cpp builds each: Qwen3-MoE renormalises its top-k weights, Qwen2-MoE and
        // OLMoE do not (Mixtral always does).
        let norm = meta.opt_bool(&key("expert_weights_norm"))?.unwrap_or(model_type == "qwen3_moe");
        set(&mut cfg, "norm_topk_prob", json!(norm));
        set(&mut cfg, "qkv_bias", json!(bias("attn_q")));
    }
    if !matches!(model_type, "gemma2" | "gemma3_text" | "gpt_neox" | "gpt2") {
        set(&mut cfg, "hidden_act", json!("silu"));
    }
    let cfg: ModelConfig = serde_json::from_value(cfg).map_err(GgufError::Config)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Which layers slide, as llama.cpp decides: `{arch}.attention.sliding_window_pattern` as one
/// flag per layer or a period (every n-th layer global), else the family's period.
fn layer_types(
    meta: &Meta,
    key: &str,
    layers: usize,
    default_period: usize,
    sliding: bool,
) -> Result<Vec<&'static str>, GgufError> {
    let name = |s: bool| if s && sliding { "sliding_attention" } else { "full_attention" };
    if let Some(Value::Array(flags)) = meta.get(key) {
        let flags: Vec<bool> = flags
            .iter()
            .map(|f| match f {
                Value::Bool(b) => Ok(*b),
                other => Err(wrong_element(key, type_name(other), "bools")),
            })
            .collect::<Result<_, _>>()?;
        if flags.len() != layers {
            return Err(ConfigError::LayerTypesLength { found: flags.len(), layers }.into());
        }
        return Ok(flags.into_iter().map(name).collect());
    }
    let period = meta.opt_usize(key)?.unwrap_or(default_period);
    Ok((0..layers).map(|i| name(period == 0 || i % period < period - 1)).collect())
}

/// A v2/v3 GGUF file's reader positioned just past its metadata, with the tensor and
/// metadata counts; `None` when the header cannot be walked.
fn skip_metadata(path: &Path) -> Option<(BufReader<File>, u64, u64)> {
    use std::io::Read;
    let mut r = BufReader::new(File::open(path).ok()?);
    let u32_ = |r: &mut BufReader<File>| -> Option<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).ok()?;
        Some(u32::from_le_bytes(b))
    };
    let u64_ = |r: &mut BufReader<File>| -> Option<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b).ok()?;
        Some(u64::from_le_bytes(b))
    };
    // Within the buffer, not a system call: a vocabulary is hundreds of thousands of strings.
    let skip = |r: &mut BufReader<File>, n: u64| -> Option<()> {
        r.seek_relative(i64::try_from(n).ok()?).ok()
    };
    if u32_(&mut r)? != u32::from_le_bytes(*b"GGUF") || u32_(&mut r)? < 2 {
        return None;
    }
    let tensors = u64_(&mut r)?;
    let kvs = u64_(&mut r)?;
    fn size_of(t: u32) -> Option<u64> {
        Some(match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => return None,
        })
    }
    for _ in 0..kvs {
        let key_len = u64_(&mut r)?;
        skip(&mut r, key_len)?;
        let t = u32_(&mut r)?;
        let (elem, count) = if t == 9 { (u32_(&mut r)?, u64_(&mut r)?) } else { (t, 1) };
        if elem == 8 {
            for _ in 0..count {
                let n = u64_(&mut r)?;
                skip(&mut r, n)?;
            }
        } else {
            skip(&mut r, size_of(elem)?.checked_mul(count)?)?;
        }
    }
    Some((r, tensors, kvs))
}

/// The name of the first tensor whose ggml type id is `type_id`, found by walking the GGUF
/// (v2/v3) header; `None` when the header cannot be walked. Only for messages: candle's reader
/// reports an unknown type without the tensor.
fn tensor_with_type(path: &Path, type_id: u32) -> Option<String> {
    use std::io::Read;
    let (mut r, tensors, _) = skip_metadata(path)?;
    let word = |r: &mut BufReader<File>, n: usize| -> Option<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b[..n]).ok()?;
        Some(u64::from_le_bytes(b))
    };
    for _ in 0..tensors {
        let name_len = word(&mut r, 8)?;
        if name_len > 1 << 16 {
            return None;
        }
        let mut name = vec![0u8; name_len as usize];
        r.read_exact(&mut name).ok()?;
        let dims = word(&mut r, 4)?;
        r.seek_relative(8 * i64::try_from(dims).ok()?).ok()?;
        if word(&mut r, 4)? == u64::from(type_id) {
            return Some(String::from_utf8_lossy(&name).into_owned());
        }
        r.seek_relative(8).ok()?;
    }
    None
}

/// A v2/v3 GGUF file's metadata without its tensor index (whose tensor types candle may not
/// know), read by handing candle the header with no tensors; `None` when the header cannot be
/// walked.
fn metadata_only(path: &Path) -> Option<HashMap<String, Value>> {
    use std::io::{Read, Seek, SeekFrom};
    let (mut r, _, kvs) = skip_metadata(path)?;
    let end = r.stream_position().ok()?;
    // magic, version, tensor count, metadata count: 24 bytes.
    let mut header = vec![0u8; usize::try_from(end).ok()?];
    r.seek(SeekFrom::Start(0)).ok()?;
    r.read_exact(&mut header).ok()?;
    header[8..16].copy_from_slice(&0u64.to_le_bytes());
    header[16..24].copy_from_slice(&kvs.to_le_bytes());
    Content::read(&mut std::io::Cursor::new(header)).ok().map(|c| c.metadata)
}

/// Reads a `.gguf` file's header: metadata and tensor index, not the tensor data. Returns it
/// with the file's length.
fn read_header(path: &Path) -> Result<(Content, u64)> {
    let origin = path.display().to_string();
    let bad = |m: String| Error::model(&origin, m);
    if path.is_dir() {
        return Err(bad("is a directory, not a .gguf file".into()));
    }
    if !path.exists() {
        return Err(bad("no such file".into()));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let content = Content::read(&mut BufReader::new(file)).map_err(|e| {
        let e = plain(&e);
        let eof = matches!(e, candle_core::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof);
        let text = e.to_string();
        if let Some(id) = text.strip_prefix("unknown dtype for tensor ") {
            let tensor = id
                .trim()
                .parse()
                .ok()
                .and_then(|id| tensor_with_type(path, id))
                .map_or_else(|| "a tensor".to_string(), |name| format!("tensor {name}"));
            bad(format!(
                "{tensor} has ggml type {id}, which this build does not read; \
                 supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K"
            ))
        } else if eof || text.contains(" remaining") {
            bad(format!("the file is truncated: it ends inside the GGUF header ({e})"))
        } else {
            bad(format!("not a valid GGUF file: {e}"))
        }
    })?;
    Ok((content, file_len))
}

/// The tokenizer embedded in a `.gguf` file, read from its metadata alone: any architecture, and
/// files holding only a vocabulary (llama.cpp's `ggml-vocab-*.gguf`) too.
pub fn tokenizer(path: &Path) -> Result<gguf_tokenizer::GgufTokenizer> {
    let metadata = match metadata_only(path) {
        Some(m) => m,
        // Not walkable (GGUF v1, or damaged): candle's reader explains what is wrong.
        None => read_header(path)?.0.metadata,
    };
    gguf_tokenizer::from_metadata(&metadata)
        .map_err(|m| Error::model(path.display().to_string(), format!("tokenizer: {m}")))
}

/// Reads a `.gguf` file's metadata and tensor index (not the tensor data) into a checkpoint.
pub fn checkpoint(path: &Path) -> Result<Checkpoint> {
    let origin = path.display().to_string();
    let bad = |m: String| Error::model(&origin, m);
    let (content, file_len) = read_header(path)?;

    // Every tensor's bytes must lie inside the file, so a truncated download fails here (naming
    // the first tensor cut off).
    let mut infos: Vec<_> = content.tensor_infos.iter().collect();
    infos.sort_by_key(|(_, info)| info.offset);
    for (name, info) in infos {
        // Dimensions come from the file: their product may not fit a usize (found by fuzzing).
        let elems = info.shape.dims().iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| {
            bad(format!("tensor {name}: shape {:?} has more elements than any file can hold: the header is corrupt", info.shape.dims()))
        })?;
        let block = info.ggml_dtype.block_size();
        if !elems.is_multiple_of(block) {
            return Err(bad(format!(
                "tensor {name}: {elems} elements of type {:?} are not a whole number of {block}-element blocks",
                info.ggml_dtype
            )));
        }
        let size = (elems / block).saturating_mul(info.ggml_dtype.type_size()) as u64;
        let end = content.tensor_data_offset.saturating_add(info.offset).saturating_add(size);
        if end > file_len {
            return Err(bad(format!(
                "the file is truncated: tensor {name} ends at byte {end} but the file has {file_len} bytes"
            )));
        }
    }

    let meta = Meta(&content.metadata);
    architecture(&meta).map_err(|e| bad(e.to_string()))?;
    let tok = gguf_tokenizer::from_metadata(&content.metadata)
        .map_err(|m| bad(format!("tokenizer: {m}")))?;
    let read_vector = |name: &str| -> Result<Option<Vec<f32>>> {
        if !content.tensor_infos.contains_key(name) {
            return Ok(None);
        }
        let mut reader = BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?);
        content
            .tensor(&mut reader, name, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>())
            .map(Some)
            .map_err(|e| bad(format!("tensor {name}: {}", plain(&e))))
    };
    let rope = RopeTensors {
        freqs: read_vector(ROPE_FREQS)?,
        short: read_vector("rope_factors_short.weight")?,
        long: read_vector("rope_factors_long.weight")?,
    };
    let cfg =
        model_config(&meta, &content, tok.vocab_size, rope).map_err(|e| bad(e.to_string()))?;
    if tok.vocab_size > cfg.vocab_size {
        return Err(bad(format!(
            "tokenizer.ggml.tokens has {} tokens but the model's vocabulary size is {}",
            tok.vocab_size, cfg.vocab_size
        )));
    }

    // llama.cpp's converter permutes llama q/k rows for ggml's interleaved ("normal") rope; the
    // decoder rotates halves as HF does, so those rows are put back. qwen2/qwen3 use NeoX rope
    // in ggml, which is HF's layout already.
    let permuted = matches!(cfg.model_type.as_deref(), Some("llama" | "mixtral"));
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::new();
    for name in names.into_iter().filter(|n| !gguf_names::CONFIG_TENSORS.contains(&n.as_str())) {
        let targets = gguf_names::targets(name, &cfg).ok_or_else(|| {
            bad(format!("unexpected tensor {name}: not part of any model this build runs"))
        })?;
        let unpermute_heads = match name.rsplit('.').nth(1) {
            Some("attn_q") if permuted => Some(cfg.num_attention_heads),
            Some("attn_k") if permuted => Some(cfg.num_kv_heads()),
            _ => None,
        };
        for t in targets {
            tensors.push(Mapped { gguf: name.clone(), hf: t.hf, unpermute_heads, rows: t.rows });
        }
    }

    let mut tokenizer_config = json!({"bos_token": tok.bos_token, "eos_token": tok.eos_token});
    if meta.get("tokenizer.chat_template").is_some() {
        tokenizer_config["chat_template"] =
            json!(meta.string("tokenizer.chat_template").map_err(|e| bad(e.to_string()))?);
    }
    let generation_config =
        if tok.eos_ids.is_empty() { json!({}) } else { json!({"eos_token_id": tok.eos_ids}) };
    let config_json = serde_json::to_string(&cfg).map_err(|e| bad(e.to_string()))?;
    Ok(Checkpoint {
        origin,
        config_json,
        tokenizer_json: tok.json.to_string().into_bytes(),
        tokenizer_config_json: Some(tokenizer_config.to_string()),
        generation_config_json: Some(generation_config.to_string()),
        chat_template_jinja: None,
        weights: WeightFiles::Gguf(Box::new(GgufWeights {
            path: path.to_path_buf(),
            content,
            tensors,
        })),
        lora: None,
    })
}

/// Puts back rows llama.cpp permuted: GGUF = HF viewed as `[heads, 2, d/2, …]` with axes 1 and
/// 2 swapped, so viewing GGUF as `[heads, d/2, 2, …]` and swapping again gives HF.
fn unpermute(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        candle_core::bail!("{rows} rows cannot be split into {heads} heads of rotary pairs");
    }
    let mut split = vec![heads, rows / heads / 2, 2];
    split.extend_from_slice(&dims[1..]);
    t.reshape(split)?.transpose(1, 2)?.contiguous()?.reshape(dims)
}

/// Rows of a `[rows, …]` tensor's raw bytes put back in HF order (see [`unpermute`]): GGUF row
/// `h·d + 2j + i` is HF row `h·d + i·d/2 + j`. Quantisation blocks lie within a row, so this
/// works on any type.
fn unpermute_rows(
    raw: &[u8],
    rows: usize,
    heads: usize,
) -> std::result::Result<Vec<u8>, GgufError> {
    if heads == 0 || !rows.is_multiple_of(2 * heads) || !raw.len().is_multiple_of(rows) {
        return Err(GgufError::RotaryRows { rows, heads });
    }
    let (d, row) = (rows / heads, raw.len() / rows);
    let mut out = vec![0u8; raw.len()];
    for h in 0..heads {
        for j in 0..d / 2 {
            for i in 0..2 {
                let (from, to) = (h * d + 2 * j + i, h * d + i * d / 2 + j);
                out[to * row..(to + 1) * row].copy_from_slice(&raw[from * row..(from + 1) * row]);
            }
        }
    }
    Ok(out)
}

/// The GGUF types the host kernels hold as stored.
fn stored_type(t: GgmlDType) -> Option<GgufType> {
    Some(match t {
        GgmlDType::Q8_0 => GgufType::Q8_0,
        GgmlDType::Q4_0 => GgufType::Quant(QuantType::Q4_0),
        GgmlDType::Q4_1 => GgufType::Quant(QuantType::Q4_1),
        GgmlDType::Q5_0 => GgufType::Quant(QuantType::Q5_0),
        GgmlDType::Q5_1 => GgufType::Quant(QuantType::Q5_1),
        GgmlDType::Q2K => GgufType::Quant(QuantType::Q2_K),
        GgmlDType::Q3K => GgufType::Quant(QuantType::Q3_K),
        GgmlDType::Q4K => GgufType::Quant(QuantType::Q4_K),
        GgmlDType::Q5K => GgufType::Quant(QuantType::Q5_K),
        GgmlDType::Q6K => GgufType::Quant(QuantType::Q6_K),
        _ => return None,
    })
}

/// Bytes of a float tensor [`GgufReader`] reads at a time (whole rows, or whole heads of rows).
const PIECE_BYTES: usize = 4 << 20;

/// Reads a GGUF file's tensors one at a time, as they are asked for: a `VarBuilder` backend
/// (dequantized, for candle's decoder and float host weights) and [`StoredTensors`] (as stored,
/// for the host kernels). Loading so holds one tensor at a time besides what was built from the
/// earlier ones.
pub struct GgufReader<'a> {
    weights: &'a GgufWeights,
    by_hf: HashMap<&'a str, &'a Mapped>,
    reader: Mutex<BufReader<File>>,
    /// The piece of a float tensor `float_rows` last read, reused: a fresh buffer per tensor
    /// cost its pages' faults every time (half of loading a 1B f32 file). About
    /// [`PIECE_BYTES`].
    scratch: Mutex<Vec<u8>>,
    /// [`PIECE_BYTES`] (smaller in tests).
    piece_bytes: usize,
    origin: String,
}

impl GgufWeights {
    /// A reader of this file's tensors (opening the file).
    pub fn reader(&self, origin: &str) -> Result<GgufReader<'_>> {
        let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let by_hf = self.tensors.iter().map(|m| (m.hf.as_str(), m)).collect();
        Ok(GgufReader {
            weights: self,
            by_hf,
            reader: Mutex::new(BufReader::new(file)),
            scratch: Mutex::new(Vec::new()),
            piece_bytes: PIECE_BYTES,
            origin: origin.to_string(),
        })
    }
}

impl GgufReader<'_> {
    fn mapped(&self, hf: &str) -> candle_core::Result<&Mapped> {
        self.by_hf
            .get(hf)
            .copied()
            .ok_or_else(|| candle_core::Error::CannotFindTensor { path: hf.to_string() }.bt())
    }

    /// Tensor `m` as candle reads it from the file.
    fn qtensor(&self, m: &Mapped) -> candle_core::Result<QTensor> {
        let mut reader =
            self.reader.lock().map_err(|_| candle_core::Error::msg("GGUF reader poisoned"))?;
        self.weights.content.tensor(&mut *reader, &m.gguf, &Device::Cpu).map_err(|e| {
            candle_core::Error::msg(format!("{}: tensor {}: {}", self.origin, m.gguf, plain(&e)))
        })
    }

    /// Tensor `hf` dequantized to f32 on the CPU, rows in HF order.
    fn dequantized(&self, hf: &str) -> candle_core::Result<Tensor> {
        let m = self.mapped(hf)?;
        let mut t = self.qtensor(m)?.dequantize(&Device::Cpu)?;
        if let Some(heads) = m.unpermute_heads {
            t = unpermute(&t, heads)?;
        }
        if let Some((start, len)) = m.rows {
            // A 3-D tensor's experts are its rows, one expert's after another.
            let cols = t.dims().last().copied().unwrap_or(1);
            if t.rank() > 1 {
                t = t.reshape((t.elem_count() / cols, cols))?;
            }
            t = t.narrow(0, start, len)?;
        }
        Ok(t)
    }
}

impl candle_nn::var_builder::SimpleBackend for GgufReader<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.dequantized(name)?;
        if t.shape() != &s {
            candle_core::bail!(
                "shape mismatch for {name}, got {:?}, expected {:?}",
                t.dims(),
                s.dims()
            );
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.dequantized(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.by_hf.contains_key(name)
    }
}

impl StoredTensors for GgufReader<'_> {
    fn stored_type(&self, name: &str) -> Option<GgufType> {
        let m = self.by_hf.get(name)?;
        let info = self.weights.content.tensor_infos.get(&m.gguf)?;
        stored_type(info.ggml_dtype).filter(|t| {
            // Rows are whole blocks (checked when the file was opened) on matrices only (a 3-D
            // tensor is its experts' matrices).
            matches!(info.shape.rank(), 2 | 3)
                && info.shape.dims().last().is_some_and(|c| c.is_multiple_of(t.block_len()))
        })
    }

    fn half_type(&self, name: &str) -> Option<candle_core::DType> {
        let m = self.by_hf.get(name)?;
        let info = self.weights.content.tensor_infos.get(&m.gguf)?;
        if !matches!(info.shape.rank(), 2 | 3) {
            return None;
        }
        float_dtype(info.ggml_dtype).filter(|&t| t != DType::F32)
    }

    fn stored_bytes(&self, name: &str) -> candle_core::Result<Vec<u8>> {
        let m = self.mapped(name)?;
        raw_rows(m, &self.qtensor(m)?)
    }

    fn float_rows(
        &self,
        name: &str,
        dtype: DType,
        (rows, cols): (usize, usize),
        take: &mut dyn FnMut(&[u8]),
    ) -> candle_core::Result<bool> {
        let m = self.mapped(name)?;
        let Some(info) = self.weights.content.tensor_infos.get(&m.gguf) else {
            return Ok(false);
        };
        let Some(stored) = float_dtype(info.ggml_dtype).filter(|&t| t == dtype) else {
            return Ok(false);
        };
        let dims = info.shape.dims();
        let all_rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
        let stored_cols = dims.last().copied().unwrap_or(1);
        let stored_rows = m.rows.map_or(all_rows, |r| r.1);
        if (stored_rows, stored_cols) != (rows, cols) {
            candle_core::bail!(
                "shape mismatch for {name}, got [{stored_rows}, {stored_cols}], expected [{rows}, {cols}]"
            );
        }
        let failed = |e: std::io::Error| {
            candle_core::Error::msg(format!("{}: tensor {}: {e}", self.origin, m.gguf))
        };
        let row = stored_cols * stored.size_in_bytes();
        // Read in pieces of whole rows (whole heads where the rows are permuted within heads),
        // so loading holds a few MB besides the weights rather than the largest tensor.
        let layout = match (m.unpermute_heads, m.rows) {
            (None, None) => Pieces::Rows { first: 0, count: all_rows },
            (None, Some((first, count))) => Pieces::Rows { first, count },
            (Some(heads), None) if heads > 0 && all_rows.is_multiple_of(heads) => {
                Pieces::Heads { rows_per_head: all_rows / heads }
            }
            // Rows cut from a permuted tensor: the cut applies after unpermuting the whole.
            _ => Pieces::Whole,
        };
        let (first, count, unit) = match layout {
            Pieces::Rows { first, count } => (first, count, 1),
            Pieces::Heads { rows_per_head } => (0, all_rows, rows_per_head),
            Pieces::Whole => (0, all_rows, all_rows),
        };
        let per_piece = (self.piece_bytes / (unit * row).max(1)).max(1) * unit;
        let mut scratch =
            self.scratch.lock().map_err(|_| candle_core::Error::msg("GGUF reader poisoned"))?;
        let mut reader =
            self.reader.lock().map_err(|_| candle_core::Error::msg("GGUF reader poisoned"))?;
        let at = self.weights.content.tensor_data_offset + info.offset + (first * row) as u64;
        reader.seek(SeekFrom::Start(at)).map_err(failed)?;
        let mut r0 = 0;
        while r0 < count {
            let n = per_piece.min(count - r0);
            let bytes = n * row;
            if scratch.len() < bytes {
                scratch.resize(bytes, 0);
            }
            reader.read_exact(&mut scratch[..bytes]).map_err(failed)?;
            match layout {
                Pieces::Rows { .. } => take(&scratch[..bytes]),
                Pieces::Heads { rows_per_head } => take(
                    &unpermute_rows(&scratch[..bytes], n, n / rows_per_head)
                        .map_err(candle_core::Error::msg)?,
                ),
                Pieces::Whole => take(&hf_rows(m, &scratch[..bytes], all_rows)?),
            }
            r0 += n;
        }
        Ok(true)
    }
}

/// How a float tensor is read in pieces (`GgufReader::float_rows`).
#[derive(Clone, Copy)]
enum Pieces {
    /// Rows as stored, `count` of them from `first`.
    Rows { first: usize, count: usize },
    /// Every row, in pieces of whole heads, each unpermuted on its own.
    Heads { rows_per_head: usize },
    /// Every row in one piece: unpermuted as a whole, then cut.
    Whole,
}

/// The f32, f16 and bf16 GGUF types as candle dtypes.
fn float_dtype(t: GgmlDType) -> Option<DType> {
    match t {
        GgmlDType::F32 => Some(DType::F32),
        GgmlDType::F16 => Some(DType::F16),
        GgmlDType::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// Tensor `q`'s bytes as stored, rows in HF order (see [`hf_rows`]).
fn raw_rows(m: &Mapped, q: &QTensor) -> candle_core::Result<Vec<u8>> {
    let dims = q.shape().dims();
    let rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
    Ok(hf_rows(m, &q.data()?, rows)?.into_owned())
}

/// A stored tensor's bytes (`rows` rows in the file's order) as `m` maps them to its HF tensor:
/// heads unpermuted, an expert's rows cut out.
fn hf_rows<'r>(m: &Mapped, raw: &'r [u8], rows: usize) -> candle_core::Result<Cow<'r, [u8]>> {
    let raw = match m.unpermute_heads {
        Some(heads) => {
            Cow::Owned(unpermute_rows(raw, rows, heads).map_err(candle_core::Error::msg)?)
        }
        None => Cow::Borrowed(raw),
    };
    Ok(match m.rows {
        Some((start, len)) => {
            let row = raw.len() / rows.max(1);
            match raw {
                Cow::Borrowed(b) => Cow::Borrowed(&b[start * row..(start + len) * row]),
                Cow::Owned(o) => Cow::Owned(o[start * row..(start + len) * row].to_vec()),
            }
        }
        None => raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use candle_core::quantized::gguf_file;

    #[test]
    fn float_tensors_are_read_in_pieces_of_whole_rows_that_make_up_the_hf_rows(
    ) -> candle_core::Result<()> {
        let dir = tempfile::tempdir().map_err(candle_core::Error::wrap)?;
        let path = dir.path().join("t.gguf");
        // 48 rows = 4 heads of 12 (q, permuted), 7 columns; f32 and bf16.
        let (rows, cols) = (48, 7);
        let t = Tensor::arange(0f32, (rows * cols) as f32, &Device::Cpu)?.reshape((rows, cols))?;
        let stored = [
            ("a.weight", QTensor::quantize(&t, GgmlDType::F32)?),
            ("b.weight", QTensor::quantize(&t, GgmlDType::BF16)?),
        ];
        let refs: Vec<(&str, &QTensor)> = stored.iter().map(|(n, q)| (*n, q)).collect();
        gguf_file::write(&mut File::create(&path)?, &[], &refs)?;
        let cases =
            [(None, None), (None, Some((5, 30))), (Some(4), None), (Some(4), Some((12, 24)))];
        for (gguf, dtype, size) in [("a.weight", DType::F32, 4), ("b.weight", DType::BF16, 2)] {
            for (unpermute_heads, cut) in cases {
                let m = Mapped { gguf: gguf.into(), hf: "x".into(), unpermute_heads, rows: cut };
                let whole = hf_rows(&m, &raw_rows_of(&stored, gguf)?, rows)?.into_owned();
                let weights = GgufWeights {
                    path: path.clone(),
                    content: Content::read(&mut BufReader::new(File::open(&path)?))?,
                    tensors: vec![m],
                };
                let mut r = weights.reader("test").map_err(candle_core::Error::wrap)?;
                // Five rows a piece: several pieces, and heads (of 12 rows) whole.
                r.piece_bytes = 5 * cols * size;
                let (want_rows, mut pieces) = (cut.map_or(rows, |c| c.1), Vec::new());
                let read =
                    r.float_rows("x", dtype, (want_rows, cols), &mut |p| pieces.push(p.to_vec()))?;
                assert!(read);
                let unit = match (unpermute_heads, cut) {
                    (None, _) => 5,
                    (Some(_), None) => 12,
                    (Some(_), Some(_)) => want_rows,
                };
                assert!(pieces.len() >= want_rows / unit, "{gguf} {unpermute_heads:?} {cut:?}");
                for p in &pieces {
                    assert!(p.len() % (cols * size) == 0 && p.len() <= unit * cols * size);
                }
                assert_eq!(pieces.concat(), whole, "{gguf} {unpermute_heads:?} {cut:?}");
            }
        }
        Ok(())
    }

    /// The file's bytes of tensor `name` as written.
    fn raw_rows_of(stored: &[(&str, QTensor)], name: &str) -> candle_core::Result<Vec<u8>> {
        let q = &stored.iter().find(|(n, _)| *n == name).expect("written").1;
        q.data().map(|d| d.into_owned())
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() -> candle_core::Result<()> {
        let (heads, hd, n_in) = (3, 4, 5);
        let hf = Tensor::arange(0f32, (heads * hd * n_in) as f32, &Device::Cpu)?
            .reshape((heads * hd, n_in))?;
        // convert_hf_to_gguf.py: w.reshape(n_head, 2, hd/2, n_in).swapaxes(1, 2).reshape(out, n_in)
        let gguf = hf
            .reshape((heads, 2, hd / 2, n_in))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((heads * hd, n_in))?;
        assert_ne!(gguf.to_vec2::<f32>()?, hf.to_vec2::<f32>()?);
        assert_eq!(unpermute(&gguf, heads)?.to_vec2::<f32>()?, hf.to_vec2::<f32>()?);
        Ok(())
    }

    #[test]
    fn metadata_errors_name_the_key_and_keep_their_messages() {
        let md = HashMap::from([
            ("a.count".to_string(), Value::String("many".into())),
            ("a.layers".to_string(), Value::Array(vec![Value::U32(1), Value::U32(2)])),
            ("a.names".to_string(), Value::Array(vec![Value::U32(1)])),
            ("general.architecture".to_string(), Value::String("mamba".into())),
        ]);
        let meta = Meta(&md);
        let e = meta.string("missing").unwrap_err();
        assert_eq!(e, MetadataError::MissingKey { key: "missing".into() });
        assert_eq!(e.to_string(), "missing metadata key missing");
        let e = meta.usize("a.layers").unwrap_err();
        assert_eq!(e, MetadataError::PerLayerArray { key: "a.layers".into() });
        let e = meta.opt_bool("a.count").unwrap_err();
        assert_eq!(e.to_string(), "metadata key a.count is string, expected a bool");
        let e = meta.strings("a.names").unwrap_err();
        assert_eq!(e.to_string(), "metadata key a.names holds u32, expected strings");
        let e = architecture(&meta).unwrap_err();
        assert!(
            matches!(&e, GgufError::UnsupportedArchitecture { architecture } if architecture == "mamba")
        );
        assert_eq!(
            e.to_string(),
            "general.architecture \"mamba\" is not supported; supported: llama, qwen2, qwen3, gemma2, gemma3, phi3, olmo2, gptneox, gpt2, qwen2moe, qwen3moe, olmoe"
        );
        let e = GgufError::from(MetadataError::MissingKey { key: "k".into() });
        assert_eq!(e.to_string(), "missing metadata key k");
    }
}
