//! A `tokenizer.json` built from the vocabulary embedded in a GGUF file, for the two styles
//! llama.cpp writes:
//!
//! - `llama` (SentencePiece BPE): what transformers' `LlamaConverter` makes from a
//!   `tokenizer.model` — BPE with byte fallback, merges derived from vocabulary and scores,
//!   `▁` for spaces, BOS added by the post-processor.
//! - `gpt2` (byte-level BPE): vocabulary and merges as stored, with the pre-tokenizer named by
//!   `tokenizer.ggml.pre`.
//!
//! candle's `TokenizerFromGguf` is not used: it builds a tokenizer of another `tokenizers`
//! version, handles only `gpt2`, and for the plain `gpt2`/default pre-tokenizer adds a prefix
//! space (`"Hello"` → `"ĠHello"`), which GPT-2 and llama.cpp do not.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use serde_json::{json, Value as Json};

use super::gguf::Meta;

/// llama.cpp's `llama_token_type`.
mod token_type {
    pub const UNKNOWN: u32 = 2;
    pub const CONTROL: u32 = 3;
    pub const USER_DEFINED: u32 = 4;
}

/// `tokenizer.ggml.pre` values understood for `gpt2`-style vocabularies.
pub const SUPPORTED_PRE: &[&str] = &["default", "gpt2", "llama-bpe", "llama3", "qwen2"];

/// Llama 3's split regex, as in its tokenizer.json: digits in groups of up to three.
const REGEX_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: the same with single digits.
const REGEX_QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The tokenizer and the special-token facts `LoadedModel` needs besides it.
#[derive(Debug)]
pub struct GgufTokenizer {
    /// The tokenizer.json document.
    pub json: Json,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// `eos_token_id`, then `eot_token_id` and `eom_token_id` (llama.cpp stops at each).
    pub eos_ids: Vec<u32>,
    pub vocab_size: usize,
}

/// Builds the tokenizer from GGUF metadata; errors name the offending key.
pub fn from_metadata(metadata: &HashMap<String, Value>) -> Result<GgufTokenizer, String> {
    let meta = Meta(metadata);
    let kind = meta.string("tokenizer.ggml.model")?;
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        return Err("tokenizer.ggml.tokens is empty".into());
    }
    let types = match meta.get("tokenizer.ggml.token_type") {
        Some(_) => {
            let types = meta.u32s("tokenizer.ggml.token_type")?;
            if types.len() != tokens.len() {
                return Err(format!(
                    "tokenizer.ggml.token_type has {} entries for {} tokens",
                    types.len(),
                    tokens.len()
                ));
            }
            types
        }
        None => vec![1; tokens.len()],
    };
    // Ids llama.cpp leaves unset are written as -1 / u32::MAX: anything outside the vocabulary.
    let id = |key: &str| -> Result<Option<u32>, String> {
        Ok(meta.opt_u64(key)?.and_then(|v| u32::try_from(v).ok()).filter(|&v| (v as usize) < tokens.len()))
    };
    let bos = id("tokenizer.ggml.bos_token_id")?;
    let eos = id("tokenizer.ggml.eos_token_id")?;
    let unk = id("tokenizer.ggml.unknown_token_id")?;
    let mut eos_ids = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(i) = id(key)? {
            if !eos_ids.contains(&i) {
                eos_ids.push(i);
            }
        }
    }
    let add_eos = meta.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);

    let special = |i: usize| {
        let t = types[i];
        t == token_type::CONTROL || t == token_type::UNKNOWN || [bos, eos, unk].contains(&Some(i as u32))
    };
    let added: Vec<Json> = (0..tokens.len())
        .filter(|&i| special(i) || types[i] == token_type::USER_DEFINED)
        .map(|i| {
            json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": special(i)})
        })
        .collect();

    let json = match kind.as_str() {
        "llama" => {
            let scores = meta.f32s("tokenizer.ggml.scores")?;
            if scores.len() != tokens.len() {
                return Err(format!("tokenizer.ggml.scores has {} entries for {} tokens", scores.len(), tokens.len()));
            }
            let add_bos = meta.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(true);
            let prefix_space = meta.opt_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
            let mut normalizers = Vec::new();
            if prefix_space {
                normalizers.push(json!({"type": "Prepend", "prepend": "▁"}));
            }
            normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
            let mut decoders = vec![
                json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if prefix_space {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added,
                "normalizer": {"type": "Sequence", "normalizers": normalizers},
                "pre_tokenizer": null,
                "post_processor": template(&tokens, bos.filter(|_| add_bos), eos.filter(|_| add_eos))?,
                "decoder": {"type": "Sequence", "decoders": decoders},
                "model": {"type": "BPE", "dropout": null,
                          "unk_token": unk.map(|i| tokens[i as usize].clone()),
                          "continuing_subword_prefix": null, "end_of_word_suffix": null,
                          "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                          "vocab": vocab(&tokens), "merges": spm_merges(&tokens, &scores)}
            })
        }
        "gpt2" => {
            let pre = match meta.get("tokenizer.ggml.pre") {
                Some(_) => meta.string("tokenizer.ggml.pre")?,
                None => "default".to_string(),
            };
            let byte_level = |use_regex: bool| {
                json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
            };
            let split_then_bytes = |regex: &str| {
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                    byte_level(false)]})
            };
            // llama.cpp's defaults per pre-tokenizer; the metadata flags override them.
            let (normalizer, pre_tokenizer, ignore_merges, default_bos) = match pre.as_str() {
                "default" | "gpt2" => (Json::Null, byte_level(true), false, false),
                "llama-bpe" | "llama3" => (Json::Null, split_then_bytes(REGEX_LLAMA3), true, true),
                "qwen2" => (json!({"type": "NFC"}), split_then_bytes(REGEX_QWEN2), false, false),
                other => {
                    return Err(format!(
                        "tokenizer.ggml.pre \"{other}\" is not supported; supported: {}",
                        SUPPORTED_PRE.join(", ")
                    ))
                }
            };
            let add_bos = meta.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(default_bos);
            let merges = match meta.get("tokenizer.ggml.merges") {
                Some(_) => meta.strings("tokenizer.ggml.merges")?,
                None => Vec::new(),
            };
            let merges = merges
                .iter()
                .map(|m| {
                    m.split_once(' ')
                        .map(|(a, b)| json!([a, b]))
                        .ok_or_else(|| format!("tokenizer.ggml.merges entry {m:?} is not two tokens separated by a space"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added,
                "normalizer": normalizer,
                "pre_tokenizer": pre_tokenizer,
                "post_processor": template(&tokens, bos.filter(|_| add_bos), eos.filter(|_| add_eos))?,
                "decoder": byte_level(true),
                "model": {"type": "BPE", "dropout": null,
                          "unk_token": unk.map(|i| tokens[i as usize].clone()),
                          "continuing_subword_prefix": null, "end_of_word_suffix": null,
                          "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
                          "vocab": vocab(&tokens), "merges": merges}
            })
        }
        other => return Err(format!("tokenizer.ggml.model \"{other}\" is not supported; supported: llama, gpt2")),
    };
    Ok(GgufTokenizer {
        json,
        bos_token: bos.map(|i| tokens[i as usize].clone()),
        eos_token: eos.map(|i| tokens[i as usize].clone()),
        eos_ids,
        vocab_size: tokens.len(),
    })
}

/// token → id; a repeated token keeps its last id, as Python's dict in the converter does.
fn vocab(tokens: &[String]) -> serde_json::Map<String, Json> {
    tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect()
}

/// Merges as transformers' `SentencePieceExtractor` derives them: every split of a token into
/// two in-vocabulary pieces is a merge, ranked by the merged token's score (highest first); ties
/// keep vocabulary order, then the pieces' ids.
fn spm_merges(tokens: &[String], scores: &[f32]) -> Vec<Json> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        ids.insert(t.as_str(), i);
    }
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
    // Each distinct token once, in the order Python's dict iterates (first occurrence).
    let mut seen = std::collections::HashSet::new();
    for (order, token) in tokens.iter().enumerate() {
        if !seen.insert(token.as_str()) {
            continue;
        }
        let score = scores[ids[token.as_str()]];
        for (cut, _) in token.char_indices().skip(1) {
            let (l, r) = token.split_at(cut);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                merges.push((score, order, li, ri));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
    merges.into_iter().map(|(_, _, l, r)| json!([tokens[l], tokens[r]])).collect()
}

/// A `TemplateProcessing` adding BOS and/or EOS, as `LlamaTokenizerFast` sets it up; `null`
/// when neither is added.
fn template(tokens: &[String], bos: Option<u32>, eos: Option<u32>) -> Result<Json, String> {
    if bos.is_none() && eos.is_none() {
        return Ok(Json::Null);
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
    Ok(json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Value {
        Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect())
    }

    fn llama_meta(tokens: &[&str], scores: &[f32]) -> HashMap<String, Value> {
        let mut m = HashMap::new();
        m.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        m.insert("tokenizer.ggml.tokens".into(), strings(tokens));
        m.insert("tokenizer.ggml.scores".into(), Value::Array(scores.iter().map(|&s| Value::F32(s)).collect()));
        m.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
        m.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
        m.insert("tokenizer.ggml.unknown_token_id".into(), Value::U32(0));
        m.insert("tokenizer.ggml.padding_token_id".into(), Value::U32(u32::MAX));
        m
    }

    #[test]
    fn spm_merges_are_ranked_by_the_merged_tokens_score() {
        let tokens = ["<unk>", "<s>", "</s>", "a", "b", "c", "ab", "bc", "abc"];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -5.0, -4.0, -6.0];
        let merges = spm_merges(&tokens.map(String::from), &scores);
        // bc (-4) before ab (-5) before abc (-6, two splits: a+bc then ab+c by piece ids).
        assert_eq!(merges, vec![json!(["b", "c"]), json!(["a", "b"]), json!(["a", "bc"]), json!(["ab", "c"])]);
    }

    #[test]
    fn llama_style_adds_bos_and_decodes_spaces() {
        let tokens = ["<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi", "<0x21>"];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, 0.0];
        let t = from_metadata(&llama_meta(&tokens, &scores)).unwrap();
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
        assert!(from_metadata(&m).unwrap_err().contains("tokenizer.ggml.scores has 2 entries for 3 tokens"));
        m.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
        let e = from_metadata(&m).unwrap_err();
        assert!(e.contains("\"bert\"") && e.contains("llama, gpt2"), "{e}");
        m.remove("tokenizer.ggml.tokens");
        assert!(from_metadata(&m).unwrap_err().contains("tokenizer.ggml.tokens"));
    }
}
