//! `bert` vocabularies: WordPiece. llama.cpp's converter stores word-initial pieces with a `▁`
//! prefix and continuation pieces bare (HF's `##x` becomes `x`, `x` becomes `▁x`); the
//! tokenizers crate wants HF's spelling back. llama.cpp's `llm_tokenizer_wpm` is BERT's basic
//! tokenizer (lower-casing, accent stripping, splitting at whitespace, punctuation and CJK
//! ideographs) followed by greedy longest-match WordPiece, which is what `BertNormalizer`,
//! `BertPreTokenizer` and `WordPiece` do.

use serde_json::{json, Value as Json};

use super::TokenizerBuildError;
use super::Vocab;
use crate::model::gguf::Meta;

/// The HF spelling of token `i`. Tokens matched whole in the text keep the file's spelling,
/// since that is what is matched.
fn hf_piece(v: &Vocab, i: usize) -> String {
    let t = &v.tokens[i];
    if v.attrs[i].is_special_cache() {
        return t.clone();
    }
    match t.strip_prefix('▁') {
        Some(word_start) if !word_start.is_empty() => word_start.to_string(),
        _ => format!("##{t}"),
    }
}

pub(super) fn build(v: &Vocab, meta: &Meta) -> Result<Json, TokenizerBuildError> {
    let lowercase = meta.opt_bool("tokenizer.ggml.normalizer.lowercase")?.unwrap_or(true);
    let strip_accents =
        meta.opt_bool("tokenizer.ggml.normalizer.strip_accents")?.unwrap_or(lowercase);
    let unk = v.unk.ok_or(TokenizerBuildError::NoUnknownToken { kind: "bert", default_id: 100 })?;
    let vocab: serde_json::Map<String, Json> =
        (0..v.tokens.len()).map(|i| (hf_piece(v, i), json!(i))).collect();
    // llama.cpp adds BOS ([CLS]) and SEP with add_special, whatever add_bos says.
    let post = super::template(&v.tokens, v.bos, v.sep);
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": v.added_tokens(|i| hf_piece(v, i)),
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": strip_accents, "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": post,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        // llama.cpp has no limit on word length.
        "model": {"type": "WordPiece", "unk_token": hf_piece(v, unk as usize), "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": u32::MAX, "vocab": vocab}
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::quantized::gguf_file::Value;

    fn encode(json: &serde_json::Value, text: &str, special: bool) -> Vec<u32> {
        let tok = tokenizers::Tokenizer::from_bytes(json.to_string()).unwrap();
        tok.encode(text, special).unwrap().get_ids().to_vec()
    }

    #[test]
    fn word_pieces_are_spelled_back_the_hf_way() {
        let tokens = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "▁hello", "▁!", "▁un", "aff", "able", "▁cafe",
            "▁中",
        ];
        let types = [3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1];
        let md: HashMap<String, Value> = [
            ("tokenizer.ggml.model", Value::String("bert".into())),
            (
                "tokenizer.ggml.tokens",
                Value::Array(tokens.iter().map(|t| Value::String(t.to_string())).collect()),
            ),
            (
                "tokenizer.ggml.token_type",
                Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
            ),
            ("tokenizer.ggml.unknown_token_id", Value::U32(1)),
            ("tokenizer.ggml.bos_token_id", Value::U32(2)),
            ("tokenizer.ggml.seperator_token_id", Value::U32(3)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let t = super::super::from_metadata(&md).unwrap();
        // Lower-cased, accents stripped, split at punctuation and CJK; a word with no pieces is [UNK].
        assert_eq!(encode(&t.json, "Hello, UNAFFABLE! Café中", false), [4, 1, 6, 7, 8, 5, 9, 10]);
        assert_eq!(encode(&t.json, "hello", true), [2, 4, 3]);
    }
}
