//! The process environment variables benchgen reads, as a plain value. The binary reads them
//! once at start ([`ProcessVars::from_process`], the one place the library calls
//! `std::env::var*`) and hands what each part needs down as typed options
//! (`hub::HubConfig::from_vars`, `model::spec::SourceOptions::from_vars`,
//! `env::EnvSources::from_vars`, ...); the library itself never looks at the process
//! environment. Tests build one value by value ([`ProcessVars::from_iter`]) instead of setting
//! variables on their own process.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Every variable benchgen reads, and the only ones [`ProcessVars::get`] may be asked for.
pub const NAMES: &[&str] = &[
    // The HuggingFace hub, as huggingface_hub reads them (`hub::HubConfig`).
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "HF_ENDPOINT",
    "XDG_CACHE_HOME",
    // The models registry and trained checkpoints (`model::spec`, `model::registry`,
    // `model::listing`).
    "BENCHGEN_MODELS",
    "XDG_CONFIG_HOME",
    "APPDATA",
    "HOME",
    "BENCHGEN_TRAINED_DIR",
    // Running servers (`model::spec::ServerOptions`).
    "BENCHGEN_API_KEY",
    "OPENAI_API_KEY",
    "BENCHGEN_REQUEST_TIMEOUT",
    // Environments and their data (`env::EnvSources`).
    "BENCHGEN_ENVS",
    "BENCHGEN_DATA_DIR",
    // The CPU kernels' instruction set (`kernels::isa::select_named`).
    "BENCHGEN_ISA",
    // `--shard auto`: a Slurm job array's task, a Kubernetes Indexed Job's index
    // (`settings::ShardChoice::resolve`).
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
    "BENCHGEN_SHARDS",
];

/// The values of [`NAMES`] that are set, by name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProcessVars {
    values: BTreeMap<String, OsString>,
}

impl ProcessVars {
    /// The variables of [`NAMES`] as this process has them now.
    pub fn from_process() -> Self {
        NAMES.iter().filter_map(|&name| std::env::var_os(name).map(|v| (name, v))).collect()
    }

    /// The value as set, empty or not; `None` when unset (as `std::env::var_os`).
    ///
    /// # Panics
    /// When `name` is not in [`NAMES`]: every variable read is listed there, so that
    /// [`ProcessVars::from_process`] reads it.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        assert!(NAMES.contains(&name), "{name} is read but not listed in vars::NAMES");
        self.values.get(name).map(OsString::as_os_str)
    }

    /// The value when set and Unicode (as `std::env::var(name).ok()`).
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(OsStr::to_str)
    }

    /// The value as a path, when set to something non-empty.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.get(name).filter(|v| !v.is_empty()).map(PathBuf::from)
    }
}

/// Values by name, for tests: `ProcessVars::from_iter([("HF_HOME", "/tmp/hf")])`.
impl<K: Into<String>, V: Into<OsString>> FromIterator<(K, V)> for ProcessVars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self { values: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }
}

/// Names only: some values are secrets (tokens, API keys).
impl std::fmt::Debug for ProcessVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_set() {
        let vars = ProcessVars::from_iter([("HF_HOME", "/h"), ("BENCHGEN_DATA_DIR", "")]);
        assert_eq!(vars.get("HF_HOME"), Some(OsStr::new("/h")));
        assert_eq!(vars.get_str("HF_HOME"), Some("/h"));
        assert_eq!(vars.path("HF_HOME"), Some(PathBuf::from("/h")));
        // Set but empty: there for `get`, not a path.
        assert_eq!(vars.get("BENCHGEN_DATA_DIR"), Some(OsStr::new("")));
        assert_eq!(vars.path("BENCHGEN_DATA_DIR"), None);
        assert_eq!(vars.get("HOME"), None);
        assert_eq!(format!("{vars:?}"), r#"{"BENCHGEN_DATA_DIR", "HF_HOME"}"#);
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_unicode_is_no_str() {
        use std::os::unix::ffi::OsStringExt;
        let vars = ProcessVars::from_iter([("HF_TOKEN", OsString::from_vec(vec![0xff]))]);
        assert!(vars.get("HF_TOKEN").is_some());
        assert_eq!(vars.get_str("HF_TOKEN"), None);
    }

    #[test]
    #[should_panic(expected = "not listed")]
    fn an_unlisted_name_is_a_bug() {
        ProcessVars::default().get("BENCHGEN_SOMETHING_ELSE");
    }
}
