//! The generated fine-tune dataset, as the environment's `[finetune]` section asks.

use serde_json::{json, Value};

use super::detailed::DetailedRecord;
use crate::env::{FinetuneFormat, FinetuneInclude};

/// One JSON object per selected item. `reference` pairs each prompt with the target, the
/// other modes with the model's own response.
pub fn finetune_lines(
    records: &[DetailedRecord],
    include: FinetuneInclude,
    format: FinetuneFormat,
) -> Vec<Value> {
    records
        .iter()
        .filter(|r| include != FinetuneInclude::Correct || r.correct)
        .map(|r| {
            let response = match include {
                FinetuneInclude::Reference => r.target.as_str(),
                _ => r.prediction.as_str(),
            };
            match format {
                FinetuneFormat::Chat => json!({"messages": [
                    {"role": "user", "content": r.prompt},
                    {"role": "assistant", "content": response},
                ]}),
                FinetuneFormat::PromptCompletion => {
                    json!({"prompt": r.prompt, "completion": response})
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, correct: bool) -> DetailedRecord {
        DetailedRecord {
            id: id.into(),
            prompt: format!("p{id}"),
            target: format!("t{id}"),
            prediction: format!("r{id}"),
            extracted: None,
            correct,
            exact: false,
            answered: true,
            ..DetailedRecord::default()
        }
    }

    #[test]
    fn selects_and_formats() {
        let recs = [rec("1", true), rec("2", false)];
        let lines = finetune_lines(&recs, FinetuneInclude::Correct, FinetuneFormat::Chat);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["messages"][1]["content"], "r1");
        let lines =
            finetune_lines(&recs, FinetuneInclude::Reference, FinetuneFormat::PromptCompletion);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], json!({"prompt": "p2", "completion": "t2"}));
    }
}
