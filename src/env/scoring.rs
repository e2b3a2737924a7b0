//! The `[scoring]` table of an environment manifest: how the environment says it is scored.
//! Declared here, with the manifest it belongs to; `score` compiles and applies it.

use serde::{Deserialize, Serialize};

/// The `[scoring]` table. Every field has a default so that a manifest with
/// an empty (or missing) table still scores by exact match on the whole
/// trimmed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// How the model is queried; only `generate` is scored by this module.
    pub method: Method,
    /// How an extracted answer is compared with the target.
    pub metric: Metric,
    /// Extractors tried in order on the prediction; the first hit is the
    /// answer. Empty means the whole trimmed prediction is the answer.
    pub extract: Vec<ExtractorSpec>,
    /// Extractors tried in order on the raw target; if none hits, the whole
    /// target is used, so plain-answer datasets need no pattern.
    pub target_extract: Vec<ExtractorSpec>,
    /// Normalisers applied, in order, to both the answer and the target.
    pub normalize: Vec<Normalizer>,
    /// Which aggregate is reported as the Overall Score.
    pub primary: Primary,
    /// Remove `<think>…</think>` reasoning from the prediction before
    /// extraction (see `strip_think` in extract.rs for the exact rule).
    pub strip_think: bool,
    /// Further metrics computed on the same extracted answer and reported
    /// (in percent, as mean credit) next to the primary one.
    pub report: Vec<Metric>,
    /// `[scoring.program]`: the environment's own scoring program decides the scores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramSpec>,
    /// `[[scoring.variants]]`: other extraction chains over the same
    /// predictions, each reported as its own accuracy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantSpec>,
}

/// One `[[scoring.variants]]` entry (lm-evaluation-harness's filter
/// lists, e.g. GSM8K's `flexible-extract` next to `strict-match`); what it
/// leaves out is taken from the main `[scoring]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    pub name: String,
    #[serde(default)]
    pub extract: Option<Vec<ExtractorSpec>>,
    #[serde(default)]
    pub target_extract: Option<Vec<ExtractorSpec>>,
    #[serde(default)]
    pub normalize: Option<Vec<Normalizer>>,
    #[serde(default)]
    pub metric: Option<Metric>,
    #[serde(default)]
    pub strip_think: Option<bool>,
}

/// One entry of `extract` / `target_extract`: a reserved name or a regex
/// (first match, group 1 if it has groups), or a table that picks the
/// match and group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ExtractorSpec {
    /// `first_number`, `last_number`, `last_boxed`, `choice_label` or a regex.
    Plain(String),
    /// `{ regex = "...", group = 1, select = "last" }`.
    Table(RegexSpec),
}

/// By hand rather than `untagged`, so that a mistake inside a table is reported as such
/// ("unknown field `grp`") instead of "did not match any variant".
impl<'de> Deserialize<'de> for ExtractorSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ExtractorSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a regex or extractor name, or a table { regex, group, select }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ExtractorSpec::Plain(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                RegexSpec::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ExtractorSpec::Table)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl From<&str> for ExtractorSpec {
    fn from(s: &str) -> Self {
        Self::Plain(s.to_owned())
    }
}

impl ExtractorSpec {
    /// The pattern as written, for error messages and logs.
    pub fn pattern(&self) -> &str {
        match self {
            Self::Plain(p) => p,
            Self::Table(t) => &t.regex,
        }
    }
}

/// A regex extractor with explicit group and match selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexSpec {
    pub regex: String,
    /// Capture group to take; 0 is the whole match. Absent: group 1 when
    /// the regex has groups, else the whole match (as a plain string does).
    #[serde(default)]
    pub group: Option<usize>,
    /// Which match counts when the regex matches several times.
    #[serde(default)]
    pub select: Select,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            method: Method::default(),
            metric: Metric::default(),
            extract: Vec::new(),
            target_extract: Vec::new(),
            // Stripping is almost always wanted: responses end with newlines.
            normalize: vec![Normalizer::Strip],
            primary: Primary::default(),
            strip_think: false,
            report: Vec::new(),
            program: None,
            variants: Vec::new(),
        }
    }
}

/// How the model is queried for an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Free-form generation, scored by [`Scorer`].
    #[default]
    Generate,
    /// Choice ranking by log-likelihood; kept so manifests can declare it,
    /// but it is scored elsewhere.
    Loglikelihood,
}

/// How a normalised answer is compared with the normalised target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// String equality.
    #[default]
    Exact,
    /// Numeric equality (tolerating `1,000` vs `1000.0` and `$5` vs `5`),
    /// falling back to string equality when either side is not a number.
    Numeric,
    /// The target occurs somewhere in the answer.
    Contains,
    /// The answer names an option by its letter (`B`, `(B)`, `**B**`,
    /// `Answer: B`; see `choice_label` in extract.rs); the target is a
    /// letter or a 0-based option index.
    Choice,
    /// SQuAD token F1 after SQuAD normalisation: per-item credit in [0, 1];
    /// `correct` means F1 = 1 (the same bag of tokens).
    F1,
}

/// One text normalisation step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalizer {
    /// `{ remove = "regex" }`: delete every match (lm-evaluation-harness's `regexes_to_ignore`).
    Remove(String),
    /// Trim surrounding whitespace.
    Strip,
    /// Lowercase (Unicode-aware).
    Lowercase,
    /// Drop every `,`.
    RemoveCommas,
    /// Drop every `$`.
    RemoveDollar,
    /// Drop ASCII punctuation.
    RemovePunctuation,
    /// Drop the whole words a / an / the, case-insensitively (as SQuAD does).
    RemoveArticles,
    /// Turn runs of whitespace into one space, then trim.
    CollapseWhitespace,
    /// Trim, then drop one trailing `.`.
    RemoveTrailingPeriod,
    /// SQuAD's `normalize_answer`: lowercase, drop punctuation, drop the
    /// articles a/an/the, collapse whitespace.
    Squad,
    /// LaTeX answer canonicalisation as in the Hendrycks/Minerva MATH
    /// equivalence (see math.rs for what is and is not normalised).
    Math,
}

/// Which aggregate is the Overall Score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Primary {
    /// Share of items the metric judged correct.
    #[default]
    Accuracy,
    /// Share of items whose raw response equals the target.
    ExactMatch,
    /// Share of items where an answer could be extracted.
    AnswerRate,
    /// Multiple choice: share right when each option's log-likelihood is divided by its length.
    AccNorm,
}

/// Why a [`ScoringConfig`] cannot be compiled.
/// Which match of a regex extractor counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The first match (what a plain string does).
    #[default]
    First,
    /// The last match: final answers usually come after the reasoning.
    Last,
}

/// The letter option `i` (0-based) is shown and answered with: A–Z, none past the 26th.
pub fn option_letter(i: usize) -> Option<char> {
    u8::try_from(i).ok().filter(|&i| i < 26).map(|i| char::from(b'A' + i))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    /// The environment folder copied to `{program}`.
    #[serde(default = "default_dir")]
    pub dir: String,
    /// Program and arguments, no shell; `{program}`, `{input}` and `{output}` are replaced by
    /// absolute paths inside the scratch folder.
    pub command: Vec<String>,
    /// Wall-clock seconds before the program (its whole process group) is killed.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// The scores key that is the Overall Score.
    #[serde(default = "default_primary")]
    pub primary: String,
}

fn default_dir() -> String {
    "scoring".into()
}

fn default_timeout() -> u64 {
    600
}

fn default_primary() -> String {
    "accuracy".into()
}

/// The placeholders a command may use.
const PLACEHOLDERS: [&str; 3] = ["{program}", "{input}", "{output}"];

/// A `[scoring.program]` table that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramSpecError {
    #[error(
        "[scoring.program] command must name a program, e.g. [\"python3\", \"{{program}}/score.py\", \"{{input}}\", \"{{output}}\"]"
    )]
    NoCommand,
    #[error("[scoring.program] timeout_s must be at least 1")]
    ZeroTimeout,
    #[error("[scoring.program] primary must name a key of the program's scores")]
    NoPrimary,
    #[error("[scoring.program] dir \"{dir}\" must be a relative folder inside the environment")]
    DirOutside { dir: String },
}

/// A scores file (`scores.json` / `scores.txt`) that holds no usable scores; `file` is the
/// name it is shown by.
impl ProgramSpec {
    /// Manifest-level checks, so a broken table fails when the environment is opened.
    pub fn check(&self) -> Result<(), ProgramSpecError> {
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            return Err(ProgramSpecError::NoCommand);
        }
        if self.timeout_s == 0 {
            return Err(ProgramSpecError::ZeroTimeout);
        }
        if self.primary.trim().is_empty() {
            return Err(ProgramSpecError::NoPrimary);
        }
        let dir = std::path::Path::new(&self.dir);
        let inside = !self.dir.is_empty()
            && dir.components().all(|c| {
                matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir)
            });
        if !inside {
            return Err(ProgramSpecError::DirOutside { dir: self.dir.clone() });
        }
        Ok(())
    }

    /// The command as it would run, placeholders kept, for messages.
    pub fn shown(&self) -> String {
        self.command.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ")
    }

    /// The arguments with the placeholders replaced.
    pub fn argv(&self, program: &str, input: &str, output: &str) -> Vec<String> {
        let values = [program, input, output];
        self.command
            .iter()
            .map(|arg| {
                PLACEHOLDERS.iter().zip(values).fold(arg.clone(), |a, (p, v)| a.replace(p, v))
            })
            .collect()
    }
}

fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@%{}=,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
