//! `detailed_results.html`: one self-contained page (inline style and script, no network), every
//! text escaped; search, filters, sort and pages over the items come from the inline script.

use serde::Serialize;

use super::breakdown::ScoreBreakdown;
use super::detailed::{DetailedRecord, DetailedResults};

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = include_str!("detailed_results.css");
const SCRIPT: &str = include_str!("detailed_results.js");

/// The page: the run, every reported metric (the Overall Score's marked) and the item count in
/// plain markup, readable without scripts; the items themselves only as JSON for the inline
/// script, which shows them a page at a time (a 15,000-item table would make the page slow).
pub fn render(results: &DetailedResults, breakdown: &ScoreBreakdown) -> String {
    let data = page_data(results);
    let mut h = String::with_capacity(data.len() + STYLE.len() + SCRIPT.len() + 4096);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str(&format!(
        "<title>Run {} — {}</title>\n<style>\n{STYLE}</style></head><body>\n",
        results.run_id,
        escape(&results.environment)
    ));
    h.push_str(&format!(
        "<h1>Detailed Results — run {}</h1>\n<p>Environment: <b>{}</b><br>Model: <b>{}</b></p>\n",
        results.run_id,
        escape(&results.environment),
        escape(&results.model)
    ));
    let primary = breakdown.primary_label();
    h.push_str("<table class=\"summary\">\n");
    for (label, value) in breakdown.rows() {
        let (class, note) = if label == primary {
            (" class=\"primary\"", " (the Overall Score)")
        } else {
            ("", "")
        };
        h.push_str(&format!(
            "<tr{class}><td>{}{note}</td><td>{}</td></tr>\n",
            escape(&label),
            escape(&value)
        ));
    }
    let wrong = breakdown.answered.saturating_sub(breakdown.correct);
    let unanswered = breakdown.total.saturating_sub(breakdown.answered);
    h.push_str(&format!(
        "<tr><td>Items</td><td>{} ({} correct, {wrong} wrong, {unanswered} unanswered)</td></tr>\n</table>\n",
        breakdown.total, breakdown.correct
    ));
    h.push_str(
        "<h2>Items</h2>\n<noscript><p>The item list needs JavaScript. Every item is in \
detailed_results.json beside this file.</p></noscript>\n<div id=\"app\"></div>\n",
    );
    h.push_str("<script type=\"application/json\" id=\"data\">");
    h.push_str(&data);
    h.push_str("</script>\n<script>\n");
    h.push_str(SCRIPT);
    h.push_str("</script>\n</body></html>\n");
    h
}

const EMPTY_DATA: &str = r#"{"multiple_choice":false,"variants":[],"metrics":[],"items":[]}"#;

/// What the script reads: the items, and the names its filters and sorts offer.
#[derive(Serialize)]
struct PageData<'a> {
    multiple_choice: bool,
    variants: Vec<&'a str>,
    metrics: Vec<&'a str>,
    items: &'a [DetailedRecord],
}

/// The items as JSON that can sit inside a `<script>` element: `<`, `>` and `&` are written as
/// JSON escapes, so no text can close the element (`</script>`) or open a comment in it.
fn page_data(results: &DetailedResults) -> String {
    let first = results.items.first();
    let names = |f: fn(&DetailedRecord) -> Vec<&str>| first.map(f).unwrap_or_default();
    let data = PageData {
        multiple_choice: results.items.iter().any(|r| r.choice.is_some()),
        variants: names(|r| r.variants.iter().map(|v| v.name.as_str()).collect()),
        metrics: names(|r| r.metrics.keys().map(String::as_str).collect()),
        items: &results.items,
    };
    // Serializing strings, bools and finite numbers cannot fail; an empty list is still a page.
    let json = serde_json::to_string(&data).unwrap_or_else(|_| EMPTY_DATA.into());
    let mut out = String::with_capacity(json.len() + json.len() / 50);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ChoiceRecord, OptionRecord, VariantRecord};
    use crate::score::{Primary, Summary};

    const HOSTILE: &str = "</script><script>alert(1)</script><!-- & \"q\" 'a' \u{2028}";

    fn summary(total: usize, correct: usize, norm: Option<usize>) -> Summary {
        Summary {
            total,
            correct,
            exact: correct,
            answered: total,
            correct_norm: norm,
            ..Summary::default()
        }
    }

    /// The JSON inside `<script type="application/json" id="data">`, as the browser hands it to
    /// the script (the element ends at the first `</script>`).
    fn embedded(html: &str) -> serde_json::Value {
        let open = "<script type=\"application/json\" id=\"data\">";
        let start = html.find(open).expect("data element") + open.len();
        let end = start + html[start..].find("</script>").expect("closed");
        serde_json::from_str(&html[start..end]).expect("the data is JSON")
    }

    fn hostile_results() -> DetailedResults {
        DetailedResults {
            run_id: 3,
            environment: "env<x>".into(),
            model: "m&m".into(),
            items: vec![DetailedRecord {
                id: "\"id\"".into(),
                prompt: HOSTILE.into(),
                target: "a<b".into(),
                prediction: "it's <b>".into(),
                extracted: Some("<i>".into()),
                answered: true,
                variants: vec![VariantRecord {
                    name: "flex</script>".into(),
                    extracted: None,
                    correct: true,
                }],
                ..DetailedRecord::default()
            }],
        }
    }

    #[test]
    fn hostile_text_is_escaped_in_markup_and_cannot_leave_the_data_element() {
        let results = hostile_results();
        let html =
            render(&results, &ScoreBreakdown::new(&summary(1, 0, None), Primary::Accuracy, 0.1));
        // Two script elements, each closed once: nothing in the data closes one early.
        assert_eq!(html.matches("<script").count(), 2, "{html}");
        assert_eq!(html.matches("</script>").count(), 2, "{html}");
        assert!(!html.contains("alert(1)</"), "{html}");
        assert!(!html.contains("<!-- &"), "{html}");
        assert!(html.contains("env&lt;x&gt;") && html.contains("m&amp;m"), "{html}");
        // The script gets every text back unchanged.
        let data = embedded(&html);
        assert_eq!(data["items"][0]["prompt"], HOSTILE);
        assert_eq!(data["items"][0]["id"], "\"id\"");
        assert_eq!(data["variants"][0], "flex</script>");
        // Rows are drawn by the script with textContent: the script never writes markup.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
    }

    #[test]
    fn every_reported_metric_is_shown_and_the_overall_scores_is_marked() {
        let results = DetailedResults {
            run_id: 1,
            environment: "arc-easy v1".into(),
            model: "m".into(),
            items: Vec::new(),
        };
        let mut s = summary(20, 4, Some(1));
        s.extra = vec![("f1".into(), 10.0)];
        s.variants = vec![("flexible-extract".into(), 6)];
        let b = ScoreBreakdown::new(&s, Primary::AccNorm, 2.0);
        let html = render(&results, &b);
        for row in [
            "<tr class=\"primary\"><td>Acc Norm (the Overall Score)</td><td>5.00%</td></tr>",
            "<tr><td>Overall Score</td><td>5.00</td></tr>",
            "<tr><td>Accuracy</td><td>20.00%</td></tr>",
            "<tr><td>F1</td><td>50.00%</td></tr>",
            "<tr><td>flexible-extract</td><td>30.00%</td></tr>",
            "<tr><td>Exact Match</td><td>20.00%</td></tr>",
            "<tr><td>Answer Rate</td><td>100.00%</td></tr>",
            "<tr><td>Items</td><td>20 (4 correct, 16 wrong, 0 unanswered)</td></tr>",
        ] {
            assert!(html.contains(row), "{row} missing from:\n{html}");
        }
        assert!(html.contains("<noscript>"), "{html}");
    }

    #[test]
    fn multiple_choice_options_carry_their_logliks_and_both_picks() {
        let option = |label: &str, text: &str, lp: f64, chars: f64| OptionRecord {
            label: label.into(),
            text: text.into(),
            loglik: Some(lp),
            loglik_norm: Some(lp / chars),
        };
        let results = DetailedResults {
            run_id: 2,
            environment: "arc-easy v1".into(),
            model: "m".into(),
            items: vec![DetailedRecord {
                id: "0".into(),
                prediction: "a long answer".into(),
                extracted: Some("B".into()),
                answered: true,
                choice: Some(ChoiceRecord {
                    options: vec![
                        option("A", "short", -6.0, 5.0),
                        option("B", "a long answer", -5.0, 13.0),
                    ],
                    target: 0,
                    acc_pick: Some(1),
                    acc_norm_pick: Some(1),
                }),
                ..DetailedRecord::default()
            }],
        };
        let html =
            render(&results, &ScoreBreakdown::new(&summary(1, 0, Some(0)), Primary::AccNorm, 0.0));
        let data = embedded(&html);
        assert_eq!(data["multiple_choice"], true);
        let choice = &data["items"][0]["choice"];
        assert_eq!(choice["options"][0]["loglik"], -6.0);
        assert_eq!(choice["options"][1]["loglik_norm"], -5.0 / 13.0);
        assert_eq!(
            (choice["acc_pick"].as_u64(), choice["acc_norm_pick"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(choice["target"], 0);
        // The script shows them: the columns and the pick marks are in it.
        for shown in ["log-likelihood", "per char", "acc pick", "acc_norm pick", "loglik_norm"] {
            assert!(SCRIPT.contains(shown), "{shown}");
        }
    }

    #[test]
    fn a_mmlu_sized_page_is_lean_and_quick() {
        let items: Vec<DetailedRecord> = (0..15_000)
            .map(|i| DetailedRecord {
                id: i.to_string(),
                prompt: format!("Question {i}: which of these is right?\nAnswer:"),
                target: "B".into(),
                prediction: "B".into(),
                extracted: Some("B".into()),
                correct: i % 3 == 0,
                answered: true,
                ..DetailedRecord::default()
            })
            .collect();
        let results =
            DetailedResults { run_id: 9, environment: "mmlu v1".into(), model: "m".into(), items };
        let data_len = page_data(&results).len();
        let started = std::time::Instant::now();
        let html = render(
            &results,
            &ScoreBreakdown::new(&summary(15_000, 5_000, None), Primary::Accuracy, 0.0),
        );
        let took = started.elapsed();
        // Generous for a loaded debug build; a release build takes a few milliseconds.
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
        // The markup around the data is small and fixed: no row per item.
        assert!(html.len() < data_len + 30_000, "{} bytes for {data_len} of data", html.len());
        assert!(html.matches("<tr").count() < 20);
        assert_eq!(embedded(&html)["items"].as_array().map(Vec::len), Some(15_000));
    }
}
