//! Environments (benchmarks): a manifest, an Overview README and items per phase.

mod dataset;
pub mod embedded;
mod files;
pub mod manifest;
mod parquet;
mod readable;
mod remap;
pub mod scoring;
mod source;

use std::path::{Path, PathBuf};

pub use dataset::{check_items, parse_items, Item, Source};
pub use files::EnvFiles;
pub use manifest::{
    ChatMode, ChoicesField, FewshotSampler, FewshotSpec, FinetuneFormat, FinetuneInclude, Manifest,
    PhaseSpec,
};
pub use remap::Remap;
pub use source::HfSource;

/// The variable naming a folder laid out like shared/data, where `dataset = …` phases are read
/// (phases that also name a `source` fall back to the hub when it is unset or lacks the file).
pub const DATA_DIR_VAR: &str = "BENCHGEN_DATA_DIR";

use crate::error::{Error, Result};
use crate::hub::{HubConfig, HubOptions};
use crate::vars::ProcessVars;

/// Where environments and their data are found ([`EnvSources::from_vars`]); the default finds
/// only the shipped environments, and no data outside them but on the hub.
#[derive(Debug, Clone, Default)]
pub struct EnvSources {
    /// Directories searched for environments by name: `$BENCHGEN_ENVS` (a path list).
    pub search_dirs: Vec<PathBuf>,
    /// Where `dataset = …` phases are read: `$BENCHGEN_DATA_DIR` ([`DATA_DIR_VAR`]), as set.
    pub data_dir: Option<PathBuf>,
    /// The hub, for `source = "hf://datasets/…"` phases; `offline` is `HF_HUB_OFFLINE=1`'s
    /// (`Environment::offline` adds `--offline`'s).
    pub hub: HubOptions,
}

impl EnvSources {
    pub fn from_vars(vars: &ProcessVars) -> Self {
        Self {
            search_dirs: vars
                .get("BENCHGEN_ENVS")
                .map(|v| std::env::split_paths(v).collect())
                .unwrap_or_default(),
            data_dir: vars.get(DATA_DIR_VAR).map(PathBuf::from),
            hub: HubOptions {
                offline: crate::hub::offline_from_vars(vars),
                progress: false,
                config: HubConfig::from_vars(vars),
            },
        }
    }
}

/// What `Environment::check_phase` found in a phase's data.
pub struct PhaseCheck {
    /// The items that parsed.
    pub items: Vec<Item>,
    pub problems: Vec<Error>,
    /// Whether the phase's files were read (and its field mapping built), so that the items'
    /// prompts can be checked too (`prompt::check_renders`), even when no item parsed.
    pub data_read: bool,
}

pub struct Environment {
    pub manifest: Manifest,
    /// The manifest as read, for the content hash.
    manifest_text: String,
    /// The Overview tab: what the benchmark measures and how it is scored.
    pub readme: Option<String>,
    /// How the user named it (path, or "embedded:arithmetic").
    pub origin: String,
    files: EnvFiles,
    /// Hub sources already resolved, by reference: loading items and hashing them then read
    /// the same commit, with one request to the hub.
    fetched: std::sync::Mutex<std::collections::BTreeMap<String, source::Fetched>>,
    /// Hub sources from the cache only (`eval --offline`); `HF_HUB_OFFLINE=1` always is.
    offline: bool,
    /// Where its `dataset = …` and `source = …` phases are read.
    sources: EnvSources,
}

impl Environment {
    /// Opens an environment directory or `.zip`, whose phases read their data from `sources`.
    pub fn open(path: &Path, sources: &EnvSources) -> Result<Self> {
        let origin = path.display().to_string();
        let files = if path.is_dir() {
            EnvFiles::Dir(path.to_path_buf())
        } else if path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip"))
        {
            EnvFiles::open_archive(path)?
        } else if path.exists() {
            return Err(Error::env(&origin, "expected a directory or a .zip archive"));
        } else {
            return Err(Error::env(&origin, "no such file or directory"));
        };
        Self::from_files(origin, files, sources)
    }

    /// The environment compiled into the binary.
    pub fn embedded() -> Result<Self> {
        Self::from_files(
            crate::env::embedded::ENV_ORIGIN.to_string(),
            EnvFiles::Embedded(crate::env::embedded::ENV_FILES),
            &EnvSources::default(),
        )
    }

    /// `spec` as users write it: a directory or .zip; else the name of an environment that ships
    /// with benchgen; else a folder of that name in one of `sources.search_dirs`
    /// (`$BENCHGEN_ENVS`).
    pub fn resolve(spec: &str, sources: &EnvSources) -> Result<Self> {
        let path = Path::new(spec);
        if path.exists() {
            return Self::open(path, sources);
        }
        if let Some(env) = Self::by_name(spec, sources) {
            return env;
        }
        let known: Vec<String> = Self::available(sources).into_iter().map(|(n, _)| n).collect();
        Err(Error::env(
            spec,
            format!(
                "no such file, directory or environment name; known environments: {}",
                known.join(", ")
            ),
        ))
    }

    /// The environment named `name` (one of [`Self::available`]), never a path: a name that
    /// holds a separator or `..` names none. `None` when there is no such environment.
    pub fn by_name(name: &str, sources: &EnvSources) -> Option<Result<Self>> {
        if let Some((name, files)) =
            crate::env::embedded::SHIPPED_ENVS.iter().find(|(n, _)| *n == name)
        {
            let origin = format!("embedded:{name}");
            return Some(Self::from_files(origin, EnvFiles::Embedded(files), sources));
        }
        let plain = Path::new(name).components().count() == 1
            && matches!(Path::new(name).components().next(), Some(std::path::Component::Normal(_)));
        if !plain {
            return None;
        }
        sources
            .search_dirs
            .iter()
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.join("environment.toml").is_file())
            .map(|candidate| Self::open(&candidate, sources))
    }

    /// Every environment reachable by name: shipped ones, then `sources.search_dirs`'
    /// (`$BENCHGEN_ENVS`'s), with where each comes from.
    pub fn available(sources: &EnvSources) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = crate::env::embedded::SHIPPED_ENVS
            .iter()
            .map(|(n, _)| (n.to_string(), "shipped with benchgen".into()))
            .collect();
        for dir in &sources.search_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut found: Vec<(String, String)> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("environment.toml").is_file())
                .map(|e| {
                    (e.file_name().to_string_lossy().into_owned(), e.path().display().to_string())
                })
                .collect();
            found.sort();
            out.extend(found);
        }
        out
    }

    fn from_files(origin: String, files: EnvFiles, sources: &EnvSources) -> Result<Self> {
        if !files.exists("environment.toml") {
            return Err(Error::env(&origin, "missing environment.toml at the environment's root"));
        }
        let text = String::from_utf8(files.read(&origin, "environment.toml")?)
            .map_err(|_| Error::env(&origin, "environment.toml is not UTF-8"))?;
        let manifest = Manifest::parse(&text)
            .map_err(|m| Error::env(&origin, format!("environment.toml: {m}")))?;
        manifest
            .scoring
            .compile()
            .map_err(|e| Error::env(&origin, format!("environment.toml: {e}")))?;
        let readme = if files.exists("README.md") {
            Some(String::from_utf8_lossy(&files.read(&origin, "README.md")?).into_owned())
        } else {
            None
        };
        Ok(Self {
            manifest,
            manifest_text: text,
            readme,
            origin,
            files,
            fetched: Default::default(),
            offline: false,
            sources: sources.clone(),
        })
    }

    /// Reads hub sources from the HF cache only when `offline` (the `--offline` flag).
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// The named phase, or the first (default) one.
    pub fn phase(&self, name: Option<&str>) -> Result<&PhaseSpec> {
        let phases = &self.manifest.phases;
        match name {
            None => Ok(&phases[0]),
            Some(n) => phases.iter().find(|p| p.name == n).ok_or_else(|| {
                let known: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
                Error::env(
                    &self.origin,
                    format!(
                        "no phase \"{n}\"; phases: {} (environment.toml [[phases]])",
                        known.join(", ")
                    ),
                )
            }),
        }
    }

    pub fn load_items(&self, phase: &PhaseSpec) -> Result<Vec<Item>> {
        let PhaseCheck { items, mut problems, .. } = self.read_phase(phase);
        if problems.is_empty() {
            Ok(items)
        } else {
            Err(problems.swap_remove(0))
        }
    }

    /// sha256 over the manifest, every data file of `phase`, the data of the phase its few-shot
    /// examples come from when it has any, and the scoring program's files (it decides the
    /// score as much as the data does), as read now.
    pub fn content_sha256(&self, phase: &PhaseSpec) -> Result<String> {
        let files = self.phase_files(phase)?;
        let shots = match self.fewshot_phase(phase)? {
            Some(p) if p.name != phase.name => self.phase_files(p)?,
            _ => Vec::new(),
        };
        // Prefixed, so a few-shot or program file cannot stand in for a data file of the same name.
        let shot_names: Vec<String> =
            shots.iter().map(|f| format!("fewshot:{}", base_name(&f.name))).collect();
        let program: Vec<(String, Vec<u8>)> = self
            .program_files()?
            .into_iter()
            .map(|(n, b)| (format!("[scoring.program]/{n}"), b))
            .collect();
        let parts = std::iter::once(("environment.toml", self.manifest_text.as_bytes()))
            // Base names only: where the data directory lives must not change the hash.
            .chain(files.iter().map(|f| (base_name(&f.name), f.bytes.as_slice())))
            .chain(shot_names.iter().zip(&shots).map(|(n, f)| (n.as_str(), f.bytes.as_slice())))
            .chain(program.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())));
        Ok(crate::hash::sha256_parts(parts))
    }

    /// The scoring program's files (`[scoring.program] dir`), paths relative to that folder;
    /// empty when the environment has no program.
    pub fn program_files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let Some(program) = &self.manifest.scoring.program else { return Ok(Vec::new()) };
        let names = self.files.list_under(&self.origin, &program.dir)?;
        if names.is_empty() {
            return Err(Error::env(
                &self.origin,
                format!("[scoring.program] dir \"{}\" holds no files: the scoring program must ship inside the environment", program.dir),
            ));
        }
        let prefix = format!("{}/", program.dir.trim_end_matches('/'));
        names
            .into_iter()
            .map(|name| {
                let bytes = self.files.read(&self.origin, &name)?;
                Ok((name.strip_prefix(&prefix).unwrap_or(&name).to_string(), bytes))
            })
            .collect()
    }

    /// A phase's raw data files by base name, as a scoring program receives them.
    pub fn phase_data(&self, phase: &PhaseSpec) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .phase_files(phase)?
            .into_iter()
            .map(|f| (base_name(&f.name).to_string(), f.bytes))
            .collect())
    }

    /// The phase `phase`'s few-shot examples come from, when it gets any.
    pub fn fewshot_phase(&self, phase: &PhaseSpec) -> Result<Option<&PhaseSpec>> {
        let spec = self.manifest.fewshot.as_ref();
        match spec {
            Some(s) if phase.shots(spec) > 0 => self.phase(Some(&s.phase)).map(Some),
            _ => Ok(None),
        }
    }

    /// Every data problem of a phase (`env validate`): unreadable data, bad lines, missing
    /// fields, duplicate ids. Also the items that did parse. (Whether their prompts render is
    /// the prompt stage's to check: `prompt::check_renders`.)
    pub fn check_phase(&self, phase: &PhaseSpec) -> PhaseCheck {
        self.read_phase(phase)
    }

    fn read_phase(&self, phase: &PhaseSpec) -> PhaseCheck {
        let unread = |e| PhaseCheck { items: Vec::new(), problems: vec![e], data_read: false };
        let files = match self.phase_files(phase) {
            Ok(f) => f,
            Err(e) => return unread(e),
        };
        let (mut items, mut problems) = (Vec::new(), Vec::new());
        let remap = match (self.manifest.source_fields(phase), files.iter().any(|f| f.from_hub)) {
            (Some(table), true) => match remap::Remap::new(table) {
                Ok(r) => Some(r),
                Err(e) => {
                    return unread(Error::env(
                        &self.origin,
                        format!("phase \"{}\": {e}", phase.name),
                    ))
                }
            },
            _ => None,
        };
        for f in &files {
            // A sharded hub file is one table: ids (row indices) run on across its shards.
            let first_index = if f.from_hub { items.len() } else { 0 };
            let source = Source {
                origin: &f.origin,
                name: &f.name,
                part: f.part.as_deref(),
                first_index,
                remap: remap.as_ref().filter(|_| f.from_hub),
            };
            let (mut i, mut p) =
                check_items(&source, &f.bytes, &self.manifest.fields, phase.columns.as_deref());
            items.append(&mut i);
            problems.append(&mut p);
        }
        if files.len() > 1 {
            let mut seen = std::collections::HashSet::new();
            for it in &items {
                if !seen.insert(it.id.as_str()) {
                    problems.push(Error::env(
                        &self.origin,
                        format!(
                            "phase \"{}\": duplicate item id \"{}\" across files",
                            phase.name, it.id
                        ),
                    ));
                }
            }
        }
        PhaseCheck { items, problems, data_read: true }
    }

    /// The hub files read so far, each as its reference pinned to the commit it resolved to
    /// (for the run log: `content_sha256` covers their bytes, this says where they came from).
    pub fn fetched_sources(&self) -> Vec<String> {
        self.fetched
            .lock()
            .map(|m| m.values().map(|f| f.origin.clone()).collect())
            .unwrap_or_default()
    }

    /// The files of a phase: one file in the environment; or a file or folder under
    /// `$BENCHGEN_DATA_DIR` (`sources.data_dir`; a folder's files are read in name order) when
    /// the variable is set and has it, else the phase's hub `source`.
    fn phase_files(&self, phase: &PhaseSpec) -> Result<Vec<PhaseFile>> {
        if let Some(rel) = &phase.data {
            let bytes = self.files.read(&self.origin, rel)?;
            let origin = format!("{}/{rel}", self.origin.trim_end_matches('/'));
            return Ok(vec![PhaseFile {
                origin,
                name: rel.clone(),
                bytes,
                part: None,
                from_hub: false,
            }]);
        }
        let root = self.sources.data_dir.as_ref();
        match (&phase.dataset, &phase.source) {
            (Some(rel), None) => {
                let root = root.ok_or_else(|| {
                    Error::env(
                        &self.origin,
                        format!("phase \"{}\" reads {rel} from ${DATA_DIR_VAR}, which is not set; point it at a folder laid out like shared/data", phase.name),
                    )
                })?;
                self.data_dir_files(phase, &root.join(rel))
            }
            (Some(rel), Some(src)) => {
                let local = root.map(|r| r.join(rel)).filter(|p| p.exists());
                if let Some(path) = local {
                    return self.data_dir_files(phase, &path);
                }
                let why = match root {
                    None => format!("${DATA_DIR_VAR} is not set"),
                    Some(r) => format!("not in ${DATA_DIR_VAR} ({})", r.display()),
                };
                self.source_files(src).map_err(|e| {
                    Error::env(&self.origin, format!("phase \"{}\": neither dataset {rel} ({why}) nor source {src} can be read: {e}", phase.name))
                })
            }
            (None, Some(src)) => self
                .source_files(src)
                .map_err(|e| Error::env(&self.origin, format!("phase \"{}\": {e}", phase.name))),
            (None, None) => {
                Err(Error::env(&self.origin, format!("phase \"{}\" has no data", phase.name)))
            }
        }
    }

    fn data_dir_files(&self, phase: &PhaseSpec, path: &Path) -> Result<Vec<PhaseFile>> {
        let read = |p: &Path, part: Option<String>| -> Result<PhaseFile> {
            let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            Ok(PhaseFile {
                origin: p.display().to_string(),
                name: p.display().to_string(),
                bytes,
                part,
                from_hub: false,
            })
        };
        if !path.is_dir() {
            return Ok(vec![read(path, None)?]);
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(Error::env(
                &self.origin,
                format!("phase \"{}\": {} holds no files", phase.name, path.display()),
            ));
        }
        paths
            .iter()
            .map(|p| read(p, p.file_stem().map(|s| s.to_string_lossy().into_owned())))
            .collect()
    }

    /// The hub file `reference` names; a first shard (`…-00000-of-00003.parquet`) stands for all
    /// of them, read in order.
    fn source_files(&self, reference: &str) -> Result<Vec<PhaseFile>> {
        let src =
            HfSource::parse(reference).map_err(|e| Error::env(&self.origin, e.to_string()))?;
        src.shards().iter().map(|shard| self.source_file(shard)).collect()
    }

    fn source_file(&self, src: &HfSource) -> Result<PhaseFile> {
        let reference = src.to_string();
        let known = self.fetched.lock().ok().and_then(|m| m.get(&reference).cloned());
        let fetched = match known {
            Some(f) => f,
            None => {
                let hub = &self.sources.hub;
                let f =
                    src.fetch(&HubOptions { offline: self.offline || hub.offline, ..hub.clone() })?;
                if let Ok(mut m) = self.fetched.lock() {
                    m.insert(reference, f.clone());
                }
                f
            }
        };
        // The base name is what content_sha256 hashes: the same bytes from $BENCHGEN_DATA_DIR
        // under the same name give the same hash.
        let name = src.file_name().to_string();
        Ok(PhaseFile {
            bytes: fetched.read()?,
            origin: fetched.origin,
            name,
            part: None,
            from_hub: true,
        })
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

struct PhaseFile {
    origin: String,
    name: String,
    bytes: Vec<u8>,
    part: Option<String>,
    /// Read from the phase's `source`: its rows go through `source_fields`.
    from_hub: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"name = "from-data-dir"

[[phases]]
name = "test"
dataset = "bench/test.jsonl"

[fields]
input = "question"
target = "answer"

[prompt]
template = "Q: {{ question }}\nA:"
chat = false
"#;

    #[test]
    fn sources_come_from_the_variables() {
        let vars: ProcessVars = [
            ("BENCHGEN_ENVS", std::env::join_paths(["/a", "/b"]).unwrap()),
            ("BENCHGEN_DATA_DIR", "".into()),
            ("HF_HUB_OFFLINE", "1".into()),
        ]
        .into_iter()
        .collect();
        let s = EnvSources::from_vars(&vars);
        assert_eq!(s.search_dirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(s.data_dir, Some(PathBuf::new()), "set, even empty, is set");
        assert!(s.hub.offline);
        let none = EnvSources::from_vars(&ProcessVars::default());
        assert!(none.search_dirs.is_empty() && none.data_dir.is_none() && !none.hub.offline);
    }

    #[test]
    fn dataset_phases_read_the_data_dir_they_are_given() {
        let env_dir = tempfile::tempdir().unwrap();
        std::fs::write(env_dir.path().join("environment.toml"), MANIFEST).unwrap();
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(data.path().join("bench")).unwrap();
        std::fs::write(
            data.path().join("bench/test.jsonl"),
            "{\"question\": \"1+1\", \"answer\": \"2\"}\n",
        )
        .unwrap();

        let without = Environment::open(env_dir.path(), &EnvSources::default()).unwrap();
        let e = without.load_items(&without.manifest.phases[0]).unwrap_err().to_string();
        assert!(
            e.contains("reads bench/test.jsonl from $BENCHGEN_DATA_DIR, which is not set"),
            "{e}"
        );

        let sources =
            EnvSources { data_dir: Some(data.path().to_path_buf()), ..Default::default() };
        let with = Environment::open(env_dir.path(), &sources).unwrap();
        let items = with.load_items(&with.manifest.phases[0]).unwrap();
        assert_eq!(items.len(), 1);
    }

    #[test]
    fn names_are_searched_for_in_the_search_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mine")).unwrap();
        std::fs::write(dir.path().join("mine/environment.toml"), MANIFEST).unwrap();
        let sources =
            EnvSources { search_dirs: vec![dir.path().to_path_buf()], ..Default::default() };
        assert_eq!(Environment::resolve("mine", &sources).unwrap().manifest.name, "from-data-dir");
        assert!(Environment::available(&sources).iter().any(|(n, _)| n == "mine"));
        let e = Environment::resolve("mine", &EnvSources::default()).err().unwrap().to_string();
        assert!(e.contains("no such file, directory or environment name"), "{e}");
    }
}
