//! The `[scoring]` table of an environment manifest.

use serde::{Deserialize, Serialize};

use super::extract::{Extractor, Select};
use super::normalize::Step;
use super::Scorer;

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
    pub program: Option<super::program::ProgramSpec>,
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
#[derive(Debug, thiserror::Error)]
pub enum ScoringConfigError {
    /// A user-supplied pattern is not a valid regex.
    #[error("invalid regex in scoring.{field}[{index}] ({pattern:?}): {source}")]
    InvalidRegex {
        /// `"extract"`, `"target_extract"` or `"normalize"`.
        field: &'static str,
        /// Position of the pattern in that list.
        index: usize,
        /// The pattern as written in the manifest.
        pattern: String,
        /// What the regex engine objected to.
        source: regex::Error,
    },
    /// `group` asks for a capture group the regex does not have.
    #[error(
        "scoring.{field}[{index}] ({pattern:?}) has no group {group}; it has {groups} group(s)"
    )]
    NoSuchGroup {
        /// `"extract"` or `"target_extract"`.
        field: &'static str,
        /// Position of the extractor in that list.
        index: usize,
        /// The pattern as written in the manifest.
        pattern: String,
        /// The group asked for.
        group: usize,
        /// How many capture groups the regex has (not counting group 0).
        groups: usize,
    },
    /// A `[[scoring.variants]]` entry without a name, or with one already used.
    #[error(
        "scoring.variants: name {0:?} is empty or used twice; each variant needs its own name"
    )]
    VariantName(String),
    /// A `[[scoring.variants]]` entry that does not compile.
    #[error("in scoring.variants \"{name}\": {source}")]
    Variant { name: String, source: Box<ScoringConfigError> },
}

impl ScoringConfig {
    /// Compiles every pattern once, so that scoring thousands of items never
    /// re-parses a regex and a bad pattern fails before any model is run.
    pub fn compile(&self) -> Result<Scorer, ScoringConfigError> {
        let mut variants = Vec::new();
        for v in &self.variants {
            if v.name.trim().is_empty()
                || variants.iter().any(|(n, _): &(String, Scorer)| *n == v.name)
            {
                return Err(ScoringConfigError::VariantName(v.name.clone()));
            }
            let cfg = ScoringConfig {
                metric: v.metric.unwrap_or(self.metric),
                extract: v.extract.clone().unwrap_or_else(|| self.extract.clone()),
                target_extract: v
                    .target_extract
                    .clone()
                    .unwrap_or_else(|| self.target_extract.clone()),
                normalize: v.normalize.clone().unwrap_or_else(|| self.normalize.clone()),
                strip_think: v.strip_think.unwrap_or(self.strip_think),
                ..ScoringConfig::default()
            };
            let scorer = cfg.compile().map_err(|source| ScoringConfigError::Variant {
                name: v.name.clone(),
                source: Box::new(source),
            })?;
            variants.push((v.name.clone(), scorer));
        }
        Ok(Scorer {
            metric: self.metric,
            extract: compile_list("extract", &self.extract)?,
            target_extract: compile_list("target_extract", &self.target_extract)?,
            normalize: compile_normalizers(&self.normalize)?,
            strip_think: self.strip_think,
            report: self.report.clone(),
            variants,
        })
    }
}

fn compile_normalizers(steps: &[Normalizer]) -> Result<Vec<Step>, ScoringConfigError> {
    steps
        .iter()
        .enumerate()
        .map(|(index, n)| match n {
            Normalizer::Remove(pattern) => {
                regex::Regex::new(pattern).map(Step::Remove).map_err(|source| {
                    ScoringConfigError::InvalidRegex {
                        field: "normalize",
                        index,
                        pattern: pattern.clone(),
                        source,
                    }
                })
            }
            other => Ok(Step::Builtin(other.clone())),
        })
        .collect()
}

fn compile_list(
    field: &'static str,
    specs: &[ExtractorSpec],
) -> Result<Vec<Extractor>, ScoringConfigError> {
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let invalid = |source| ScoringConfigError::InvalidRegex {
                field,
                index,
                pattern: spec.pattern().to_owned(),
                source,
            };
            match spec {
                ExtractorSpec::Plain(p) => Extractor::parse(p).map_err(invalid),
                ExtractorSpec::Table(t) => {
                    let re = regex::Regex::new(&t.regex).map_err(invalid)?;
                    let groups = re.captures_len() - 1;
                    if let Some(group) = t.group.filter(|&g| g > groups) {
                        return Err(ScoringConfigError::NoSuchGroup {
                            field,
                            index,
                            pattern: t.regex.clone(),
                            group,
                            groups,
                        });
                    }
                    Ok(Extractor::regex(re, t.group, t.select))
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[derive(Deserialize)]
    struct Manifest {
        #[serde(default)]
        scoring: ScoringConfig,
    }

    fn parse(text: &str) -> Result<ScoringConfig, toml::de::Error> {
        toml::from_str::<Manifest>(text).map(|m| m.scoring)
    }

    #[test]
    fn full_table_deserialises() {
        // Five hashes: the TOML itself contains `"####`.
        let cfg = parse(
            r#####"
            [scoring]
            method = "generate"
            metric = "numeric"
            extract = ["#### (\\-?[0-9\\.\\,]+)", "last_number"]
            target_extract = ["#### (\\-?[0-9\\.\\,]+)"]
            normalize = ["strip", "lowercase", "remove_commas", "remove_dollar"]
            primary = "exact_match"
            "#####,
        )
        .expect("valid table");
        assert_eq!(cfg.method, Method::Generate);
        assert_eq!(cfg.metric, Metric::Numeric);
        assert_eq!(
            cfg.extract,
            vec![ExtractorSpec::from(r"#### (\-?[0-9\.\,]+)"), ExtractorSpec::from("last_number")]
        );
        assert_eq!(cfg.target_extract, vec![ExtractorSpec::from(r"#### (\-?[0-9\.\,]+)")]);
        assert_eq!(
            cfg.normalize,
            vec![
                Normalizer::Strip,
                Normalizer::Lowercase,
                Normalizer::RemoveCommas,
                Normalizer::RemoveDollar
            ]
        );
        assert_eq!(cfg.primary, Primary::ExactMatch);
    }

    #[test]
    fn every_variant_name_is_snake_case() {
        let cfg = parse(
            r#"
            [scoring]
            method = "loglikelihood"
            metric = "contains"
            normalize = ["remove_punctuation", "remove_articles",
                         "collapse_whitespace", "remove_trailing_period"]
            primary = "answer_rate"
            "#,
        )
        .expect("valid table");
        assert_eq!(cfg.method, Method::Loglikelihood);
        assert_eq!(cfg.metric, Metric::Contains);
        assert_eq!(cfg.normalize.len(), 4);
        assert_eq!(cfg.normalize[3], Normalizer::RemoveTrailingPeriod);
        assert_eq!(cfg.primary, Primary::AnswerRate);
    }

    #[test]
    fn empty_or_missing_table_gives_defaults() {
        for text in ["[scoring]\n", ""] {
            let cfg = parse(text).expect("defaults");
            assert_eq!(cfg, ScoringConfig::default());
            assert_eq!(cfg.method, Method::Generate);
            assert_eq!(cfg.metric, Metric::Exact);
            assert!(cfg.extract.is_empty() && cfg.target_extract.is_empty());
            assert_eq!(cfg.normalize, vec![Normalizer::Strip]);
            assert_eq!(cfg.primary, Primary::Accuracy);
        }
    }

    #[test]
    fn unknown_metric_names_the_valid_options() {
        let err = parse("[scoring]\nmetric = \"fuzzy\"\n").expect_err("bad metric");
        let msg = err.to_string();
        assert!(msg.contains("unknown variant `fuzzy`"), "{msg}");
        for option in ["`exact`", "`numeric`", "`contains`"] {
            assert!(msg.contains(option), "missing {option} in {msg}");
        }
    }

    #[test]
    fn unknown_field_is_rejected() {
        let err = parse("[scoring]\nmetrc = \"exact\"\n").expect_err("typo");
        assert!(err.to_string().contains("metrc"), "{err}");
    }

    #[test]
    fn serialises_round_trip() {
        let cfg = ScoringConfig {
            metric: Metric::Numeric,
            normalize: vec![Normalizer::RemoveArticles],
            ..ScoringConfig::default()
        };
        let json = serde_json::to_string(&cfg).expect("serialise");
        assert!(json.contains(r#""normalize":["remove_articles"]"#), "{json}");
        let back: ScoringConfig = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, cfg);
    }

    #[test]
    fn invalid_regex_reports_field_index_and_pattern() {
        let cfg = ScoringConfig {
            extract: vec!["last_number".into()],
            target_extract: vec![r"ok (\d+)".into(), "#### ([0-9".into()],
            ..ScoringConfig::default()
        };
        let err = match cfg.compile() {
            Ok(_) => panic!("unclosed bracket must not compile"),
            Err(e) => e,
        };
        let ScoringConfigError::InvalidRegex { field, index, ref pattern, .. } = err else {
            panic!("expected InvalidRegex, got {err}");
        };
        assert_eq!((field, index, pattern.as_str()), ("target_extract", 1, "#### ([0-9"));
        let msg = err.to_string();
        assert!(msg.starts_with("invalid regex in scoring.target_extract[1]"), "{msg}");
        assert!(msg.contains("\"#### ([0-9\""), "{msg}");
        assert!(msg.contains("unclosed"), "regex error missing: {msg}");
        assert!(err.source().is_some());
    }

    #[test]
    fn named_extractors_and_valid_patterns_compile() {
        let cfg = ScoringConfig {
            extract: vec!["first_number".into(), "last_number".into(), r"(\w+)".into()],
            ..ScoringConfig::default()
        };
        let scorer = cfg.compile().expect("all valid");
        assert_eq!(scorer.extract.len(), 3);
    }

    #[test]
    fn extractor_tables_and_new_options_deserialise() {
        let cfg = parse(
            r#"
            [scoring]
            metric = "f1"
            strip_think = true
            report = ["exact", "choice"]
            normalize = ["squad", "math"]
            extract = [{ regex = 'x=(\d+)|y=(\d+)', group = 2, select = "last" }, "last_boxed"]
            "#,
        )
        .expect("valid table");
        assert_eq!(cfg.metric, Metric::F1);
        assert!(cfg.strip_think);
        assert_eq!(cfg.report, vec![Metric::Exact, Metric::Choice]);
        assert_eq!(cfg.normalize, vec![Normalizer::Squad, Normalizer::Math]);
        let ExtractorSpec::Table(t) = &cfg.extract[0] else { panic!("{:?}", cfg.extract) };
        assert_eq!((t.group, t.select), (Some(2), Select::Last));
        assert_eq!(cfg.extract[1], ExtractorSpec::from("last_boxed"));
        cfg.compile().expect("compiles");
    }

    #[test]
    fn variants_inherit_what_they_leave_out() {
        let cfg = parse(
            r#"
            [scoring]
            metric = "exact"
            extract = ['#### (\-?[0-9\.\,]+)']
            normalize = [{ remove = "," }, "lowercase"]

            [[scoring.variants]]
            name = "flexible"
            extract = [{ regex = '(-?[$0-9.,]{2,})|(-?[0-9]+)', select = "last" }]

            [[scoring.variants]]
            name = "numeric"
            metric = "numeric"
            normalize = ["strip"]
            "#,
        )
        .expect("valid table");
        assert_eq!(cfg.normalize, vec![Normalizer::Remove(",".into()), Normalizer::Lowercase]);
        assert_eq!(cfg.variants.len(), 2);
        assert_eq!(cfg.variants[1].metric, Some(Metric::Numeric));
        let scorer = cfg.compile().expect("compiles");
        assert_eq!(scorer.variant_names(), ["flexible", "numeric"]);
        let s = scorer.score_one("so 1,000 then #### 1,000.0 or 7", "1000");
        // Main: "1,000.0" → "1000.0" ≠ "1000"; flexible: the last number, 7, wrong;
        // numeric: the main extraction, only stripped ("1,000.0"), equal as a number.
        assert_eq!(s.extracted.as_deref(), Some("1000.0"));
        assert!(!s.correct);
        let v: Vec<(Option<&str>, bool)> =
            s.variants.iter().map(|v| (v.extracted.as_deref(), v.correct)).collect();
        assert_eq!(v, [(Some("7"), false), (Some("1,000.0"), true)]);
    }

    #[test]
    fn bad_variants_are_named() {
        let dup = parse("[[scoring.variants]]\nname = \"a\"\n[[scoring.variants]]\nname = \"a\"\n")
            .expect("parses");
        let err = dup.compile().map(|_| ()).expect_err("duplicate");
        assert!(err.to_string().contains("\"a\" is empty or used twice"), "{err}");
        let bad = parse("[[scoring.variants]]\nname = \"f\"\nextract = [\"(\"]\n").expect("parses");
        let err = bad.compile().map(|_| ()).expect_err("bad regex");
        assert!(
            err.to_string()
                .starts_with("in scoring.variants \"f\": invalid regex in scoring.extract[0]"),
            "{err}"
        );
        let err = parse("[[scoring.variants]]\nname = \"f\"\nextrct = []\n").expect_err("typo");
        assert!(err.to_string().contains("extrct"), "{err}");
        let bad =
            parse("[scoring]\nnormalize = [\"strip\", { remove = \"[\" }]\n").expect("parses");
        let err = bad.compile().map(|_| ()).expect_err("bad remove regex");
        assert!(err.to_string().starts_with("invalid regex in scoring.normalize[1]"), "{err}");
    }

    #[test]
    fn extractor_table_rejects_unknown_keys_and_missing_groups() {
        let err = parse("[scoring]\nextract = [{ regex = \"a\", grup = 1 }]\n").expect_err("typo");
        assert!(err.to_string().contains("unknown field `grup`"), "{err}");
        assert!(parse("[scoring]\nextract = [{ regex = \"a\", select = \"middle\" }]\n").is_err());
        let cfg = parse("[scoring]\ntarget_extract = [\"b\", { regex = \"(a)\", group = 2 }]\n")
            .expect("parses");
        let err = cfg.compile().map(|_| ()).expect_err("group 2 of a one-group regex");
        assert_eq!(
            err.to_string(),
            "scoring.target_extract[1] (\"(a)\") has no group 2; it has 1 group(s)"
        );
    }
}
