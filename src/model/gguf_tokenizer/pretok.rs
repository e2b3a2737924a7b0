//! `tokenizer.ggml.pre` → how llama.cpp splits text before BPE (`llm_tokenizer_bpe` in its
//! `src/llama-vocab.cpp`): the regexes, applied one after the other, each splitting every piece
//! the previous ones left (matches and the text between them both become pieces — the
//! tokenizers crate's `Split` with `Isolated` behaviour), plus the flags llama.cpp sets with them.
//!
//! The regexes are written for fancy-regex so that they split as llama.cpp does, which is not
//! always what the same string would do in another engine:
//!
//! - Some expressions llama.cpp never runs as regexes but splits by hand (`unicode.cpp`'s
//!   `unicode_regex_split_custom_*`: GPT-2, Llama 3, Qwen2, Qwen3.5, Kimi-K2, AFMoE digits,
//!   newline runs). Those entries hold a regex that splits like the hand-written code; the GPT-2
//!   one, for instance, ends in `|\s+` because the hand-written code does, though the string in
//!   llama.cpp's table does not.
//! - The rest run under `std::regex` (ECMAScript). With Unicode categories llama.cpp first maps
//!   every non-ASCII character to one byte per category, so `\p{Lu}`, `\p{Ll}`, `\p{Lt}`,
//!   `\p{Lm}` and `\p{Lo}` all mean "any letter" there; those are written `\p{L}` here. `\d` is
//!   ASCII-only in ECMAScript, so it is `[0-9]` here.
//! - llama.cpp replaces non-ASCII whitespace by `\v` before matching, so a literal U+3000 in a
//!   character class never matches; it is left out of the class here.
//!
//! Unicode tables differ between llama.cpp (its own `unicode-data.cpp`) and fancy-regex only
//! for characters assigned in recent Unicode versions.
//!
//! Non-ASCII characters are written as `\x{…}` escapes of the code points in llama.cpp's
//! source: some (U+1FD3, U+2126, U+212A) change under Unicode normalization, which text tools
//! may apply silently, and U+1FD3 turning into U+0390 makes a range invalid.

/// How the text of a `gpt2`-style (BPE) vocabulary is prepared, per `tokenizer.ggml.pre`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreTokenizer {
    /// The llama.cpp pre-tokenizer type this name selects (lower-case, as in its enum).
    pub kind: &'static str,
    pub regexes: &'static [&'static str],
    /// Whether BPE runs on GPT-2's byte-to-unicode image of the text; without it, BPE runs on
    /// the UTF-8 text and unknown bytes become `<0xXX>` tokens.
    pub byte_encode: bool,
    /// A piece that is itself a token is emitted whole, without applying merges (Llama 3 style).
    pub ignore_merges: bool,
    /// Whether BOS is added when the file does not say (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    /// Spaces become `▁` before splitting (SentencePiece-style BPE vocabularies).
    pub escape_whitespaces: bool,
    /// llama.cpp ignores the file's BOS id (ChatGLM).
    pub no_bos: bool,
}

/// `tokenizer.ggml.pre` values and the llama.cpp type each selects. "gpt2" is benchgen's own
/// alias of "gpt-2" (llama.cpp refuses it), kept because earlier benchgen versions accepted it.
const NAMES: &[(&[&str], &str)] = &[
    (&["default"], "default"),
    (&["minicpm5"], "minicpm5"),
    (
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        "llama3",
    ),
    (&["deepseek-llm"], "deepseek-llm"),
    (&["deepseek-coder"], "deepseek-coder"),
    (&["deepseek-v3"], "deepseek3-llm"),
    (&["spark2_5"], "spark2_5"),
    (&["youtu"], "youtu"),
    (&["falcon"], "falcon"),
    (&["mpt"], "mpt"),
    (&["starcoder"], "starcoder"),
    (
        &[
            "gpt-2",
            "gpt2",
            "phi-2",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "a.x-4.0",
            "mellum",
            "modern-bert",
        ],
        "gpt2",
    ),
    (&["jais-2"], "jais2"),
    (&["gemma4", "granite-embed-multi-311m"], "gemma4"),
    (&["sarvam-moe"], "sarvam-moe"),
    (&["jina-v1-en", "jina-v2-code", "roberta-bpe"], "gpt2"),
    (&["whitespace"], "whitespace"),
    (&["refact"], "refact"),
    (&["command-r"], "command-r"),
    (&["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"], "qwen2"),
    (&["qwen35"], "qwen35"),
    (&["stablelm2"], "stablelm2"),
    (&["olmo"], "olmo"),
    (&["dbrx"], "dbrx"),
    (&["smaug-bpe"], "smaug"),
    (&["poro-chat"], "poro"),
    (&["chatglm-bpe"], "chatglm4"),
    (&["glm4", "glm5"], "glm4"),
    (&["viking"], "viking"),
    (&["jais"], "jais"),
    (&["tekken"], "tekken"),
    (&["smollm"], "smollm"),
    (&["codeshell"], "codeshell"),
    (&["bloom"], "bloom"),
    (&["gpt3-finnish"], "gpt3-finnish"),
    (&["exaone"], "exaone"),
    (&["exaone4"], "gpt2"),
    (&["exaone-moe"], "exaone-moe"),
    (&["chameleon"], "chameleon"),
    (&["minerva-7b"], "minerva"),
    (&["gpt-4o", "llama4", "kanana2", "talkie"], "gpt-4o"),
    (&["granite-embed-multi-97m"], "granite-emb-multi"),
    (&["tiny_aya", "cohere2moe"], "tiny-aya"),
    (&["superbpe"], "superbpe"),
    (&["trillion"], "trillion"),
    (&["granite-docling"], "granite-docling"),
    (&["bailingmoe", "bailingmoe2", "llada-moe"], "bailingmoe"),
    (&["seed-coder"], "seed-coder"),
    (&["hunyuan"], "hunyuan"),
    (&["hunyuan-dense"], "hunyuan-dense"),
    (&["hy_v4"], "hy-v4"),
    (&["joyai-llm"], "joyai-llm"),
    (&["kimi-k2"], "kimi-k2"),
    (&["ufakzeka"], "ufakzeka"),
    (&["grok-2"], "grok-2"),
    (&["afmoe"], "afmoe"),
    (&["laguna"], "laguna"),
    (&["minimax-m2"], "minimax-m2"),
    (&["solar-open"], "solar-open"),
    (&["mellum2"], "mellum2"),
];

/// Every accepted `tokenizer.ggml.pre` value, in table order.
pub fn known_names() -> Vec<&'static str> {
    NAMES.iter().flat_map(|(names, _)| names.iter().copied()).collect()
}

/// The pre-tokenizer for a `gpt2`-style vocabulary; `None` (no `tokenizer.ggml.pre`) is
/// llama.cpp's default. Unknown names are refused, as llama.cpp refuses them.
pub fn lookup(pre: Option<&str>) -> Result<PreTokenizer, UnknownPreTokenizer> {
    let name = pre.unwrap_or("default");
    let kind = NAMES
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, kind)| *kind)
        .ok_or_else(|| UnknownPreTokenizer { name: name.to_string() })?;
    Ok(of_kind(kind))
}

/// A `tokenizer.ggml.pre` value llama.cpp (and so this build) does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tokenizer.ggml.pre \"{name}\" is not supported; supported: {}", known_names().join(", "))]
pub struct UnknownPreTokenizer {
    pub name: String,
}

// The hand-split expressions of `unicode.cpp`, as regexes that split the same way.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Kimi-K2's letters exclude Han, by the fixed ranges of `unicode_cpt_is_han` (not the Han
/// script), and letter case plays no part in the hand-written splitter.
const KIMI_K2: &str = concat!(
    r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2EBEF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]+",
    r"|[^\r\n\p{L}\p{N}]?[\p{L}--[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2EBEF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]]+",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);
/// Digit runs cut into groups of three from the right, the first group taking the remainder.
/// llama.cpp's splitter (`unicode_regex_split_custom_afmoe`) also puts the text since the
/// previous piece in front of the first group, which can change how later regexes split it
/// (`"a  1234"` → `"a  1"`, `"234"`); so does this regex.
const DIGITS_FROM_RIGHT: &str = r"\P{N}*\p{N}{1,3}(?=(?:\p{N}{3})*(?!\p{N}))";
const NEWLINE_RUNS: &str = r"[^\n]+|\n+";

const CJK_KANA: &str = r"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+";
const BLOOM: &str = r" ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn of_kind(kind: &'static str) -> PreTokenizer {
    let mut p = PreTokenizer {
        kind,
        regexes: &[],
        byte_encode: true,
        ignore_merges: false,
        add_bos: false,
        escape_whitespaces: false,
        no_bos: false,
    };
    p.regexes = match kind {
        "llama3" | "dbrx" | "smaug" | "chatglm4" | "glm4" => &[LLAMA3],
        "jais2" => &[
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}",
        ],
        "deepseek-llm" => &[
            r"[\r\n]",
            r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+",
            // llama.cpp's class ends in U+3000-U+3002; U+3000 is whitespace, see above.
            r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3001}-\x{3002}]+",
            r"\s+$",
            r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+",
            r"\p{N}+",
        ],
        "deepseek3-llm" | "hunyuan-dense" | "joyai-llm" | "hy-v4" => &[
            r"\p{N}{1,3}",
            CJK_KANA,
            r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        "spark2_5" => &[
            r"\p{N}{1,3}",
            CJK_KANA,
            r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##,
            r"\p{N}",
        ],
        // `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` is `[\p{L}\p{M}]+` once
        // every letter category means "letter".
        "youtu" => &[
            r"[\x{AC00}-\x{D7A3}\x{3131}-\x{318E}]+|[\x{FF01}\x{2026}\x{201C}\x{201D}\x{2018}\x{2019}\x{2014}\x{FF1A}\x{FF1B}\x{FF0C}\x{3001}-\x{303F}\x{FE30}-\x{FE4F}]+|[\x{3105}-\x{312F}]+|[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+",
            r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "deepseek-coder" => &[
            r"[\r\n]",
            r"\s?\p{L}+",
            r"\s?\p{P}+",
            r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+",
            r"\p{N}",
        ],
        "falcon" => &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva"
        | "mellum2" => &[r"\p{N}", GPT2],
        "gpt2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" => &[GPT2],
        "stablelm2" | "qwen2" | "hunyuan" | "solar-open" | "grok-2" => &[QWEN2],
        "qwen35" => &[QWEN35],
        "poro" | "bloom" | "gpt3-finnish" => &[BLOOM],
        "viking" => &[BLOOM, r"\p{N}"],
        "tekken" => &[
            r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "chameleon" => &[
            r"<sentinel:[0-9]+>",
            r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
            r"([\t\n]|    |  )",
            r"\p{N}",
            r"[\p{P}!-/:-@\[-`{-~]",
            GPT2,
        ],
        "gpt-4o" | "minimax-m2" => &[GPT4O],
        "granite-emb-multi" => &[
            r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "tiny-aya" => &[
            DIGITS_FROM_RIGHT,
            r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "kimi-k2" => &[KIMI_K2],
        "superbpe" => &[r"\p{N}+", r"(?=([0-9]{3})+(?![0-9]))"],
        "bailingmoe" => &[
            r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
        ],
        "seed-coder" => &[
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "ufakzeka" => {
            &[r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]
        }
        "afmoe" => &[
            DIGITS_FROM_RIGHT,
            r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{8C48}-\x{FAFF}\x{3040}-\x{309F}\x{30A0}-\x{30FF}\x{FF65}-\x{FF9F}\x{2F00}-\x{2FDF}\x{E40}-\x{E7F}\x{E80}-\x{EFF}\x{1780}-\x{17FF}\x{1000}-\x{109F}\x{AA60}-\x{AA7F}\x{A9E0}-\x{A9FF}\x{AC00}-\x{D7AF}\x{1100}-\x{11FF}]+",
            r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
        "laguna" => &[NEWLINE_RUNS, QWEN2],
        "exaone-moe" => &[
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",
        ],
        "gemma4" | "sarvam-moe" => &[NEWLINE_RUNS],
        "minicpm5" => &[
            r"\p{N}{1,3}",
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "whitespace" => &[r"\S+"],
        // llama.cpp's default: punctuation runs, then GPT-2's split, then digits in threes.
        _ => &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    };
    match kind {
        "llama3" | "tekken" => {
            p.ignore_merges = true;
            p.add_bos = true;
        }
        "chameleon" => p.add_bos = true,
        "minicpm5" | "youtu" | "granite-emb-multi" => p.ignore_merges = true,
        "chatglm4" => p.no_bos = true,
        "glm4" => {
            p.no_bos = true;
            p.ignore_merges = true;
        }
        "gemma4" | "sarvam-moe" => {
            p.byte_encode = false;
            p.escape_whitespaces = true;
        }
        "whitespace" => p.byte_encode = false,
        _ => {}
    }
    p
}

#[cfg(test)]
pub(super) mod tests_support {
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::{
        OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _,
        SplitDelimiterBehavior,
    };

    pub fn splitter(r: &str) -> Split {
        Split::new(SplitPattern::Regex(r.to_string()), SplitDelimiterBehavior::Isolated, false)
            .unwrap_or_else(|e| panic!("{r}: {e}"))
    }

    /// How `regexes` split `text`, with the tokenizers crate's `Split(Isolated)`.
    pub fn split(regexes: &[&str], text: &str) -> Vec<String> {
        split_with(&regexes.iter().map(|r| splitter(r)).collect::<Vec<_>>(), text)
    }

    pub fn split_with(splitters: &[Split], text: &str) -> Vec<String> {
        let mut s = PreTokenizedString::from(text);
        for sp in splitters {
            sp.pre_tokenize(&mut s).unwrap();
        }
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(t, _, _)| t.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::splitter;
    use super::*;

    fn split(p: &PreTokenizer, text: &str) -> Vec<String> {
        super::tests_support::split(p.regexes, text)
    }

    #[test]
    fn every_name_resolves_and_every_regex_compiles() {
        for name in known_names() {
            let p = lookup(Some(name)).unwrap();
            assert!(!p.regexes.is_empty(), "{name}");
            for r in p.regexes {
                splitter(r);
            }
        }
        assert_eq!(lookup(None).unwrap(), lookup(Some("default")).unwrap());
    }

    #[test]
    fn names_map_to_llama_cpp_types_and_flags() {
        let p = lookup(Some("llama-bpe")).unwrap();
        assert_eq!(
            (p.kind, p.ignore_merges, p.add_bos, p.byte_encode),
            ("llama3", true, true, true)
        );
        assert_eq!(lookup(Some("deepseek-v3")).unwrap().kind, "deepseek3-llm");
        assert_eq!(
            lookup(Some("smollm")).unwrap().regexes,
            lookup(Some("starcoder")).unwrap().regexes
        );
        assert_eq!(lookup(Some("megrez")).unwrap().kind, "qwen2");
        let g = lookup(Some("gemma4")).unwrap();
        assert!(!g.byte_encode && g.escape_whitespaces && !g.ignore_merges);
        assert!(lookup(Some("glm4")).unwrap().no_bos);
        // Every type named in the table has its own entry, none falls through to the default.
        let default = lookup(None).unwrap().regexes;
        for (_, kind) in NAMES.iter().filter(|(_, k)| *k != "default") {
            assert_ne!(of_kind(kind).regexes, default, "{kind}");
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        let e = lookup(Some("no-such-pre")).unwrap_err();
        assert_eq!(e.name, "no-such-pre");
        let e = e.to_string();
        assert!(
            e.starts_with(
                "tokenizer.ggml.pre \"no-such-pre\" is not supported; supported: default, "
            ),
            "{e}"
        );
        for name in ["smollm", "qwen35", "tekken", "kimi-k2", "gpt-4o", "superbpe", "gemma4"] {
            assert!(
                e.contains(&format!(" {name},")) || e.ends_with(name),
                "{name} missing from {e}"
            );
        }
    }

    #[test]
    fn splits_as_llama_cpp_does() {
        let s = |pre: &str, text: &str| split(&lookup(Some(pre)).unwrap(), text);
        // GPT-2: a lone space before a letter joins it; trailing whitespace runs stay whole.
        assert_eq!(
            s("gpt-2", "Hello  world's 12345!! \n"),
            ["Hello", " ", " world", "'s", " 12345", "!!", " \n"]
        );
        // Llama 3: digits in threes, case-insensitive contractions, newlines kept with spaces.
        assert_eq!(
            s("llama-bpe", "I'LL pay 1234567\n\n  x"),
            ["I", "'LL", " pay", " ", "123", "456", "7", "\n\n", " ", " x"]
        );
        // Qwen2: single digits; Qwen3.5: combining marks stay with their letters.
        assert_eq!(s("qwen2", "a12"), ["a", "1", "2"]);
        assert_eq!(s("qwen35", "e\u{301}t\u{301}"), ["e\u{301}t\u{301}"]);
        assert_eq!(s("qwen2", "e\u{301}t"), ["e", "\u{301}t"]);
        // llama.cpp's default splits punctuation runs first, then digits in threes.
        assert_eq!(s("default", "x!!y 12345"), ["x", "!!", "y", " ", "123", "45"]);
        // Letter case of non-ASCII letters does not matter to llama.cpp's GPT-4o splitter.
        assert_eq!(s("gpt-4o", "HelloWorld ÉtéÉté"), ["Hello", "World", " ÉtéÉté"]);
        // Digits grouped from the right (AFMoE, Tiny Aya), SuperBPE's lookahead split.
        assert_eq!(s("afmoe", "1234567"), ["1", "234", "567"]);
        // The text before a digit run goes with its first group, as in llama.cpp, so the two
        // spaces are split by the next regex as spaces before a non-space ("  " alone would
        // stay whole).
        assert_eq!(
            split(
                &PreTokenizer { regexes: &[DIGITS_FROM_RIGHT], ..lookup(Some("afmoe")).unwrap() },
                "a  1234 b"
            ),
            ["a  1", "234", " b"]
        );
        assert_eq!(s("afmoe", "x  1234"), ["x", " ", " ", "1", "234"]);
        assert_eq!(s("superbpe", "1234567"), ["1", "234", "567"]);
        // Kimi-K2: Han runs apart from other letters.
        assert_eq!(s("kimi-k2", "abc漢字def's"), ["abc", "漢字", "def's"]);
        // Gemma 4: only newline runs split (spaces were escaped to ▁ before).
        assert_eq!(s("gemma4", "a▁b\n\nc"), ["a▁b", "\n\n", "c"]);
        // Bloom: anything up to punctuation or whitespace, with one leading space.
        assert_eq!(s("bloom", "Hi, you."), ["Hi", ",", " you", "."]);
    }
}
