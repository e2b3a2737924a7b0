//! How an item is generated: the settings an environment declares, the models registry
//! overrides, a run records and the engine obeys. Below all of them, so each can name them.

use serde::{Deserialize, Serialize};

/// How one item is decoded. `temperature == 0` is greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenParams {
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
}

/// What to do with a prompt longer than the model's context (`--truncate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncate {
    /// Refuse the item, naming it (the default).
    #[default]
    Error,
    /// Keep the prompt's last tokens that fit (context − max_new_tokens, at least one new
    /// token), after the BOS token when the prompt starts with one.
    Left,
}

impl Truncate {
    /// Every `--truncate` value, as [`Truncate::name`] spells it.
    pub const NAMES: [&str; 2] = ["left", "error"];

    pub fn name(self) -> &'static str {
        match self {
            Truncate::Error => "error",
            Truncate::Left => "left",
        }
    }

    pub fn is_error(&self) -> bool {
        *self == Truncate::Error
    }

    pub fn parse(s: &str) -> Result<Self, UnknownTruncate> {
        match s {
            "error" => Ok(Truncate::Error),
            "left" => Ok(Truncate::Left),
            other => Err(UnknownTruncate { value: other.to_string() }),
        }
    }
}

/// A `--truncate` value other than [`Truncate::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--truncate {value}: expected left or error")]
pub struct UnknownTruncate {
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_parses_its_names_and_refuses_others() {
        for name in Truncate::NAMES {
            assert_eq!(Truncate::parse(name).map(Truncate::name), Ok(name));
        }
        let e = Truncate::parse("right").unwrap_err();
        assert_eq!(e, UnknownTruncate { value: "right".into() });
        assert_eq!(e.to_string(), "--truncate right: expected left or error");
    }
}
