//! Compiling the `[scoring]` table of an environment manifest (`env::scoring`) into a
//! [`Scorer`].

use super::extract::Extractor;
use super::normalize::Step;
use super::Scorer;
pub use crate::env::scoring::{
    ExtractorSpec, Method, Metric, Normalizer, Primary, RegexSpec, ScoringConfig, VariantSpec,
};

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
    use crate::score::Select;
    use serde::Deserialize;
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
