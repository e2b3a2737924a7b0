//! What a finished run shows: score breakdown, detailed results (JSON and HTML), fine-tune set.

pub mod breakdown;
pub mod detailed;
pub mod finetune;
pub mod html;

pub use breakdown::ScoreBreakdown;
pub use detailed::{ChoiceRecord, DetailedRecord, DetailedResults, OptionRecord, VariantRecord};
