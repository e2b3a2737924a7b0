//! The models registry: Platform Models as a TOML file mapping an alias to a source spec plus the
//! settings a platform would store with it (revision, dtype, chat template, generation defaults).
//!
//! ```toml
//! [models.smol]
//! source = "hf:HuggingFaceTB/SmolLM2-135M-Instruct"
//! revision = "main"                 # hf: sources only
//! dtype = "bf16"                    # used when --dtype is not given
//! chat_template = "smol.jinja"      # relative to this file; replaces the model's own
//! description = "SmolLM2 135M, instruct"
//! [models.smol.generation]          # override the environment's generation settings
//! max_new_tokens = 512
//! ```
//! It lives in the user's config directory (`$XDG_CONFIG_HOME/benchgen/models.toml`, else
//! `~/.config/benchgen/models.toml`) unless `--models-file` or `BENCHGEN_MODELS` names another.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::ModelSpec;
use crate::error::{Error, RegistryError, RegistryProblem, Result};
use crate::vars::ProcessVars;

/// Generation settings an alias overrides; unset fields keep the environment's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationDefaults {
    pub max_new_tokens: Option<usize>,
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub stop: Option<Vec<String>>,
}

impl GenerationDefaults {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the set fields to `params`.
    pub fn apply(&self, params: &mut crate::generation::GenParams) {
        if let Some(v) = self.max_new_tokens {
            params.max_new_tokens = v;
        }
        if let Some(v) = self.temperature {
            params.temperature = v;
        }
        if let Some(v) = self.top_k {
            params.top_k = Some(v);
        }
        if let Some(v) = self.top_p {
            params.top_p = Some(v);
        }
        if let Some(v) = &self.stop {
            params.stop = v.clone();
        }
    }

    fn or(self, inner: Self) -> Self {
        Self {
            max_new_tokens: self.max_new_tokens.or(inner.max_new_tokens),
            temperature: self.temperature.or(inner.temperature),
            top_k: self.top_k.or(inner.top_k),
            top_p: self.top_p.or(inner.top_p),
            stop: self.stop.or(inner.stop),
        }
    }
}

/// What an alias sets besides its source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelDefaults {
    pub dtype: Option<String>,
    /// A Jinja file, relative to the registry file.
    pub chat_template: Option<String>,
    pub generation: GenerationDefaults,
}

impl ModelDefaults {
    /// `self` (the outer alias) wins over `inner` (an alias it points to), field by field.
    pub fn over(self, inner: Self) -> Self {
        Self {
            dtype: self.dtype.or(inner.dtype),
            chat_template: self.chat_template.or(inner.chat_template),
            generation: self.generation.or(inner.generation),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    models: BTreeMap<String, EntryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    source: String,
    revision: Option<String>,
    dtype: Option<String>,
    chat_template: Option<String>,
    description: Option<String>,
    #[serde(default)]
    generation: GenerationDefaults,
}

/// One alias.
#[derive(Debug, Clone)]
pub struct Entry {
    pub alias: String,
    pub source: String,
    pub revision: Option<String>,
    pub description: Option<String>,
    pub defaults: ModelDefaults,
}

impl Entry {
    /// The source as a spec, with `revision` folded into an `hf:` source.
    pub fn spec(&self) -> Result<ModelSpec> {
        let spec = ModelSpec::parse(&self.source)?;
        match (spec, &self.revision) {
            (ModelSpec::Hf { repo, revision: None }, Some(r)) => {
                Ok(ModelSpec::Hf { repo, revision: Some(r.clone()) })
            }
            (ModelSpec::Hf { revision: Some(a), .. }, Some(b)) if a != *b => Err(Error::model(
                format!("platform:{}", self.alias),
                format!("source names revision {a} and `revision` says {b}; keep one"),
            )),
            (spec @ ModelSpec::Hf { .. }, _) | (spec, None) => Ok(spec),
            (_, Some(_)) => Err(Error::model(
                format!("platform:{}", self.alias),
                "`revision` only applies to hf: sources",
            )),
        }
    }
}

/// The loaded registry; empty when the default file does not exist.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub path: Option<PathBuf>,
    pub entries: BTreeMap<String, Entry>,
    /// Without a file: where the default one would be ([`default_path`]), for messages.
    pub default_path: Option<PathBuf>,
}

/// `$XDG_CONFIG_HOME/benchgen/models.toml`, else `~/.config/benchgen/models.toml`
/// (`%APPDATA%\benchgen\models.toml` on Windows).
pub fn default_path(vars: &ProcessVars) -> Option<PathBuf> {
    let base = vars.path("XDG_CONFIG_HOME").or_else(|| {
        if cfg!(windows) {
            vars.path("APPDATA")
        } else {
            vars.path("HOME").map(|h| h.join(".config"))
        }
    })?;
    Some(base.join("benchgen").join("models.toml"))
}

const DTYPES: [&str; 5] = ["auto", "f32", "bf16", "f16", "q8_0"];

impl Registry {
    /// Reads `explicit` (which must exist), else the default file (`default`, from
    /// [`default_path`]) when there is one.
    pub fn load(explicit: Option<&Path>, default: Option<&Path>) -> Result<Self> {
        let path = match explicit {
            Some(p) if !p.is_file() => {
                return Err(RegistryError::Missing { path: p.to_path_buf() }.into())
            }
            Some(p) => p.to_path_buf(),
            None => match default {
                Some(p) if p.is_file() => p.to_path_buf(),
                _ => {
                    return Ok(Self {
                        default_path: default.map(Path::to_path_buf),
                        ..Self::default()
                    })
                }
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |problem: RegistryProblem| {
            Error::from(RegistryError::Bad { path: path.to_path_buf(), problem })
        };
        let file: RegistryFile = toml::from_str(text).map_err(|e| bad(e.into()))?;
        let mut entries = BTreeMap::new();
        for (alias, e) in file.models {
            if let Some(d) = &e.dtype {
                if !DTYPES.contains(&d.as_str()) {
                    return Err(bad(RegistryProblem::Dtype {
                        alias: alias.clone(),
                        dtype: d.clone(),
                        expected: DTYPES.join(", "),
                    }));
                }
            }
            ModelSpec::parse(&e.source).map_err(|err| {
                bad(RegistryProblem::Source { alias: alias.clone(), source: Box::new(err) })
            })?;
            let entry = Entry {
                alias: alias.clone(),
                source: e.source,
                revision: e.revision,
                description: e.description,
                defaults: ModelDefaults {
                    dtype: e.dtype,
                    chat_template: e.chat_template,
                    generation: e.generation,
                },
            };
            entry.spec().map_err(|err| bad(RegistryProblem::Entry(Box::new(err))))?;
            entries.insert(alias, entry);
        }
        Ok(Self { path: Some(path.to_path_buf()), entries, default_path: None })
    }

    pub fn get(&self, alias: &str) -> Result<&Entry> {
        self.entries.get(alias).ok_or_else(|| {
            let known: Vec<&str> = self.entries.keys().map(String::as_str).collect();
            let place = match &self.path {
                Some(p) => format!("in {}", p.display()),
                None => format!(
                    "(no registry file: create {} or pass --models-file)",
                    self.default_path
                        .as_ref()
                        .map_or_else(|| "models.toml".into(), |p| p.display().to_string())
                ),
            };
            let listing = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            Error::model(
                format!("platform:{alias}"),
                format!("unknown alias {place}; known aliases: {listing}"),
            )
        })
    }

    /// An alias's chat template file, relative to the registry file.
    pub fn read_chat_template(&self, alias: &str, file: &str) -> Result<String> {
        let base = self.path.as_deref().and_then(Path::parent).unwrap_or(Path::new("."));
        let path = base.join(file);
        std::fs::read_to_string(&path).map_err(|e| {
            Error::model(
                format!("platform:{alias}"),
                format!("chat_template {}: {e}", path.display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Registry> {
        Registry::parse(text, Path::new("/cfg/models.toml"))
    }

    #[test]
    fn reads_aliases_with_defaults() {
        let r = parse(
            r#"
            [models.small]
            source = "hf:Org/Small"
            revision = "v1"
            dtype = "bf16"
            [models.small.generation]
            max_new_tokens = 7
            [models.server]
            source = "running:http://localhost:8000#m"
            "#,
        )
        .unwrap();
        let small = r.get("small").unwrap();
        assert_eq!(
            small.spec().unwrap(),
            ModelSpec::Hf { repo: "Org/Small".into(), revision: Some("v1".into()) }
        );
        assert_eq!(small.defaults.dtype.as_deref(), Some("bf16"));
        assert_eq!(small.defaults.generation.max_new_tokens, Some(7));
        assert!(matches!(r.get("server").unwrap().spec().unwrap(), ModelSpec::Running(_)));
    }

    #[test]
    fn unknown_alias_lists_known_ones() {
        let r = parse("[models.a]\nsource = \"./x\"\n[models.b]\nsource = \"./y\"\n").unwrap();
        let msg = r.get("c").unwrap_err().to_string();
        assert!(msg.contains("a, b") && msg.contains("/cfg/models.toml"), "{msg}");
    }

    #[test]
    fn bad_entries_are_refused_with_their_alias() {
        for (text, needle) in [
            ("[models.a]\nsource = \"hf:a/b\"\ndtype = \"f64\"\n", "[models.a] dtype"),
            ("[models.a]\nsource = \"hf:\"\n", "[models.a] source"),
            ("[models.a]\nsource = \"./x\"\nrevision = \"r\"\n", "only applies to hf:"),
            ("[models.a]\nsource = \"hf:a/b@r1\"\nrevision = \"r2\"\n", "keep one"),
            ("[models.a]\nsorce = \"./x\"\n", "sorce"),
        ] {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{text:?}: {msg}");
        }
    }

    #[test]
    fn registry_errors_say_what_kind_of_problem_they_are() {
        let e = parse("models = [").unwrap_err();
        let Error::Registry(r) = &e else { panic!("{e:?}") };
        assert!(
            matches!(**r, RegistryError::Bad { problem: RegistryProblem::Toml(_), .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("models registry /cfg/models.toml: TOML parse error"),
            "{e}"
        );
        let e = parse("[models.a]\nsource = \"hf:\"\n").unwrap_err();
        let Error::Registry(r) = &e else { panic!("{e:?}") };
        let RegistryError::Bad { problem: RegistryProblem::Source { alias, source }, .. } = &**r
        else {
            panic!("{e:?}")
        };
        assert_eq!(alias, "a");
        assert!(matches!(**source, Error::Model { .. }), "{source:?}");
        let e = Registry::load(Some(Path::new("/no/such/models.toml")), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "models registry /no/such/models.toml does not exist (given by --models-file or BENCHGEN_MODELS)"
        );
    }

    #[test]
    fn the_default_file_is_in_the_config_dir() {
        let path = |pairs: &[(&str, &str)]| default_path(&pairs.iter().copied().collect());
        assert_eq!(path(&[]), None);
        if !cfg!(windows) {
            assert_eq!(
                path(&[("HOME", "/u")]),
                Some(PathBuf::from("/u/.config/benchgen/models.toml"))
            );
        }
        assert_eq!(
            path(&[("HOME", "/u"), ("XDG_CONFIG_HOME", "/c")]),
            Some(PathBuf::from("/c/benchgen/models.toml"))
        );
    }

    #[test]
    fn outer_alias_wins_field_by_field() {
        let outer = ModelDefaults { dtype: Some("f32".into()), ..Default::default() };
        let inner = ModelDefaults {
            dtype: Some("bf16".into()),
            chat_template: Some("t.jinja".into()),
            generation: GenerationDefaults { top_k: Some(3), ..Default::default() },
        };
        let merged = outer.over(inner);
        assert_eq!(merged.dtype.as_deref(), Some("f32"));
        assert_eq!(merged.chat_template.as_deref(), Some("t.jinja"));
        assert_eq!(merged.generation.top_k, Some(3));
    }
}
