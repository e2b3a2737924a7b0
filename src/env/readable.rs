//! Whether a phase's data can be read before a run starts, and, when the hub is what stands in
//! the way, which phases can be run without it.

use super::{Environment, PhaseSpec, DATA_DIR_VAR};
use crate::error::{Error, Result};

impl Environment {
    /// Reads the files of `phase` and of the phase its few-shot examples come from (hub files
    /// are kept for the run, so nothing is downloaded twice). A phase that needs the hub when
    /// the hub cannot give it is refused naming the phases that run without it.
    pub fn check_readable(&self, phase: &PhaseSpec) -> Result<()> {
        let shots = self.fewshot_phase(phase)?.filter(|p| p.name != phase.name);
        self.phase_files(phase)
            .map_err(|e| self.needs_hub(phase, None, e).unwrap_or_else(|e| e))?;
        if let Some(s) = shots {
            self.phase_files(s).map_err(|e| {
                self.needs_hub(phase, Some(s), e)
                    .unwrap_or_else(|e| self.fewshot_failure(phase, s, e))
            })?;
        }
        Ok(())
    }

    /// `error`, met reading the few-shot examples `phase` takes from phase `source`.
    pub fn fewshot_failure(&self, phase: &PhaseSpec, source: &PhaseSpec, error: Error) -> Error {
        // This environment's errors already name it.
        let why = match error {
            Error::Environment { message, .. } => message,
            other => other.to_string(),
        };
        Error::env(
            &self.origin,
            format!(
                "phase \"{}\" takes its few-shot examples from phase \"{}\": {why}",
                phase.name, source.name
            ),
        )
    }

    /// When the failing phase (`phase`, or `shots`, the one its examples come from) reads a hub
    /// source and another phase needs no hub: the error that says so and names that phase.
    /// Otherwise `error`, unchanged, as the `Err`.
    fn needs_hub(
        &self,
        phase: &PhaseSpec,
        shots: Option<&PhaseSpec>,
        error: Error,
    ) -> std::result::Result<Error, Error> {
        let failing = shots.unwrap_or(phase);
        let Some(source) = failing.source.as_deref().filter(|_| !self.reads_locally(failing))
        else {
            return Err(error);
        };
        let local: Vec<String> = self
            .manifest
            .phases
            .iter()
            .filter(|p| p.name != phase.name && self.runs_locally(p))
            .map(|p| {
                let from =
                    if p.data.is_some() { "in the environment" } else { "from $BENCHGEN_DATA_DIR" };
                format!("--phase {} (data {from})", p.name)
            })
            .collect();
        if local.is_empty() {
            return Err(error);
        }
        let what = match shots {
            Some(s) => format!("its few-shot examples (phase \"{}\") come", s.name),
            None => "its items come".into(),
        };
        let instead = match (&failing.dataset, &self.sources.data_dir) {
            (Some(rel), Some(_)) => format!(" ({rel} is not in ${DATA_DIR_VAR})"),
            (Some(rel), None) => format!(" (or {rel} under ${DATA_DIR_VAR}, which is not set)"),
            _ => String::new(),
        };
        // The hub's own words (which file, which cache, what to do): the `dataset hf://…`
        // error the phase's message ends with.
        let text = error.to_string();
        let hub = text.find("dataset hf://").map_or(text.as_str(), |i| &text[i..]);
        Ok(Error::env(
            &self.origin,
            format!(
                "phase \"{}\" needs the hub: {what} from {source}{instead}. Offline, use {}. From the hub: {hub}",
                phase.name,
                local.join(" or ")
            ),
        ))
    }

    /// Whether a phase and its few-shot examples are all read without the hub.
    fn runs_locally(&self, phase: &PhaseSpec) -> bool {
        let shots = match self.fewshot_phase(phase) {
            Ok(s) => s,
            Err(_) => return false,
        };
        self.reads_locally(phase) && shots.is_none_or(|s| self.reads_locally(s))
    }

    /// A file in the environment, or the `dataset` under `$BENCHGEN_DATA_DIR`, is there.
    fn reads_locally(&self, phase: &PhaseSpec) -> bool {
        if phase.data.is_some() {
            return true;
        }
        let root = self.sources.data_dir.as_ref();
        phase.dataset.as_ref().zip(root).is_some_and(|(rel, root)| root.join(rel).exists())
    }
}
