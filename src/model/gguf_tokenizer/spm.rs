//! `llama` vocabularies: SentencePiece BPE, as transformers' `LlamaConverter` expresses it for the
//! tokenizers crate. llama.cpp merges the pair whose merged token scores highest; ranking every
//! split of every token by that score gives BPE the same order.

use std::collections::{HashMap, HashSet};

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
    // llama.cpp prefixes a space to the text and to the text after each special token.
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
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": v.added_tokens(|i| v.tokens[i].clone()),
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null,
        "post_processor": v.post_processor(),
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": null,
                  "unk_token": v.unk.map(|i| v.tokens[i as usize].clone()),
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": v.vocab_map(), "merges": merges(&v.tokens, &scores)}
    }))
}

/// Merges as transformers' `SentencePieceExtractor` derives them: every split of a token into
/// two in-vocabulary pieces is a merge, ranked by the merged token's score (highest first); ties
/// keep vocabulary order, then the pieces' ids.
fn merges(tokens: &[String], scores: &[f32]) -> Vec<Json> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        ids.insert(t.as_str(), i);
    }
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
    // Each distinct token once, in the order Python's dict iterates (first occurrence).
    let mut seen = HashSet::new();
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
    merges.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3))
    });
    merges.into_iter().map(|(_, _, l, r)| json!([tokens[l], tokens[r]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_are_ranked_by_the_merged_tokens_score() {
        let tokens = ["<unk>", "<s>", "</s>", "a", "b", "c", "ab", "bc", "abc"];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -5.0, -4.0, -6.0];
        let merges = merges(&tokens.map(String::from), &scores);
        // bc (-4) before ab (-5) before abc (-6, two splits: a+bc then ab+c by piece ids).
        assert_eq!(
            merges,
            vec![json!(["b", "c"]), json!(["a", "b"]), json!(["a", "bc"]), json!(["ab", "c"])]
        );
    }
}
