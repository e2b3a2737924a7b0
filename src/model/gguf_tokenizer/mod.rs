//! A `tokenizer.json` built from the vocabulary embedded in a GGUF file, tokenizing as llama.cpp
//! does (`src/llama-vocab.cpp`). Per `tokenizer.ggml.model`:
//!
//! - `llama` (SentencePiece BPE, [`spm`]): what transformers' `LlamaConverter` makes from a
//!   `tokenizer.model` — BPE with byte fallback, merges derived from vocabulary and scores,
//!   `▁` for spaces.
//! - `gpt2` (byte-level BPE, [`bpe`]): vocabulary and merges as stored, text split by the
//!   regexes llama.cpp uses for `tokenizer.ggml.pre` ([`pretok`]); `gemma4` is the same BPE on
//!   UTF-8 text with SentencePiece-style spaces.
//! - `bert` (WordPiece, [`wpm`]) and `t5` (Unigram, [`ugm`]).
//!
//! Tokens llama.cpp matches whole before splitting ([`attrs`]) become added tokens: control and
//! unknown ones as special tokens (matched only when special tokens are parsed), user-defined
//! ones as plain added tokens (always matched).
//!
//! llama.cpp's other vocabulary kinds (`rwkv`, `plamo2`, `hybriddna`, `whitespace`, `test`, and
//! `none` for no vocabulary) tokenize with hand-written algorithms the tokenizers crate has no
//! model for; they are refused.
//!
//! candle's `TokenizerFromGguf` is not used: it builds a tokenizer of another `tokenizers`
//! version, handles only `gpt2`, and for the plain `gpt2`/default pre-tokenizer adds a prefix
//! space (`"Hello"` → `"ĠHello"`), which GPT-2 and llama.cpp do not.

pub mod attrs;
mod bpe;
#[cfg(test)]
mod hand_split;
pub mod pretok;
mod spm;
mod ugm;
mod wpm;

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use serde_json::{json, Value as Json};

use super::gguf::{Meta, MetadataError};
use attrs::Attr;

/// `tokenizer.ggml.model` values this build tokenizes.
pub const SUPPORTED_MODELS: &[&str] = &["llama", "gpt2", "gemma4", "bert", "t5"];

/// Why a GGUF file's metadata gives no tokenizer; messages name the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerBuildError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    PreTokenizer(#[from] pretok::UnknownPreTokenizer),
    /// A vocabulary kind llama.cpp tokenizes with an algorithm of its own.
    #[error(
        "tokenizer.ggml.model \"{model}\" is not supported: llama.cpp tokenizes it with its own algorithm, \
         which the tokenizers crate cannot express; supported: {}",
        SUPPORTED_MODELS.join(", ")
    )]
    OwnAlgorithm { model: String },
    #[error("tokenizer.ggml.model is \"{model}\": the file has no vocabulary")]
    NoVocabulary { model: String },
    #[error(
        "tokenizer.ggml.model \"{model}\" is not supported; supported: {}",
        SUPPORTED_MODELS.join(", ")
    )]
    UnsupportedModel { model: String },
    #[error("tokenizer.ggml.tokens is empty")]
    NoTokens,
    /// A per-token array (`key`) of the wrong length.
    #[error("{key} has {entries} entries for {tokens} tokens")]
    PerTokenLength { key: &'static str, entries: usize, tokens: usize },
    /// A `kind` vocabulary without an unknown token (`default_id`, llama.cpp's, is not in it).
    #[error(
        "a {kind} vocabulary needs tokenizer.ggml.unknown_token_id (id {default_id} is not in the vocabulary)"
    )]
    NoUnknownToken { kind: &'static str, default_id: u32 },
    #[error("tokenizer.ggml.merges entry {entry:?} is not two tokens separated by a space")]
    BadMerge { entry: String },
}

/// The tokenizer and the special-token facts `LoadedModel` needs besides it.
#[derive(Debug)]
pub struct GgufTokenizer {
    /// The tokenizer.json document.
    pub json: Json,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// `eos_token_id`, then `eot_token_id` and `eom_token_id` (llama.cpp stops at each). These
    /// and the BOS/EOS tokens above are the file's; the tokenizer itself adds llama.cpp's
    /// default ids where the file names none.
    pub eos_ids: Vec<u32>,
    pub vocab_size: usize,
}

/// llama.cpp's vocabulary types.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Spm,
    Bpe(pretok::PreTokenizer),
    Wpm,
    Ugm,
}

/// What every vocabulary kind builds from.
struct Vocab {
    tokens: Vec<String>,
    attrs: Vec<Attr>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    sep: Option<u32>,
    /// Whether `add_special_tokens` adds BOS, resp. EOS (after the file's flags).
    add_bos: bool,
    add_eos: bool,
}

impl Vocab {
    /// The tokens matched whole in the text, as tokenizer.json's `added_tokens` (contents as
    /// `content_of` names them in the model's vocabulary).
    fn added_tokens(&self, content_of: impl Fn(usize) -> String) -> Vec<Json> {
        (0..self.tokens.len())
            .filter(|&i| self.attrs[i].is_special_cache())
            .map(|i| {
                let a = self.attrs[i];
                json!({"id": i, "content": content_of(i), "single_word": false, "lstrip": a.lstrip,
                       "rstrip": a.rstrip, "normalized": false, "special": a.is_special()})
            })
            .collect()
    }

    /// The post-processor adding BOS and/or EOS as llama.cpp does with `add_special`.
    fn post_processor(&self) -> Json {
        template(&self.tokens, self.bos.filter(|_| self.add_bos), self.eos.filter(|_| self.add_eos))
    }

    /// token → id; a repeated token keeps its last id, as Python's dict in the converter does.
    fn vocab_map(&self) -> serde_json::Map<String, Json> {
        self.tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect()
    }
}

/// Builds the tokenizer from GGUF metadata; errors name the offending key.
pub fn from_metadata(
    metadata: &HashMap<String, Value>,
) -> Result<GgufTokenizer, TokenizerBuildError> {
    let meta = Meta(metadata);
    let model = meta.string("tokenizer.ggml.model")?;
    let opt_string = |key: &str| -> Result<Option<String>, MetadataError> {
        meta.get(key).map(|_| meta.string(key)).transpose()
    };
    let pre_name = opt_string("tokenizer.ggml.pre")?;
    let kind = match model.as_str() {
        "llama" => Kind::Spm,
        "gpt2" => Kind::Bpe(pretok::lookup(pre_name.as_deref().filter(|p| !p.is_empty()))?),
        // llama.cpp ignores the file's pre-tokenizer for this one.
        "gemma4" => Kind::Bpe(pretok::lookup(Some("gemma4"))?),
        "bert" => Kind::Wpm,
        "t5" => Kind::Ugm,
        other @ ("rwkv" | "plamo2" | "hybriddna" | "whitespace" | "test") => {
            return Err(TokenizerBuildError::OwnAlgorithm { model: other.to_string() })
        }
        other @ ("none" | "no_vocab") => {
            return Err(TokenizerBuildError::NoVocabulary { model: other.to_string() })
        }
        other => return Err(TokenizerBuildError::UnsupportedModel { model: other.to_string() }),
    };

    // llama.cpp names empty tokens so that every id stays reachable by its text.
    let tokens: Vec<String> = meta
        .strings("tokenizer.ggml.tokens")?
        .into_iter()
        .enumerate()
        .map(|(i, t)| if t.is_empty() { format!("[EMPTY_{i}]") } else { t })
        .collect();
    if tokens.is_empty() {
        return Err(TokenizerBuildError::NoTokens);
    }
    let n = tokens.len();
    let types = match meta.get("tokenizer.ggml.token_type") {
        Some(_) => {
            let types = meta.u32s("tokenizer.ggml.token_type")?;
            if types.len() != n {
                return Err(TokenizerBuildError::PerTokenLength {
                    key: "tokenizer.ggml.token_type",
                    entries: types.len(),
                    tokens: n,
                });
            }
            types
        }
        None => vec![attrs::token_type::NORMAL; n],
    };

    // Special ids: llama.cpp's defaults per kind, replaced by the file's ids that lie in the
    // vocabulary (-1, written for "none", is out of range and keeps the default).
    let in_vocab = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
    let (mut bos, mut eos, mut unk, mut sep) = match &kind {
        Kind::Spm => (Some(1), Some(2), Some(0), None),
        Kind::Wpm => (Some(101), None, Some(100), Some(102)),
        Kind::Bpe(_) if model == "gemma4" => (None, None, None, None),
        Kind::Bpe(pre) if pre.no_bos => (None, Some(11), None, None),
        Kind::Bpe(_) => (Some(11), Some(11), None, None),
        Kind::Ugm => (None, Some(1), Some(2), None),
    };
    let file_id = |key: &str| -> Result<Option<u32>, MetadataError> {
        Ok(in_vocab(
            meta.opt_u64(&format!("tokenizer.ggml.{key}"))?.and_then(|v| u32::try_from(v).ok()),
        ))
    };
    let (file_bos, file_eos) = (file_id("bos_token_id")?, file_id("eos_token_id")?);
    for (key, slot) in [
        ("bos_token_id", &mut bos),
        ("eos_token_id", &mut eos),
        ("unknown_token_id", &mut unk),
        ("seperator_token_id", &mut sep),
    ] {
        *slot = file_id(key)?.or(in_vocab(*slot));
    }
    // Generation stops at the ids the file names, not at llama.cpp's defaults: a `gpt2`
    // vocabulary's default EOS is id 11, Falcon's, which is "," in GPT-2's.
    let mut eos_ids = Vec::new();
    for id in [file_eos, file_id("eot_token_id")?, file_id("eom_token_id")?].into_iter().flatten() {
        if !eos_ids.contains(&id) {
            eos_ids.push(id);
        }
    }

    let (default_bos, default_eos) = match &kind {
        Kind::Spm | Kind::Wpm => (true, false),
        Kind::Bpe(pre) => (pre.add_bos, false),
        Kind::Ugm => (false, true),
    };
    let mut add_bos = meta.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(default_bos);
    let add_eos = meta.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(default_eos);
    // llama.cpp overrides Gemma 4 files that say otherwise.
    if matches!(&kind, Kind::Bpe(pre) if pre.kind == "gemma4") {
        add_bos = true;
    }

    let architecture = opt_string("general.architecture")?.unwrap_or_default();
    let model_name = opt_string("general.name")?.unwrap_or_default().to_lowercase();
    let ids_given = |key: &str| meta.get(&format!("tokenizer.ggml.{key}_token_id")).is_some();
    let cx = attrs::Context {
        ids_given: &ids_given,
        pre: pre_name.as_deref().unwrap_or(""),
        architecture: &architecture,
        model_name: &model_name,
    };
    let attrs = attrs::resolve(&tokens, &types, &cx);
    let vocab = Vocab { tokens, attrs, bos, eos, unk, sep, add_bos, add_eos };

    let json = match &kind {
        Kind::Spm => spm::build(&vocab, &meta)?,
        Kind::Bpe(pre) => bpe::build(&vocab, &meta, pre)?,
        Kind::Wpm => wpm::build(&vocab, &meta)?,
        Kind::Ugm => ugm::build(&vocab, &meta)?,
    };
    let name = |id: Option<u32>| id.map(|i| vocab.tokens[i as usize].clone());
    Ok(GgufTokenizer {
        json,
        bos_token: name(file_bos),
        eos_token: name(file_eos),
        eos_ids,
        vocab_size: n,
    })
}

/// A `TemplateProcessing` adding BOS and/or EOS, as `LlamaTokenizerFast` sets it up; `null`
/// when neither is added.
fn template(tokens: &[String], bos: Option<u32>, eos: Option<u32>) -> Json {
    if bos.is_none() && eos.is_none() {
        return Json::Null;
    }
    let special = |id: u32, type_id: u32| json!({"SpecialToken": {"id": tokens[id as usize], "type_id": type_id}});
    let seq = |name: &str, type_id: u32| json!({"Sequence": {"id": name, "type_id": type_id}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    for (name, type_id) in [("A", 0), ("B", 1)] {
        let part: Vec<Json> = bos
            .map(|b| special(b, type_id))
            .into_iter()
            .chain([seq(name, type_id)])
            .chain(eos.map(|e| special(e, type_id)))
            .collect();
        if name == "A" {
            single.clone_from(&part);
        }
        pair.extend(part);
    }
    let mut specials = serde_json::Map::new();
    for id in bos.into_iter().chain(eos) {
        let t = &tokens[id as usize];
        specials.insert(t.clone(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn strings(v: &[&str]) -> Value {
        Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect())
    }

    fn llama_meta(tokens: &[&str], scores: &[f32]) -> HashMap<String, Value> {
        let mut m = HashMap::new();
        m.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        m.insert("tokenizer.ggml.tokens".into(), strings(tokens));
        m.insert(
            "tokenizer.ggml.scores".into(),
            Value::Array(scores.iter().map(|&s| Value::F32(s)).collect()),
        );
        m.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
        m.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
        m.insert("tokenizer.ggml.unknown_token_id".into(), Value::U32(0));
        m.insert("tokenizer.ggml.padding_token_id".into(), Value::U32(u32::MAX));
        m
    }

    #[test]
    fn llama_style_adds_bos_and_decodes_spaces() {
        let tokens = ["<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi", "<0x21>"];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, 0.0];
        let mut m = llama_meta(&tokens, &scores);
        m.insert(
            "tokenizer.ggml.token_type".into(),
            Value::Array([2, 3, 3, 1, 1, 1, 1, 1, 6].map(Value::I32).to_vec()),
        );
        let t = from_metadata(&m).unwrap();
        assert_eq!((t.bos_token.as_deref(), t.eos_ids.clone()), (Some("<s>"), vec![2]));
        let tok = tokenizers::Tokenizer::from_bytes(t.json.to_string()).unwrap();
        let enc = tok.encode("hi hi!", true).unwrap();
        assert_eq!(enc.get_ids(), &[1, 7, 7, 8]);
        assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "hi hi!");
        assert_eq!(tok.encode("", true).unwrap().get_ids(), &[1]);
    }

    #[test]
    fn bad_metadata_names_the_key() {
        let mut m = llama_meta(&["<unk>", "<s>", "</s>"], &[0.0, 0.0]);
        let e = from_metadata(&m).unwrap_err();
        assert_eq!(
            e,
            TokenizerBuildError::PerTokenLength {
                key: "tokenizer.ggml.scores",
                entries: 2,
                tokens: 3
            }
        );
        assert!(e.to_string().contains("tokenizer.ggml.scores has 2 entries for 3 tokens"));
        m.insert("tokenizer.ggml.model".into(), Value::String("rwkv".into()));
        let e = from_metadata(&m).unwrap_err().to_string();
        assert!(
            e.contains("\"rwkv\"")
                && e.contains("own algorithm")
                && e.contains("llama, gpt2, gemma4, bert, t5"),
            "{e}"
        );
        m.insert("tokenizer.ggml.model".into(), Value::String("sentencepiece".into()));
        let e = from_metadata(&m).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "tokenizer.ggml.model \"sentencepiece\" is not supported; supported: llama, gpt2"
            ),
            "{e}"
        );
        m.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
        m.insert("tokenizer.ggml.pre".into(), Value::String("not-a-pre".into()));
        let e = from_metadata(&m).unwrap_err();
        assert_eq!(
            e,
            TokenizerBuildError::PreTokenizer(pretok::UnknownPreTokenizer {
                name: "not-a-pre".into()
            })
        );
        let e = e.to_string();
        assert!(
            e.contains("tokenizer.ggml.pre \"not-a-pre\" is not supported; supported: default, ")
                && e.contains("smollm"),
            "{e}"
        );
        m.remove("tokenizer.ggml.tokens");
        m.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        let e = from_metadata(&m).unwrap_err();
        assert_eq!(
            e,
            TokenizerBuildError::Metadata(MetadataError::MissingKey {
                key: "tokenizer.ggml.tokens".into()
            })
        );
        assert_eq!(e.to_string(), "missing metadata key tokenizer.ggml.tokens");
    }

    #[test]
    fn special_ids_default_as_in_llama_cpp_and_file_ids_outside_the_vocabulary_are_ignored() {
        let tokens = ["<unk>", "<s>", "</s>", "▁", "a"];
        let mut m = llama_meta(&tokens, &[0.0, 0.0, 0.0, -1.0, -2.0]);
        m.remove("tokenizer.ggml.bos_token_id");
        m.insert("tokenizer.ggml.eos_token_id".into(), Value::I32(-1));
        m.insert("tokenizer.ggml.add_eos_token".into(), Value::Bool(true));
        let t = from_metadata(&m).unwrap();
        // The tokenizer adds llama.cpp's default BOS and EOS (ids 1 and 2; -1 keeps the default)…
        let tok = tokenizers::Tokenizer::from_bytes(t.json.to_string()).unwrap();
        assert_eq!(tok.encode("a", true).unwrap().get_ids(), &[1, 3, 4, 2]);
        // …while generation only knows the ids the file names.
        assert_eq!((t.bos_token, t.eos_token, t.eos_ids), (None, None, vec![]));
    }
}
