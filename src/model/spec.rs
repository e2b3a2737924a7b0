//! Model specs as users write them (design doc §1) → where the model comes from.
//!
//! The four tabs of the platform's model picker are four prefixes: `hf:` (HuggingFace),
//! `trained:` or a plain path (Trained), `platform:` (Platform Models, via the registry) and
//! `running:` (an OpenAI-compatible server). Everything past this module sees either a
//! [`Checkpoint`] to load in-process or an [`Endpoint`] to call.

use std::fmt;
use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::registry::{ModelDefaults, Registry};
use super::tokenizer::TextTokenizer;
use crate::error::{Error, Result};
use crate::hub::{HubConfig, HubOptions};
use crate::vars::ProcessVars;

/// A parsed `--model` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Embedded,
    Hf { repo: String, revision: Option<String> },
    Trained(PathBuf),
    Platform(String),
    Running(Endpoint),
}

/// An OpenAI-compatible server: `running:URL[#MODEL_NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As given, without a trailing slash (`http://host:8000` or `http://host:8000/v1`).
    pub url: String,
    /// The `model` field sent with each request; servers serving one model may not need it.
    pub model: Option<String>,
}

impl ModelSpec {
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(Error::model("--model", "empty model spec"));
        }
        if spec == "embedded" || spec == crate::model::embedded::MODEL_ORIGIN {
            return Ok(Self::Embedded);
        }
        if let Some(rest) = spec.strip_prefix("hf:") {
            let (repo, revision) = match rest.split_once('@') {
                Some((r, rev)) => (r, Some(rev)),
                None => (rest, None),
            };
            let valid = repo.split('/').count() <= 2
                && !repo.is_empty()
                && repo.split('/').all(|p| {
                    !p.is_empty()
                        && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                });
            if !valid || revision.is_some_and(str::is_empty) {
                return Err(Error::model(spec, "expected hf:ORG/NAME or hf:ORG/NAME@REVISION (e.g. hf:HuggingFaceTB/SmolLM2-135M@main)"));
            }
            return Ok(Self::Hf { repo: repo.to_string(), revision: revision.map(str::to_string) });
        }
        if let Some(alias) = spec.strip_prefix("platform:") {
            if alias.is_empty() {
                return Err(Error::model(
                    spec,
                    "expected platform:ALIAS (`benchgen models list` shows the aliases)",
                ));
            }
            return Ok(Self::Platform(alias.to_string()));
        }
        if let Some(rest) = spec.strip_prefix("running:") {
            let (url, model) = match rest.split_once('#') {
                Some((u, m)) if !m.is_empty() => (u, Some(m.to_string())),
                Some((u, _)) => (u, None),
                None => (rest, None),
            };
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.len() <= "https://".len()
            {
                return Err(Error::model(
                    spec,
                    "expected running:http(s)://HOST[:PORT][/v1][#MODEL_NAME]",
                ));
            }
            return Ok(Self::Running(Endpoint {
                url: url.trim_end_matches('/').to_string(),
                model,
            }));
        }
        Ok(Self::Trained(PathBuf::from(spec.strip_prefix("trained:").unwrap_or(spec))))
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str(crate::model::embedded::MODEL_ORIGIN),
            Self::Hf { repo, revision: Some(r) } => write!(f, "hf:{repo}@{r}"),
            Self::Hf { repo, revision: None } => write!(f, "hf:{repo}"),
            Self::Trained(p) => write!(f, "{}", p.display()),
            Self::Platform(a) => write!(f, "platform:{a}"),
            Self::Running(Endpoint { url, model: Some(m) }) => write!(f, "running:{url}#{m}"),
            Self::Running(Endpoint { url, model: None }) => write!(f, "running:{url}"),
        }
    }
}

/// How model sources behave: from flags and the process's variables
/// ([`SourceOptions::from_vars`]). The default is what an empty environment gives.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Use the HF cache only (`--offline` or `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// The models registry (`--models-file` or `BENCHGEN_MODELS`); else `default_models_file`.
    pub models_file: Option<PathBuf>,
    /// The registry in the user's config dir (`registry::default_path`), read when it exists.
    pub default_models_file: Option<PathBuf>,
    /// Show download progress bars (on a terminal).
    pub progress: bool,
    /// Where `hf:` models come from.
    pub hub: HubConfig,
    /// How `running:` servers are called.
    pub server: ServerOptions,
}

impl SourceOptions {
    /// `HF_HUB_OFFLINE`, `BENCHGEN_MODELS`, the config dir's registry, the hub's variables and
    /// the servers'; no progress bars.
    pub fn from_vars(vars: &ProcessVars) -> Self {
        Self {
            offline: crate::hub::offline_from_vars(vars),
            models_file: vars.path("BENCHGEN_MODELS"),
            default_models_file: super::registry::default_path(vars),
            progress: false,
            hub: HubConfig::from_vars(vars),
            server: ServerOptions::from_vars(vars),
        }
    }

    pub fn registry(&self) -> Result<Registry> {
        Registry::load(self.models_file.as_deref(), self.default_models_file.as_deref())
    }

    /// The hub as these options reach it.
    pub fn hub_options(&self) -> HubOptions {
        HubOptions { offline: self.offline, progress: self.progress, config: self.hub.clone() }
    }
}

/// How `running:` servers are called ([`ServerOptions::from_vars`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Sent as `Authorization: Bearer …`: `$BENCHGEN_API_KEY`, else `$OPENAI_API_KEY`, trimmed.
    pub api_key: Option<String>,
    /// `$BENCHGEN_REQUEST_TIMEOUT` as set (seconds), checked when a server is called.
    pub request_timeout: Option<String>,
}

impl ServerOptions {
    pub fn from_vars(vars: &ProcessVars) -> Self {
        let api_key = ["BENCHGEN_API_KEY", "OPENAI_API_KEY"]
            .iter()
            .find_map(|k| vars.get_str(k).filter(|v| !v.trim().is_empty()))
            .map(|v| v.trim().to_string());
        let request_timeout = vars.get_str("BENCHGEN_REQUEST_TIMEOUT").map(str::to_string);
        Self { api_key, request_timeout }
    }
}

/// The API key is a secret: shown as set or not.
impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| "…"))
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// What a spec resolved to.
pub enum ModelSource {
    Local(Box<Checkpoint>),
    Endpoint(Endpoint),
}

pub struct Resolved {
    pub source: ModelSource,
    /// The hub commit the files came from (`hf:` models, also through an alias).
    pub revision: Option<String>,
}

/// What `--model` was, for messages and the run record.
pub fn describe(spec: Option<&str>) -> String {
    spec.map_or_else(|| crate::model::embedded::MODEL_ORIGIN.to_string(), str::to_string)
}

/// Resolves `--model` (None → the embedded model): downloads hub models, follows aliases.
pub fn resolve_source(spec: Option<&str>, opts: &SourceOptions) -> Result<Resolved> {
    let Some(spec) = spec else {
        return Ok(local(crate::model::embedded::model_checkpoint()));
    };
    resolve_parsed(&ModelSpec::parse(spec)?, opts, 0)
}

/// Resolves a spec that must be loadable in-process (a checkpoint, not a server).
pub fn resolve(spec: Option<&str>, opts: &SourceOptions) -> Result<Checkpoint> {
    resolve_checkpoint(spec, opts).map(|(c, _)| c)
}

/// Like [`resolve_source`], refusing servers; returns the hub commit too.
pub fn resolve_checkpoint(
    spec: Option<&str>,
    opts: &SourceOptions,
) -> Result<(Checkpoint, Option<String>)> {
    let r = resolve_source(spec, opts)?;
    match r.source {
        ModelSource::Local(c) => Ok((*c, r.revision)),
        ModelSource::Endpoint(e) => Err(Error::model(
            format!("running:{}", e.url),
            "a running server cannot be used here; pass a checkpoint (hf:, trained: or a path)",
        )),
    }
}

fn local(c: Checkpoint) -> Resolved {
    Resolved { source: ModelSource::Local(Box::new(c)), revision: None }
}

/// What is known of a model before anything is loaded or downloaded (aliases followed to
/// aliases): cheap enough to check before a run is created, so an unknown alias or a path that
/// does not exist leaves no Failed run behind.
#[derive(Debug, Clone, Default)]
pub struct Preflight {
    /// What the aliases set (outer ones win).
    pub defaults: ModelDefaults,
    /// A `.gguf` file, whose weights `--dtype auto` keeps as stored on the CPU.
    pub gguf: bool,
}

/// Follows `spec`'s aliases once and checks that a model given as a path exists.
pub fn preflight(spec: Option<&str>, opts: &SourceOptions) -> Result<Preflight> {
    let Some(spec) = spec else { return Ok(Preflight::default()) };
    let (defaults, spec) = follow(spec, opts)?;
    let gguf = match &spec {
        ModelSpec::Trained(path) if !path.exists() => {
            return Err(Error::model(
                path.display(),
                format!(
                    "no such file or folder; expected an HF checkpoint folder, a LoRA adapter or a .gguf file{}",
                    crate::model::checkpoint::hub_hint(path)
                ),
            ))
        }
        ModelSpec::Trained(path) => path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")),
        _ => false,
    };
    Ok(Preflight { defaults, gguf })
}

/// The defaults `spec`'s aliases set (outer ones win) and the spec they lead to.
fn follow(spec: &str, opts: &SourceOptions) -> Result<(ModelDefaults, ModelSpec)> {
    let mut spec = ModelSpec::parse(spec)?;
    let mut out = ModelDefaults::default();
    let mut registry: Option<Registry> = None;
    for _ in 0..MAX_ALIAS_DEPTH {
        let ModelSpec::Platform(alias) = &spec else { return Ok((out, spec)) };
        let reg = match &registry {
            Some(r) => r,
            None => registry.insert(opts.registry()?),
        };
        let entry = reg.get(alias)?;
        out = out.over(entry.defaults.clone());
        spec = entry.spec()?;
    }
    Err(Error::model(spec.to_string(), "aliases refer to each other in a loop"))
}

/// Aliases may point at aliases; this bounds the chain so a cycle is an error, not a hang.
const MAX_ALIAS_DEPTH: usize = 8;

fn resolve_parsed(spec: &ModelSpec, opts: &SourceOptions, depth: usize) -> Result<Resolved> {
    match spec {
        ModelSpec::Embedded => Ok(local(crate::model::embedded::model_checkpoint())),
        ModelSpec::Hf { repo, revision } => {
            let snap = crate::hub::fetch(repo, revision.as_deref(), &opts.hub_options())?;
            if super::lora::is_adapter_dir(&snap.dir) {
                let mut resolved = resolve_adapter(&snap.dir, opts, depth)?;
                if let ModelSource::Local(ckpt) = &mut resolved.source {
                    ckpt.origin = ckpt.origin.replacen(
                        &snap.dir.display().to_string(),
                        &format!("hf:{repo}@{}", snap.commit),
                        1,
                    );
                }
                resolved.revision = Some(snap.commit);
                return Ok(resolved);
            }
            let mut ckpt = Checkpoint::from_dir(&snap.dir)?;
            ckpt.origin = format!("hf:{repo}@{}", snap.commit);
            Ok(Resolved { revision: Some(snap.commit), ..local(ckpt) })
        }
        ModelSpec::Trained(path) if super::lora::is_adapter_dir(path) => {
            resolve_adapter(path, opts, depth)
        }
        ModelSpec::Trained(path) => resolve_path(path).map(local),
        ModelSpec::Running(e) => {
            Ok(Resolved { source: ModelSource::Endpoint(e.clone()), revision: None })
        }
        ModelSpec::Platform(alias) => {
            if depth >= MAX_ALIAS_DEPTH {
                return Err(Error::model(
                    format!("platform:{alias}"),
                    "aliases refer to each other in a loop",
                ));
            }
            let registry = opts.registry()?;
            let entry = registry.get(alias)?;
            let mut resolved = resolve_parsed(&entry.spec()?, opts, depth + 1)?;
            if let ModelSource::Local(ckpt) = &mut resolved.source {
                if let Some(template) = &entry.defaults.chat_template {
                    ckpt.chat_template_jinja = Some(registry.read_chat_template(alias, template)?);
                }
            }
            Ok(resolved)
        }
    }
}

/// A PEFT LoRA adapter on its base model, itself any spec (an adapter's base may be reached
/// through aliases, so the same depth bound applies).
fn resolve_adapter(dir: &Path, opts: &SourceOptions, depth: usize) -> Result<Resolved> {
    let origin = dir.display().to_string();
    if depth >= MAX_ALIAS_DEPTH {
        return Err(Error::model(
            &origin,
            "LoRA adapters' base models refer to each other in a loop",
        ));
    }
    let adapter = super::lora::LoraAdapter::read(dir)?;
    let base = adapter.base_spec()?;
    let mut resolved = resolve_parsed(&base, opts, depth + 1).map_err(|e| {
        Error::model(
            &origin,
            format!(
                "LoRA adapter: cannot load its base model {base} (base_model_name_or_path): {e}"
            ),
        )
    })?;
    let ModelSource::Local(ckpt) = &mut resolved.source else {
        return Err(Error::model(
            &origin,
            format!(
                "LoRA adapter: its base {base} is a server; the adapter needs the base's weights"
            ),
        ));
    };
    if ckpt.lora.is_some() {
        return Err(Error::model(
            &origin,
            format!("LoRA adapter: its base {base} is itself a LoRA adapter; merge that one first (peft's merge_and_unload())"),
        ));
    }
    adapter.attach(ckpt)?;
    Ok(resolved)
}

/// The tokenizer of `--model` (None → the embedded model's), for commands that need nothing
/// else: a checkpoint folder's tokenizer.json, or a GGUF file's embedded vocabulary read from
/// its metadata (any architecture, vocabulary-only files included), a hub model's tokenizer.json
/// alone. Adapters resolve as for running the model; a server has no tokenizer here.
pub fn resolve_tokenizer(spec: Option<&str>, opts: &SourceOptions) -> Result<TextTokenizer> {
    let Some(spec) = spec else {
        let c = crate::model::embedded::model_checkpoint();
        return TextTokenizer::from_bytes(&c.tokenizer_json, &c.origin);
    };
    let mut spec = ModelSpec::parse(spec)?;
    let mut registry: Option<Registry> = None;
    for _ in 0..MAX_ALIAS_DEPTH {
        let ModelSpec::Platform(alias) = &spec else { break };
        let reg = match &registry {
            Some(r) => r,
            None => registry.insert(opts.registry()?),
        };
        spec = reg.get(alias)?.spec()?;
    }
    match &spec {
        ModelSpec::Platform(alias) => {
            Err(Error::model(format!("platform:{alias}"), "aliases refer to each other in a loop"))
        }
        ModelSpec::Trained(path)
            if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) =>
        {
            let tok = super::gguf::tokenizer(path)?;
            TextTokenizer::from_bytes(tok.json.to_string().as_bytes(), &path.display().to_string())
        }
        ModelSpec::Trained(path) if !super::lora::is_adapter_dir(path) => {
            let origin = path.display().to_string();
            if !path.is_dir() {
                return Err(Error::model(&origin, "no such directory or .gguf file"));
            }
            let file = path.join("tokenizer.json");
            if !file.is_file() {
                return Err(Error::model(&origin, "missing tokenizer.json"));
            }
            TextTokenizer::from_bytes(
                &std::fs::read(&file).map_err(|e| Error::io(&file, e))?,
                &origin,
            )
        }
        // tokenizer.json alone; a repo without one (a LoRA adapter) resolves in full below.
        ModelSpec::Hf { repo, revision } => {
            match crate::hub::fetch_model_file(
                repo,
                revision.as_deref(),
                "tokenizer.json",
                &opts.hub_options(),
            ) {
                Ok(f) => {
                    let bytes = std::fs::read(&f.path).map_err(|e| Error::io(&f.path, e))?;
                    TextTokenizer::from_bytes(&bytes, &format!("hf:{repo}@{}", f.commit))
                }
                Err(_) => local_tokenizer(&spec, opts),
            }
        }
        other => local_tokenizer(other, opts),
    }
}

/// The tokenizer of a spec resolved as for running the model.
fn local_tokenizer(spec: &ModelSpec, opts: &SourceOptions) -> Result<TextTokenizer> {
    match resolve_parsed(spec, opts, 0)?.source {
        ModelSource::Local(c) => TextTokenizer::from_bytes(&c.tokenizer_json, &c.origin),
        ModelSource::Endpoint(e) => Err(Error::model(
            format!("running:{}", e.url),
            "a running server's tokenizer cannot be loaded here; pass a checkpoint, a .gguf file, hf: or platform:",
        )),
    }
}

/// A local checkpoint directory, or a GGUF file when the path ends in `.gguf`.
fn resolve_path(path: &Path) -> Result<Checkpoint> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        return super::gguf::checkpoint(path);
    }
    Checkpoint::from_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(ModelSpec::parse("embedded").unwrap(), ModelSpec::Embedded);
        assert_eq!(
            ModelSpec::parse("hf:Org/Name@abc").unwrap(),
            ModelSpec::Hf { repo: "Org/Name".into(), revision: Some("abc".into()) }
        );
        assert_eq!(
            ModelSpec::parse("hf:gpt2").unwrap(),
            ModelSpec::Hf { repo: "gpt2".into(), revision: None }
        );
        assert_eq!(ModelSpec::parse("trained:ck/a").unwrap(), ModelSpec::Trained("ck/a".into()));
        assert_eq!(ModelSpec::parse("./ck").unwrap(), ModelSpec::Trained("./ck".into()));
        assert_eq!(
            ModelSpec::parse("platform:small").unwrap(),
            ModelSpec::Platform("small".into())
        );
        assert_eq!(
            ModelSpec::parse("running:http://h:8000/v1/#m-1").unwrap(),
            ModelSpec::Running(Endpoint {
                url: "http://h:8000/v1".into(),
                model: Some("m-1".into())
            })
        );
        for s in [
            "hf:",
            "hf:a/b/c",
            "hf:a b/c",
            "hf:a/b@",
            "platform:",
            "running:ftp://x",
            "running:http://",
            "",
        ] {
            assert!(ModelSpec::parse(s).is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn sources_come_from_the_variables() {
        let vars: ProcessVars = [
            ("HF_HUB_OFFLINE", "1"),
            ("BENCHGEN_MODELS", "/r/models.toml"),
            ("XDG_CONFIG_HOME", "/cfg"),
            ("HF_HOME", "/hf"),
            ("BENCHGEN_API_KEY", " "),
            ("OPENAI_API_KEY", " sk-other "),
            ("BENCHGEN_REQUEST_TIMEOUT", "0"),
        ]
        .into_iter()
        .collect();
        let o = SourceOptions::from_vars(&vars);
        assert!(o.offline && !o.progress);
        assert_eq!(o.models_file, Some(PathBuf::from("/r/models.toml")));
        assert_eq!(o.default_models_file, Some(PathBuf::from("/cfg/benchgen/models.toml")));
        assert_eq!(o.hub.cache_dir, PathBuf::from("/hf/hub"));
        assert_eq!(o.server.api_key.as_deref(), Some("sk-other"), "a blank key is skipped");
        assert_eq!(o.server.request_timeout.as_deref(), Some("0"));
        assert!(!format!("{:?}", o.server).contains("sk-other"), "the key is not shown");

        let both: ProcessVars =
            [("BENCHGEN_API_KEY", "sk-test"), ("OPENAI_API_KEY", "sk-other")].into_iter().collect();
        assert_eq!(ServerOptions::from_vars(&both).api_key.as_deref(), Some("sk-test"));

        let empty = SourceOptions::from_vars(&ProcessVars::default());
        assert!(!empty.offline);
        assert_eq!((empty.models_file, empty.default_models_file), (None, None));
        assert_eq!(empty.server, ServerOptions::default());
    }

    #[test]
    fn a_missing_default_registry_is_named_for_an_unknown_alias() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SourceOptions {
            default_models_file: Some(dir.path().join("models.toml")),
            ..SourceOptions::default()
        };
        let e = preflight(Some("platform:x"), &opts).unwrap_err().to_string();
        assert!(e.contains(&format!("create {}", dir.path().join("models.toml").display())), "{e}");
        let e = preflight(Some("platform:x"), &SourceOptions::default()).unwrap_err().to_string();
        assert!(e.contains("create models.toml or pass --models-file"), "{e}");
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "hf:Org/Name@abc",
            "hf:gpt2",
            "platform:small",
            "running:http://h:1#m",
            "running:http://h:1",
        ] {
            assert_eq!(ModelSpec::parse(s).unwrap().to_string(), s);
        }
    }
}
