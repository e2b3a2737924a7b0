//! Detailed Results: one record per item, as JSON.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// One scoring variant's verdict on an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantRecord {
    pub name: String,
    pub extracted: Option<String>,
    pub correct: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetailedResults {
    pub run_id: u64,
    pub environment: String,
    pub model: String,
    pub items: Vec<DetailedRecord>,
}
