//! Detailed Results: one record per item, as JSON.
//!
//! `choice` and `metrics` were added after the design doc's fields (prompt, target, prediction,
//! extracted answer, correct, exact, answered); they are left out where empty, so files of
//! generated answers read as before and older files read back with them empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetailedRecord {
    pub id: String,
    pub prompt: String,
    /// The raw target field of the item.
    pub target: String,
    pub prediction: String,
    /// The normalised answer extracted from the prediction; null when unanswered.
    pub extracted: Option<String>,
    pub correct: bool,
    pub exact: bool,
    pub answered: bool,
    /// Each `[[scoring.variants]]` chain's verdict, in manifest order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantRecord>,
    /// Multiple choice by log-likelihood: every option as scored, and the `acc` and `acc_norm`
    /// picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<ChoiceRecord>,
    /// Each `[scoring] report` metric's credit on this item (e.g. `f1`), in [0, 1], by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// One scoring variant's verdict on an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantRecord {
    pub name: String,
    pub extracted: Option<String>,
    pub correct: bool,
}

/// A multiple-choice item as the log-likelihoods decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceRecord {
    /// In the item's order.
    pub options: Vec<OptionRecord>,
    /// Index of the right option.
    pub target: usize,
    /// Index of the option with the highest log-likelihood (`acc`); null without a prediction.
    pub acc_pick: Option<usize>,
    /// Index of the option with the highest log-likelihood per character (`acc_norm`).
    pub acc_norm_pick: Option<usize>,
}

/// One option of a multiple-choice item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionRecord {
    pub label: String,
    pub text: String,
    /// Log-likelihood of the option as the prompt's continuation; null without a prediction.
    pub loglik: Option<f64>,
    /// `loglik` per character of the option, the value `acc_norm` compares.
    pub loglik_norm: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetailedResults {
    pub run_id: u64,
    pub environment: String,
    pub model: String,
    pub items: Vec<DetailedRecord>,
}
