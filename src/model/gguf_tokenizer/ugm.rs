//! `t5` vocabularies: SentencePiece Unigram. llama.cpp's `llm_tokenizer_ugm` normalizes with the
//! file's precompiled character map, escapes spaces as `▁` (prefixing one, merging runs when
//! the file says so), then finds the best-scoring segmentation of the whole text (Viterbi, an
//! unknown character costing the lowest score minus 10, runs of unknowns fused) — the
//! tokenizers crate's `Precompiled` normalizer and `Unigram` model.

use serde_json::{json, Value as Json};

use super::TokenizerBuildError;
use super::Vocab;
use crate::model::gguf::Meta;

pub(super) fn build(v: &Vocab, meta: &Meta) -> Result<Json, TokenizerBuildError> {
    let scores = meta.f32s("tokenizer.ggml.scores")?;
    if scores.len() != v.tokens.len() {
        return Err(TokenizerBuildError::PerTokenLength {
            key: "tokenizer.ggml.scores",
            entries: scores.len(),
            tokens: v.tokens.len(),
        });
    }
    let unk = v.unk.ok_or(TokenizerBuildError::NoUnknownToken { kind: "t5", default_id: 2 })?;
    let prefix_space = meta.opt_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(false);
    let merge_spaces = meta.opt_bool("tokenizer.ggml.remove_extra_whitespaces")?.unwrap_or(false);

    let replace = |regex: &str, content: &str| json!({"type": "Replace", "pattern": {"Regex": regex}, "content": content});
    let mut normalizers = Vec::new();
    if meta.get("tokenizer.ggml.precompiled_charsmap").is_some() {
        let map = meta.bytes("tokenizer.ggml.precompiled_charsmap")?;
        if !map.is_empty() {
            normalizers.push(json!({"type": "Precompiled", "precompiled_charsmap": base64(&map)}));
        }
    }
    // Spaces are decided on before they are escaped, so a `▁` in the text stays an ordinary
    // character. With merging, every word is preceded by exactly one space; otherwise one space
    // goes before the first word, and none when there is no word.
    if merge_spaces {
        normalizers.push(replace(" {2,}", " "));
        normalizers.push(replace("^ | $", ""));
        normalizers.push(json!({"type": "Prepend", "prepend": " "}));
    } else if prefix_space {
        normalizers.push(json!({"type": "Prepend", "prepend": " "}));
        normalizers.push(replace("^ (?= *$)", ""));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));

    // User-defined tokens are matched whole before the model sees the text; llama.cpp scores
    // them 0 inside it.
    let pieces: Vec<Json> = (0..v.tokens.len())
        .map(|i| {
            json!([v.tokens[i], if v.attrs[i].user_defined { 0.0 } else { f64::from(scores[i]) }])
        })
        .collect();
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": v.added_tokens(|i| v.tokens[i].clone()),
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null,
        "post_processor": v.post_processor(),
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": if prefix_space || merge_spaces { "always" } else { "never" }, "split": true},
        "model": {"type": "Unigram", "unk_id": unk, "vocab": pieces, "byte_fallback": false}
    }))
}

/// Standard base64 with padding, as the `Precompiled` normalizer reads its map.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::quantized::gguf_file::Value;

    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    fn tokenizer(merge_spaces: bool) -> tokenizers::Tokenizer {
        let tokens = ["<pad>", "</s>", "<unk>", "▁", "▁a", "a", "b", "▁ab"];
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0, -3.0, -1.5];
        let md: HashMap<String, Value> = [
            ("tokenizer.ggml.model", Value::String("t5".into())),
            (
                "tokenizer.ggml.tokens",
                Value::Array(tokens.iter().map(|t| Value::String(t.to_string())).collect()),
            ),
            (
                "tokenizer.ggml.scores",
                Value::Array(scores.iter().map(|&s| Value::F32(s)).collect()),
            ),
            (
                "tokenizer.ggml.token_type",
                Value::Array([3, 3, 2, 1, 1, 1, 1, 1].map(Value::I32).to_vec()),
            ),
            ("tokenizer.ggml.add_space_prefix", Value::Bool(true)),
            ("tokenizer.ggml.remove_extra_whitespaces", Value::Bool(merge_spaces)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let t = super::super::from_metadata(&md).unwrap();
        tokenizers::Tokenizer::from_bytes(t.json.to_string()).unwrap()
    }

    fn ids(tok: &tokenizers::Tokenizer, text: &str, special: bool) -> Vec<u32> {
        tok.encode(text, special).unwrap().get_ids().to_vec()
    }

    #[test]
    fn spaces_and_scores_as_llama_cpp() {
        let t = tokenizer(false);
        // The best-scoring segmentation of "▁ab": one piece (-1.5) beats "▁a" + "b" (-4).
        assert_eq!(ids(&t, "ab", false), [7]);
        // One space goes before the first word; none when there is no word.
        assert_eq!(ids(&t, " a", false), [3, 4]);
        assert_eq!(ids(&t, "  ", false), [3, 3]);
        // An unknown character costs the lowest score minus 10; EOS is added by default.
        assert_eq!(ids(&t, "ac", true), [4, 2, 1]);
        let merged = tokenizer(true);
        assert_eq!(ids(&merged, "  a   b ", false), [4, 3, 6]);
        assert_eq!(ids(&merged, "   ", false), Vec::<u32>::new());
    }
}
