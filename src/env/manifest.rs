//! `environment.toml`: what a benchmark is and how it is prompted, decoded and scored.

use serde::{Deserialize, Deserializer, Serialize};

use super::remap::RemapError;
use super::scoring::{Method, Primary, ProgramSpecError, ScoringConfig};
use super::source::HfSourceError;

/// An `environment.toml` that does not parse or does not describe a usable environment.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not TOML, or not the manifest's fields (the message is the toml crate's).
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("no [[phases]]: an environment needs at least one phase")]
    NoPhases,
    #[error("phase \"{phase}\" is defined twice")]
    DuplicatePhase { phase: String },
    #[error(
        "phase \"{phase}\" needs either data (a file in the environment), or dataset (a file under $BENCHGEN_DATA_DIR) and/or source (hf://datasets/…)"
    )]
    PhaseData { phase: String },
    #[error("phase \"{phase}\": {source}")]
    PhaseSource {
        phase: String,
        #[source]
        source: HfSourceError,
    },
    #[error("phase \"{phase}\" has source_fields but no source: they rewrite the hub file's rows")]
    SourceFieldsWithoutSource { phase: String },
    #[error("phase \"{phase}\": {source}")]
    PhaseSourceFields {
        phase: String,
        #[source]
        source: RemapError,
    },
    #[error("[source_fields] rewrites hub rows, but no phase has a source")]
    SourceFieldsWithoutHub,
    /// The top-level `[source_fields]` table (its message reads `[source_fields…`).
    #[error("[{0}")]
    SourceFields(#[source] RemapError),
    #[error("[fewshot] phase = \"{phase}\" is not one of the [[phases]]")]
    UnknownFewshotPhase { phase: String },
    #[error(
        "phase \"{phase}\" sets fewshot but there is no [fewshot] table to draw examples from"
    )]
    NoFewshotTable { phase: String },
    #[error("[fields] choices_split needs choices to be a list of fields")]
    ChoicesSplit,
    #[error("[scoring] method = \"loglikelihood\" needs [fields] choices")]
    LoglikelihoodWithoutChoices,
    #[error("[scoring] primary = \"acc_norm\" needs method = \"loglikelihood\"")]
    AccNormWithoutLoglikelihood,
    #[error(transparent)]
    Program(#[from] ProgramSpecError),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// The first phase is the default one (the platform's Phases tab).
    pub phases: Vec<PhaseSpec>,
    #[serde(default)]
    pub fields: Fields,
    /// `source_fields` of every phase with a `source` that sets none of its own.
    #[serde(default)]
    pub source_fields: Option<std::collections::BTreeMap<String, String>>,
    pub prompt: PromptSpec,
    #[serde(default)]
    pub generation: GenerationSpec,
    #[serde(default)]
    pub scoring: ScoringConfig,
    #[serde(default)]
    pub finetune: Option<FinetuneSpec>,
    /// Solved examples from another phase put ahead of each item.
    #[serde(default)]
    pub fewshot: Option<FewshotSpec>,
}

fn default_version() -> String {
    "0.0.0".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    pub name: String,
    /// Path of the items file, relative to the environment root.
    #[serde(default)]
    pub data: Option<String>,
    /// Path of the items file under `$BENCHGEN_DATA_DIR` (official data kept outside the
    /// environment, laid out like shared/data).
    #[serde(default)]
    pub dataset: Option<String>,
    /// `hf://datasets/ORG/NAME@REV/PATH`: the official file on the hub, read when `dataset` is
    /// not found under `$BENCHGEN_DATA_DIR`.
    #[serde(default)]
    pub source: Option<String>,
    /// How the `source` file's rows map onto the layout the rest of the manifest reads (that of
    /// the `dataset` file): field name → minijinja expression over the hub row. See
    /// [`super::remap`].
    #[serde(default)]
    pub source_fields: Option<std::collections::BTreeMap<String, String>>,
    /// Field names of a CSV file without a header row.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// How many few-shot examples this phase's items get, instead of `[fewshot] n` (0: none), so
    /// one manifest can offer the benchmark both with and without its examples.
    #[serde(default)]
    pub fewshot: Option<usize>,
}

impl PhaseSpec {
    /// How many few-shot examples this phase's items get under `spec`.
    pub fn shots(&self, spec: Option<&FewshotSpec>) -> usize {
        spec.map_or(0, |s| self.fewshot.unwrap_or(s.n))
    }

    /// The file name, whichever way it is given (its extension picks the reader).
    pub fn file_name(&self) -> &str {
        self.data
            .as_deref()
            .or(self.dataset.as_deref())
            .or(self.source.as_deref())
            .unwrap_or_default()
    }
}

/// Where multiple-choice options are: one list field (`"question.choices"`; entries are strings
/// or objects with text and label keys), or several fields, one per option (`["A","B","C","D"]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ChoicesField {
    Path(String),
    Columns(Vec<String>),
}

/// Which raw item fields play which role.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// Absent: the item's 0-based line index is its id.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default = "default_target")]
    pub target: String,
    /// Multiple choice: where the options are; the target then names the right one by label,
    /// 0-based index or text.
    #[serde(default)]
    pub choices: Option<ChoicesField>,
    #[serde(default = "default_choice_text")]
    pub choice_text: String,
    #[serde(default = "default_choice_label")]
    pub choice_label: String,
    /// With a list of choice fields: split each field's text on this separator (pieces trimmed,
    /// empty ones dropped) and label the options A, B, …, so one field may hold several options
    /// (TruthfulQA's `;`-separated answers).
    #[serde(default)]
    pub choices_split: Option<String>,
}

fn default_target() -> String {
    "target".into()
}

fn default_choice_text() -> String {
    "text".into()
}

fn default_choice_label() -> String {
    "label".into()
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            id: None,
            input: None,
            target: default_target(),
            choices: None,
            choice_text: default_choice_text(),
            choice_label: default_choice_label(),
            choices_split: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChatMode {
    /// Use the model's chat template when it has one.
    #[default]
    Auto,
    Always,
    Never,
}

/// Accepts `chat = "auto"`, `chat = true` / `"true"`, `chat = false` / `"false"`.
impl<'de> Deserialize<'de> for ChatMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(ChatMode::Always),
            Raw::Bool(false) => Ok(ChatMode::Never),
            Raw::Text(t) => match t.as_str() {
                "auto" => Ok(ChatMode::Auto),
                "true" => Ok(ChatMode::Always),
                "false" => Ok(ChatMode::Never),
                other => Err(serde::de::Error::custom(format!(
                    "chat = \"{other}\": expected auto, true or false"
                ))),
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    /// A minijinja template over the item's raw fields.
    pub template: String,
    #[serde(default)]
    pub system: String,
    #[serde(default)]
    pub chat: ChatMode,
    /// Multiple choice by log-likelihood: each option's continuation, over `choice`, `label`
    /// and `index`. lm-evaluation-harness puts one space between prompt and option.
    #[serde(default = "default_choice_template")]
    pub choice_template: String,
}

fn default_choice_template() -> String {
    " {{ choice }}".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationSpec {
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub temperature: f64,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub top_p: Option<f64>,
}

fn default_max_new_tokens() -> usize {
    256
}

impl Default for GenerationSpec {
    fn default() -> Self {
        Self {
            max_new_tokens: default_max_new_tokens(),
            stop: Vec::new(),
            temperature: 0.0,
            top_k: None,
            top_p: None,
        }
    }
}

/// How few-shot examples are chosen from the few-shot phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FewshotSampler {
    /// The phase's first `n` items, in file order (lm-evaluation-harness's `first_n`).
    #[default]
    FirstN,
    /// `n` items drawn without replacement, seeded by `seed` and the item's id.
    Random,
    /// lm-evaluation-harness's default sampler, bit for bit: one Python `random.Random(seed)`
    /// advanced from item to item in file order.
    LmEval,
}

impl FewshotSampler {
    /// The name used in manifests and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::FirstN => "first_n",
            Self::Random => "random",
            Self::LmEval => "lm_eval",
        }
    }
}

/// The `[fewshot]` table: lm-evaluation-harness's `fewshot_split`, `num_fewshot`,
/// `fewshot_config.sampler`, `fewshot_delimiter` and `target_delimiter`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FewshotSpec {
    /// The phase the examples come from.
    pub phase: String,
    pub n: usize,
    #[serde(default)]
    pub sampler: FewshotSampler,
    #[serde(default = "default_fewshot_seed")]
    pub seed: u64,
    /// An example's question, over its raw fields; absent: the `[prompt] template`.
    #[serde(default)]
    pub template: Option<String>,
    /// An example's answer, over its raw fields; absent: the item's target (for multiple choice,
    /// the text of the right option).
    #[serde(default)]
    pub target: Option<String>,
    /// Between the question and the answer of an example (plain-text prompts only).
    #[serde(default = "default_target_delimiter")]
    pub target_delimiter: String,
    /// After each example (plain-text prompts only).
    #[serde(default = "default_fewshot_separator")]
    pub separator: String,
}

fn default_fewshot_seed() -> u64 {
    1234
}

fn default_target_delimiter() -> String {
    " ".into()
}

fn default_fewshot_separator() -> String {
    "\n\n".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinetuneInclude {
    /// Items the model got right, with its own response.
    Correct,
    /// Every item, with the model's response.
    All,
    /// Every item, with the reference target as the response.
    Reference,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinetuneFormat {
    /// `{"messages":[{"role":"user",…},{"role":"assistant",…}]}`
    Chat,
    /// `{"prompt":…,"completion":…}`
    PromptCompletion,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSpec {
    #[serde(default = "default_include")]
    pub include: FinetuneInclude,
    #[serde(default = "default_format")]
    pub format: FinetuneFormat,
}

fn default_include() -> FinetuneInclude {
    FinetuneInclude::Correct
}

fn default_format() -> FinetuneFormat {
    FinetuneFormat::Chat
}

impl Manifest {
    /// How `phase`'s hub rows are rewritten: its own table, else the manifest's.
    pub fn source_fields<'a>(
        &'a self,
        phase: &'a PhaseSpec,
    ) -> Option<&'a std::collections::BTreeMap<String, String>> {
        phase.source_fields.as_ref().or(self.source_fields.as_ref())
    }

    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest = toml::from_str(text)?;
        if m.phases.is_empty() {
            return Err(ManifestError::NoPhases);
        }
        let mut names = std::collections::HashSet::new();
        let phase = |p: &PhaseSpec| p.name.clone();
        for p in &m.phases {
            if !names.insert(p.name.as_str()) {
                return Err(ManifestError::DuplicatePhase { phase: phase(p) });
            }
            let external = p.dataset.is_some() || p.source.is_some();
            if p.data.is_some() == external {
                return Err(ManifestError::PhaseData { phase: phase(p) });
            }
            if let Some(source) = &p.source {
                super::source::HfSource::parse(source)
                    .map_err(|source| ManifestError::PhaseSource { phase: phase(p), source })?;
            }
            if p.source_fields.is_some() && p.source.is_none() {
                return Err(ManifestError::SourceFieldsWithoutSource { phase: phase(p) });
            }
            if let Some(table) = &p.source_fields {
                super::remap::Remap::new(table).map_err(|source| {
                    ManifestError::PhaseSourceFields { phase: phase(p), source }
                })?;
            }
        }
        if let Some(table) = &m.source_fields {
            if !m.phases.iter().any(|p| p.source.is_some()) {
                return Err(ManifestError::SourceFieldsWithoutHub);
            }
            super::remap::Remap::new(table).map_err(ManifestError::SourceFields)?;
        }
        if let Some(f) = &m.fewshot {
            if !m.phases.iter().any(|p| p.name == f.phase) {
                return Err(ManifestError::UnknownFewshotPhase { phase: f.phase.clone() });
            }
        }
        if let Some(p) =
            m.phases.iter().find(|p| p.fewshot.is_some_and(|n| n > 0) && m.fewshot.is_none())
        {
            return Err(ManifestError::NoFewshotTable { phase: phase(p) });
        }
        if m.fields.choices_split.is_some()
            && !matches!(m.fields.choices, Some(ChoicesField::Columns(_)))
        {
            return Err(ManifestError::ChoicesSplit);
        }
        let multiple_choice = m.fields.choices.is_some();
        let by_loglik = m.scoring.method == Method::Loglikelihood;
        if by_loglik && !multiple_choice {
            return Err(ManifestError::LoglikelihoodWithoutChoices);
        }
        if m.scoring.primary == Primary::AccNorm && !by_loglik {
            return Err(ManifestError::AccNormWithoutLoglikelihood);
        }
        if let Some(program) = &m.scoring.program {
            program.check()?;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name = \"e\"\n[[phases]]\nname = \"test\"\ndata = \"t.jsonl\"\n[[phases]]\nname = \"train\"\ndata = \"r.jsonl\"\n[prompt]\ntemplate = \"{{ q }}\"\n";

    #[test]
    fn fewshot_table_defaults_follow_lm_eval() {
        let m = Manifest::parse(&format!("{BASE}[fewshot]\nphase = \"train\"\nn = 5\n"))
            .expect("valid");
        let f = m.fewshot.as_ref().expect("table");
        assert_eq!((f.sampler, f.seed), (FewshotSampler::FirstN, 1234));
        assert_eq!((f.target_delimiter.as_str(), f.separator.as_str()), (" ", "\n\n"));
        assert_eq!(m.phases[0].shots(m.fewshot.as_ref()), 5);
    }

    #[test]
    fn source_fields_need_a_source_and_valid_expressions() {
        let hub = BASE.replace("data = \"t.jsonl\"", "source = \"hf://datasets/o/n/t.parquet\"");
        let m =
            Manifest::parse(&format!("{hub}[source_fields]\nq = \"question\"\n")).expect("valid");
        assert_eq!(
            m.source_fields(&m.phases[0]).and_then(|t| t.get("q")).map(String::as_str),
            Some("question")
        );
        let own = hub.replace("t.parquet\"", "t.parquet\"\n[phases.source_fields]\nq = \"stem\"");
        let m =
            Manifest::parse(&format!("{own}[source_fields]\nq = \"question\"\n")).expect("valid");
        assert_eq!(
            m.source_fields(&m.phases[0]).and_then(|t| t.get("q")).map(String::as_str),
            Some("stem"),
            "the phase's own wins"
        );
        let err = Manifest::parse(&format!("{BASE}[source_fields]\nq = \"question\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no phase has a source"), "{err}");
        let err = Manifest::parse(&BASE.replace(
            "data = \"t.jsonl\"",
            "data = \"t.jsonl\"\n[phases.source_fields]\nq = \"x\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("phase \"test\" has source_fields but no source"), "{err}");
        let err =
            Manifest::parse(&format!("{hub}[source_fields]\nq = \"question[\"\n")).unwrap_err();
        assert!(
            matches!(&err, ManifestError::SourceFields(RemapError::BadExpression { field, .. }) if field == "q"),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("[source_fields.q = \"question[\""), "{err}");
    }

    #[test]
    fn every_sampler_parses_under_its_logged_name() {
        for s in [FewshotSampler::FirstN, FewshotSampler::Random, FewshotSampler::LmEval] {
            let m = Manifest::parse(&format!(
                "{BASE}[fewshot]\nphase = \"train\"\nn = 5\nsampler = \"{}\"\n",
                s.name()
            ))
            .expect("valid");
            assert_eq!(m.fewshot.expect("table").sampler, s);
        }
    }

    #[test]
    fn fewshot_mistakes_are_reported() {
        let err = Manifest::parse(&format!("{BASE}[fewshot]\nphase = \"dev\"\nn = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[fewshot] phase = \"dev\" is not one of the [[phases]]"), "{err}");
        let err = Manifest::parse(&format!(
            "{BASE}[fewshot]\nphase = \"train\"\nn = 5\nsampler = \"lottery\"\n"
        ))
        .unwrap_err();
        assert!(matches!(err, ManifestError::Toml(_)), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("lottery"), "{err}");
        let err =
            Manifest::parse(&BASE.replace("data = \"t.jsonl\"", "data = \"t.jsonl\"\nfewshot = 3"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("no [fewshot] table"), "{err}");
        let zero =
            Manifest::parse(&BASE.replace("data = \"t.jsonl\"", "data = \"t.jsonl\"\nfewshot = 0"))
                .expect("0 needs no table");
        assert_eq!(zero.phases[0].shots(None), 0);
    }
}
