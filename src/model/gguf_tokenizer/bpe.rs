//! `gpt2` (and `gemma4`) vocabularies: BPE over the pieces llama.cpp's split regexes leave
//! ([`super::pretok`]), on GPT-2's byte-to-unicode image of the text or, for SentencePiece-style
//! vocabularies, on the UTF-8 text with `<0xXX>` tokens for bytes no token covers.

use std::collections::HashSet;

use serde_json::{json, Value as Json};

use super::pretok::PreTokenizer;
use super::TokenizerBuildError;
use super::Vocab;
use crate::model::gguf::{Meta, MetadataError};

pub(super) fn build(
    v: &Vocab,
    meta: &Meta,
    pre: &PreTokenizer,
) -> Result<Json, TokenizerBuildError> {
    let merges = match meta.get("tokenizer.ggml.merges") {
        Some(_) => meta.strings("tokenizer.ggml.merges")?,
        // Kimi-K2's converter writes none; llama.cpp accepts that for it alone.
        None if pre.kind == "kimi-k2" => Vec::new(),
        None => {
            return Err(
                MetadataError::MissingKey { key: "tokenizer.ggml.merges".to_string() }.into()
            )
        }
    };
    let splits: Vec<Json> = pre
        .regexes
        .iter()
        .map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false}))
        .collect();
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let mut pretokenizers = splits;
    if pre.byte_encode {
        pretokenizers.push(byte_level(false));
    }
    let normalizer = if pre.escape_whitespaces {
        json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"})
    } else {
        Json::Null
    };
    let decoder = if pre.byte_encode {
        byte_level(true)
    } else {
        let mut decoders = Vec::new();
        if pre.escape_whitespaces {
            decoders.push(json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}));
        }
        decoders.extend([json!({"type": "ByteFallback"}), json!({"type": "Fuse"})]);
        json!({"type": "Sequence", "decoders": decoders})
    };
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": v.added_tokens(|i| v.tokens[i].clone()),
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pretokenizers},
        "post_processor": v.post_processor(),
        "decoder": decoder,
        // llama.cpp's BPE never emits an unknown token: bytes without a token are dropped.
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": !pre.byte_encode, "ignore_merges": pre.ignore_merges,
                  "vocab": v.vocab_map(), "merges": merge_pairs(&v.tokens, &merges)?}
    }))
}

/// The merges as pairs, in rank order. llama.cpp splits each at its first space after the first
/// byte (a token may itself be a space) and keeps the first rank of a repeated pair; merges
/// whose pieces or result are not tokens can only produce byte fallbacks in llama.cpp and are
/// dropped, since the tokenizers crate refuses them.
fn merge_pairs(tokens: &[String], merges: &[String]) -> Result<Vec<Json>, TokenizerBuildError> {
    let vocab: HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(merges.len());
    let mut merged = String::new();
    for m in merges {
        let cut = m
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map(|(i, _)| i)
            .ok_or_else(|| TokenizerBuildError::BadMerge { entry: m.clone() })?;
        let (a, b) = (&m[..cut], &m[cut + 1..]);
        merged.clear();
        merged.push_str(a);
        merged.push_str(b);
        if !vocab.contains(a) || !vocab.contains(b) || !vocab.contains(merged.as_str()) {
            continue;
        }
        if seen.insert((a, b)) {
            out.push(json!([a, b]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_split_at_the_first_space_after_the_first_byte() {
        let tokens: Vec<String> =
            [" ", "x", " x", "a", "b", "ab", "a b"].map(String::from).to_vec();
        let merges: Vec<String> = ["  x", "a b", "a b", "x b", "a  b"].map(String::from).to_vec();
        let pairs = merge_pairs(&tokens, &merges).unwrap();
        // "x b" has no token "xb"; "a  b" is "a" + " b", not a token pair either.
        assert_eq!(pairs, vec![json!([" ", "x"]), json!(["a", "b"])]);
        let e = merge_pairs(&tokens, &["ab".to_string()]).unwrap_err();
        assert_eq!(e, TokenizerBuildError::BadMerge { entry: "ab".into() });
        assert_eq!(
            e.to_string(),
            "tokenizer.ggml.merges entry \"ab\" is not two tokens separated by a space"
        );
    }
}
