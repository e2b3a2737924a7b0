//! What llama.cpp makes of each token at load: its `tokenizer.ggml.token_type`, corrected by the
//! text-based rules of `llama_vocab::impl::load` (tokens that end generation are control tokens
//! whatever the file says, a few are forced to user-defined or normal), and the per-model
//! whitespace stripping around special tokens. These decide which tokens are matched whole in
//! the text before splitting (`tokenizer_st_partition`): control and unknown ones only when
//! special tokens are parsed, user-defined ones always.

use std::collections::HashSet;

/// llama.cpp's `llama_token_type` values.
pub mod token_type {
    pub const NORMAL: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const CONTROL: u32 = 3;
    pub const USER_DEFINED: u32 = 4;
    pub const UNUSED: u32 = 5;
    pub const BYTE: u32 = 6;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attr {
    pub normal: bool,
    pub unknown: bool,
    pub control: bool,
    pub user_defined: bool,
    pub unused: bool,
    pub byte: bool,
    /// Whitespace left of the token is dropped when it is matched (llama.cpp's LSTRIP).
    pub lstrip: bool,
    /// Whitespace right of the token is dropped when it is matched (RSTRIP).
    pub rstrip: bool,
}

impl Attr {
    fn of_type(t: u32) -> Self {
        let mut a = Self::default();
        match t {
            token_type::NORMAL => a.normal = true,
            token_type::UNKNOWN => a.unknown = true,
            token_type::CONTROL => a.control = true,
            token_type::USER_DEFINED => a.user_defined = true,
            token_type::UNUSED => a.unused = true,
            token_type::BYTE => a.byte = true,
            _ => {}
        }
        a
    }

    /// Matched whole in the text before the model sees it (llama.cpp's special-token cache).
    pub fn is_special_cache(&self) -> bool {
        self.control || self.unknown || self.user_defined
    }

    /// Matched only when special tokens are parsed: control and unknown tokens (a user-defined
    /// token llama.cpp turned into a control one included).
    pub fn is_special(&self) -> bool {
        self.control || self.unknown
    }
}

/// Token texts llama.cpp looks for when the file names no such token, marking them control:
/// end of turn, end of message, and the fill-in-the-middle tokens. The key is the id's
/// metadata key.
const FOUND_BY_TEXT: &[(&str, &[&str])] = &[
    (
        "eot",
        &[
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<|end_of_text|>",
            "<EOT>",
            "_<EOT>",
            "[EOT]",
            "<｜end▁of▁sentence｜>",
            "<end_of_utterance>",
        ],
    ),
    ("eom", &["<|eom_id|>"]),
    (
        "fim_pre",
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        "fim_suf",
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        "fim_mid",
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    ("fim_pad", &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]),
    ("fim_rep", &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
    ("fim_sep", &["<|file_sep|>"]),
];

/// Tokens that end generation by their text alone; always control tokens in llama.cpp.
pub const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// What the rules depend on besides the tokens.
pub struct Context<'a> {
    /// Metadata keys present among `tokenizer.ggml.{eot,eom,fim_pre,…}_token_id`, short names.
    pub ids_given: &'a dyn Fn(&str) -> bool,
    pub pre: &'a str,
    pub architecture: &'a str,
    /// `general.name`, lower-cased.
    pub model_name: &'a str,
}

/// Each token's attributes as llama.cpp ends up with them.
pub fn resolve(tokens: &[String], types: &[u32], cx: &Context) -> Vec<Attr> {
    let mut attrs: Vec<Attr> = types.iter().map(|&t| Attr::of_type(t)).collect();
    let ids: std::collections::HashMap<&str, usize> =
        tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let find = |text: &str| ids.get(text).copied();

    for (key, texts) in FOUND_BY_TEXT {
        if (cx.ids_given)(key) {
            continue;
        }
        // llama.cpp takes the first match in hash order; vocabularies hold one at most.
        for t in *texts {
            if let Some(i) = find(t) {
                attrs[i].control = true;
            }
        }
    }
    let mut eog = HashSet::new();
    for t in END_OF_GENERATION {
        if let Some(i) = find(t) {
            attrs[i].control = true;
            eog.insert(*t);
        }
    }
    // gpt-oss renders these, so they must not be control tokens.
    for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(i) = find(t) {
            attrs[i] = Attr { user_defined: true, ..Attr::default() };
        }
    }
    // o200k_harmony and solar-open: "<|end|>" is a turn separator, not the end.
    let has = |t: &str| eog.contains(t);
    if has("<|end|>")
        && ((has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>")))
    {
        if let Some(i) = find("<|end|>") {
            attrs[i] = Attr { user_defined: true, ..Attr::default() };
        }
    }
    // Gemma 4 and PLaMo have an ordinary "</s>".
    if has("</s>") && (has("<|tool_response>") || find("<|plamo:eos|>").is_some()) {
        if let Some(i) = find("</s>") {
            attrs[i] = Attr { normal: true, ..Attr::default() };
        }
    }

    let contains_any = |s: &str, subs: &[&str]| subs.iter().any(|x| s.contains(x));
    if contains_any(cx.pre, &["jina-v2-de", "jina-v2-es", "jina-v2-code"])
        || contains_any(cx.architecture, &["nomic-bert-moe", "jina-bert-v3"])
    {
        if let Some(i) = find("<mask>") {
            attrs[i].lstrip = true;
        }
    } else if contains_any(cx.model_name, &["phi-3", "phi3"]) {
        for a in attrs.iter_mut().filter(|a| a.is_special_cache()) {
            a.rstrip = true;
        }
        for (t, on) in [("</s>", true), ("<unk>", false), ("<s>", false), ("<|endoftext|>", false)]
        {
            if let Some(i) = find(t) {
                attrs[i].rstrip = on;
            }
        }
    } else if contains_any(cx.model_name, &["modern-bert"]) {
        if let Some(i) = find("[MASK]") {
            attrs[i].lstrip = true;
        }
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(tokens: &[&str], types: &[u32], name: &str) -> Vec<Attr> {
        let tokens: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
        let none = |_: &str| false;
        resolve(
            &tokens,
            types,
            &Context { ids_given: &none, pre: "default", architecture: "llama", model_name: name },
        )
    }

    #[test]
    fn end_of_generation_tokens_become_control() {
        let a = attrs(&["a", "<|im_end|>", "<|fim_prefix|>", "<|channel|>"], &[1, 4, 1, 3], "x");
        assert!(!a[0].is_special_cache());
        assert!(a[1].control && a[1].user_defined && a[1].is_special());
        assert!(a[2].control);
        assert!(a[3].user_defined && !a[3].control);
    }

    #[test]
    fn phi3_strips_right_of_special_tokens() {
        let a = attrs(
            &["<unk>", "<s>", "</s>", "<|user|>", "x"],
            &[2, 3, 4, 3, 1],
            "Phi3".to_lowercase().as_str(),
        );
        assert_eq!(
            a.iter().map(|a| a.rstrip).collect::<Vec<_>>(),
            [false, false, true, true, false]
        );
    }
}
