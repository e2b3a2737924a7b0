//! `bert` vocabularies: WordPiece. llama.cpp's converter stores word-initial pieces with a `▁`
//! prefix and continuation pieces bare (HF's `##x` becomes `x`, `x` becomes `▁x`); the
//! tokenizers crate wants HF's spelling back. llama.cpp's `llm_tokenizer_wpm` is BERT's basic
//! tokenizer (lower-casing, accent stripping, splitting at whitespace, punctuation and CJK
//! ideographs) followed by greedy longest-match WordPiece, which is what `BertNormalizer`,
//! `BertPreTokenizer` and `WordPiece` do.

use serde_json::{json, Value as Json};

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

pub(super) fn build(v: &Vocab, meta: &Meta) -> Result<Json, String> {
    let lowercase = meta.opt_bool("tokenizer.ggml.normalizer.lowercase")?.unwrap_or(true);
    let strip_accents = meta.opt_bool("tokenizer.ggml.normalizer.strip_accents")?.unwrap_or(lowercase);
    let unk = v.unk.ok_or("a bert vocabulary needs tokenizer.ggml.unknown_token_id (id 100 is not in the vocabulary)")?;
    let vocab: serde_json::Map<String, Json> = (0..v.tokens.len()).map(|i| (hf_piece(v, i), json!(i))).collect();
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
