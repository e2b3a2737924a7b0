//! An evaluation's settings: everything that decides what a run produces. The command line
//! fills them (over [`Settings::default`], the one place their defaults are written, which its
//! help text shows), `run.json` stores them resolved, and `--resume` and `verify` read them back
//! and compare them as a whole.

use std::path::Path;

use serde::{Deserialize, Serialize};

mod shard;
pub use shard::{Shard, ShardChoice, ShardError};

use crate::device::{DeviceSpec, DtypeSpec};
use crate::generation::{GenParams, Truncate};
use crate::model::KvDtype;

/// The model `--model` names when it is left out.
pub const EMBEDDED_MODEL: &str = "embedded";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `--env`: a directory, a .zip or a shipped environment's name; `None` → the embedded one.
    /// Recorded absolute when it is a path, so a run resumes from any working directory.
    pub env: Option<String>,
    /// `--model`; `None` → the embedded model. Recorded without `trained:` and absolute when it
    /// is a path.
    pub model: Option<String>,
    /// `--phase`; `None` → the environment's first phase. Recorded resolved.
    #[serde(default)]
    pub phase: Option<String>,
    pub device: DeviceSpec,
    /// `--dtype`; recorded resolved (`auto` → what it chose), which resolves to itself again.
    pub dtype: DtypeSpec,
    /// Sequences decoded together. The one setting a resumed run may change: an item's output
    /// does not depend on its batch-mates.
    pub batch_size: usize,
    /// Evaluate only the first N items.
    pub limit: Option<usize>,
    /// Seed for sampled decoding: each item's stream depends on this and its id only.
    pub seed: u64,
    /// `--truncate`; absent means `error` (and in runs from before the option existed).
    #[serde(default, skip_serializing_if = "Truncate::is_error")]
    pub truncate: Truncate,
    /// `--kv-dtype`; absent means f32 (and in runs from before the option existed).
    #[serde(default, skip_serializing_if = "KvDtype::is_f32")]
    pub kv_dtype: KvDtype,
    /// `--kv-budget`: most bytes the running sequences' KV caches may reserve (`None`: no
    /// bound). Like the batch size it decides only what runs together, so a resumed run may
    /// change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_budget: Option<u64>,
    /// `--shard K/N`: only the phase's items i with i mod N = K (after `--limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// `--group`: the evaluation a shard belongs to, which `merge` finds its shards by. Recorded
    /// for sharded runs only; derived from the other settings when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// How each item is decoded: the environment's declaration with the model alias' overrides.
    /// Not a flag; recorded when the run is planned (`None` until then).
    #[serde(default)]
    pub generation: Option<GenParams>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            env: None,
            model: None,
            phase: None,
            device: DeviceSpec::Cpu,
            dtype: DtypeSpec::Auto,
            batch_size: 16,
            limit: None,
            seed: 0,
            truncate: Truncate::Error,
            kv_dtype: KvDtype::F32,
            kv_budget: None,
            shard: None,
            group: None,
            generation: None,
        }
    }
}

/// A setting whose value differs between two [`Settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The field's name, which is its flag's name with `_` for `-`.
    pub field: String,
    pub ours: String,
    pub theirs: String,
}

impl Difference {
    /// The command-line flag that sets the field.
    pub fn flag(&self) -> String {
        format!("--{}", self.field.replace('_', "-"))
    }
}

impl Settings {
    /// The settings that decide only how fast a run goes and how much memory it takes, never
    /// what it produces: a resumed run or a shard may differ in them.
    pub const THROUGHPUT_ONLY: [&'static str; 2] = ["batch_size", "kv_budget"];

    /// The defaults as the command line spells them, by field name (fields without a default
    /// value, such as `--limit`, are left out): what `--help` shows.
    pub fn shown_defaults() -> Vec<(String, String)> {
        let value = Settings::default().explicit();
        let fields = value.as_object().expect("settings serialize as an object");
        fields.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), shown(k, v))).collect()
    }

    /// The settings in the one spelling a run records: the embedded model as `None`,
    /// `trained:` dropped, paths that exist made absolute.
    pub fn normalized(mut self) -> Self {
        self.env = self.env.as_deref().map(absolute_if_exists);
        self.model = self.model.as_deref().and_then(normalize_model);
        self
    }

    /// The first field (by name) whose value differs from `other`'s, leaving out `except`.
    /// Compares every field there is, so a setting added later is compared too.
    pub fn first_difference(&self, other: &Settings, except: &[&str]) -> Option<Difference> {
        let (ours, theirs) = (self.explicit(), other.explicit());
        let (ours, theirs) = (ours.as_object()?, theirs.as_object()?);
        ours.iter()
            .filter(|(field, _)| !except.contains(&field.as_str()))
            .find(|(field, value)| theirs.get(*field) != Some(value))
            .map(|(field, value)| Difference {
                field: field.clone(),
                ours: shown(field, value),
                theirs: shown(field, theirs.get(field).unwrap_or(&serde_json::Value::Null)),
            })
    }

    /// Every field written out, those run.json leaves out at their defaults included.
    fn explicit(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("settings serialize");
        if let Some(map) = value.as_object_mut() {
            map.insert("truncate".into(), self.truncate.name().into());
            map.insert("kv_dtype".into(), self.kv_dtype.name().into());
            map.insert("shard".into(), self.shard.map(|s| s.to_string()).into());
            map.insert("group".into(), self.group.clone().into());
        }
        value
    }

    /// The `--group` a sharded run gets when none is given: the environment's name, the phase
    /// and a hash of every setting but the shard and the [`Self::THROUGHPUT_ONLY`] ones, so the
    /// shards of one evaluation agree on it wherever they run. Call on resolved settings.
    pub fn default_group(&self, env_name: &str) -> String {
        // Those settings at fixed values (batch size 0 as before the KV budget existed, which an
        // unset budget leaves out of the text), so groups of earlier runs keep their names.
        let same =
            Settings { shard: None, group: None, batch_size: 0, kv_budget: None, ..self.clone() };
        let text = serde_json::to_string(&same.explicit()).expect("settings serialize");
        let hash = crate::hash::sha256_hex(text.as_bytes());
        let phase = self.phase.as_deref().unwrap_or_default();
        format!("{env_name}-{phase}-{}", &hash[..12])
    }
}

/// A field's value as a person reads it; `null` says what leaving the flag out means.
fn shown(field: &str, value: &serde_json::Value) -> String {
    match (field, value) {
        ("env", serde_json::Value::Null) => "the embedded environment".into(),
        ("model", serde_json::Value::Null) => EMBEDDED_MODEL.into(),
        ("limit", serde_json::Value::Null) => "no limit".into(),
        ("phase", serde_json::Value::Null) => "the first phase".into(),
        ("shard", serde_json::Value::Null) => "no shard (every item)".into(),
        ("group", serde_json::Value::Null) => "none".into(),
        (_, serde_json::Value::String(s)) => s.clone(),
        (_, v) => v.to_string(),
    }
}

/// A path that exists, made absolute (the run may be resumed from another directory); names
/// of shipped environments and other specs as given.
fn absolute_if_exists(spec: &str) -> String {
    let path = Path::new(spec);
    match path.exists().then(|| std::fs::canonicalize(path)) {
        Some(Ok(abs)) => abs.to_string_lossy().into_owned(),
        _ => spec.to_string(),
    }
}

/// `--model` in one spelling: `None` for the embedded model, `trained:` dropped, paths absolute.
fn normalize_model(spec: &str) -> Option<String> {
    if spec == EMBEDDED_MODEL || spec == crate::model::embedded::MODEL_ORIGIN {
        return None;
    }
    Some(absolute_if_exists(spec.strip_prefix("trained:").unwrap_or(spec)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_group_ignores_the_throughput_only_settings() {
        let run = Settings { phase: Some("test".into()), ..Settings::default() };
        let group = run.default_group("env");
        let faster = Settings { batch_size: 64, kv_budget: Some(600_000_000), ..run.clone() };
        assert_eq!(faster.default_group("env"), group);
        assert_eq!(run.first_difference(&faster, &Settings::THROUGHPUT_ONLY), None);
        let other = Settings { seed: 1, ..run.clone() };
        assert_ne!(other.default_group("env"), group);
    }

    #[test]
    fn the_first_differing_field_is_named_with_its_flag() {
        let run = Settings { seed: 7, limit: Some(5), ..Settings::default() };
        let again = Settings { batch_size: 3, ..run.clone() };
        assert_eq!(run.first_difference(&again, &["batch_size"]), None);
        let d = run.first_difference(&again, &[]).unwrap();
        assert_eq!(
            (d.flag().as_str(), d.ours.as_str(), d.theirs.as_str()),
            ("--batch-size", "16", "3")
        );

        let other = Settings { limit: None, kv_dtype: KvDtype::Bf16, ..run.clone() };
        let d = run.first_difference(&other, &["kv_dtype"]).unwrap();
        assert_eq!(
            (d.flag().as_str(), d.ours.as_str(), d.theirs.as_str()),
            ("--limit", "5", "no limit")
        );
        let d = run.first_difference(&other, &[]).unwrap();
        assert_eq!(
            (d.flag().as_str(), d.ours.as_str(), d.theirs.as_str()),
            ("--kv-dtype", "f32", "bf16")
        );
        let d = run
            .first_difference(&Settings { model: Some("/m".into()), ..run.clone() }, &[])
            .unwrap();
        assert_eq!(
            (d.flag().as_str(), d.ours.as_str(), d.theirs.as_str()),
            ("--model", "embedded", "/m")
        );
    }

    #[test]
    fn records_round_trip_and_leave_defaults_out() {
        let s = Settings {
            env: Some("/envs/x".into()),
            device: DeviceSpec::Cuda(1),
            dtype: DtypeSpec::StoredExact,
            truncate: Truncate::Left,
            ..Settings::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            text.contains(r#""device":"cuda:1""#) && text.contains(r#""dtype":"stored-exact""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
        let text = serde_json::to_string(&Settings::default()).unwrap();
        assert!(!text.contains("truncate") && !text.contains("kv_dtype"), "{text}");
    }

    #[test]
    fn every_default_with_a_value_is_shown() {
        let shown = Settings::shown_defaults();
        let get = |k: &str| shown.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        assert_eq!(get("device"), Some("cpu"));
        assert_eq!(get("dtype"), Some("auto"));
        assert_eq!(get("batch_size"), Some("16"));
        assert_eq!(get("seed"), Some("0"));
        assert_eq!(get("truncate"), Some("error"));
        assert_eq!(get("kv_dtype"), Some("f32"));
        assert_eq!(get("limit"), None);
    }

    #[test]
    fn models_are_recorded_in_one_spelling() {
        let norm =
            |m: &str| Settings { model: Some(m.into()), ..Settings::default() }.normalized().model;
        assert_eq!(norm("embedded"), None);
        assert_eq!(norm("hf:org/name"), Some("hf:org/name".into()));
        assert_eq!(norm("trained:/no/such/dir"), Some("/no/such/dir".into()));
        let dir = tempfile::tempdir().unwrap();
        let abs = std::fs::canonicalize(dir.path()).unwrap();
        let relative = dir.path().to_str().unwrap();
        assert_eq!(norm(relative), Some(abs.to_string_lossy().into_owned()));
    }
}
