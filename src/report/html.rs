//! `detailed_results.html`: one self-contained page (no scripts, no network), every text escaped.

use super::breakdown::ScoreBreakdown;
use super::detailed::DetailedResults;

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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;\
vertical-align:top;text-align:left}pre{white-space:pre-wrap;margin:0;font-size:90%}\
tr.ok td.verdict{background:#dfd}tr.bad td.verdict{background:#fdd}\
.summary td{border:none;padding:2px 12px 2px 0}";

pub fn render(results: &DetailedResults, breakdown: &ScoreBreakdown) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str(&format!(
        "<title>Run {} — {}</title><style>{STYLE}</style></head><body>\n",
        results.run_id,
        escape(&results.environment)
    ));
    h.push_str(&format!(
        "<h1>Detailed Results — run {}</h1>\n<p>Environment: <b>{}</b><br>Model: <b>{}</b></p>\n",
        results.run_id,
        escape(&results.environment),
        escape(&results.model)
    ));
    h.push_str("<table class=\"summary\">");
    for (k, v) in [
        ("Overall Score", format!("{:.2}", breakdown.overall_score)),
        (
            "Accuracy",
            format!("{:.2}% ({}/{})", breakdown.accuracy, breakdown.correct, breakdown.total),
        ),
        ("Exact Match", format!("{:.2}%", breakdown.exact_match)),
        ("Answer Rate", format!("{:.2}%", breakdown.answer_rate)),
        ("Duration", format!("{:.2}s", breakdown.duration_s)),
    ] {
        h.push_str(&format!("<tr><td>{k}</td><td><b>{}</b></td></tr>", escape(&v)));
    }
    // `[scoring] report` metrics (e.g. f1), in percent.
    for (k, v) in &breakdown.metrics {
        h.push_str(&format!(
            "<tr><td>{}</td><td><b>{v:.2}%</b></td></tr>",
            escape(&k.to_uppercase())
        ));
    }
    for (k, v) in &breakdown.variants {
        h.push_str(&format!("<tr><td>{}</td><td><b>{v:.2}%</b></td></tr>", escape(k)));
    }
    h.push_str(
        "</table>\n<h2>Items</h2>\n<table>\n<tr><th>id</th><th>prompt</th><th>target</th>\
<th>prediction</th><th>extracted</th><th>correct</th><th>exact</th><th>answered</th></tr>\n",
    );
    for r in &results.items {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        h.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td><pre>{}</pre></td><td><pre>{}</pre></td><td><pre>{}</pre></td>\
<td><pre>{}</pre></td><td class=\"verdict\">{}{}</td><td>{}</td><td>{}</td></tr>\n",
            if r.correct { "ok" } else { "bad" },
            escape(&r.id),
            escape(&r.prompt),
            escape(&r.target),
            escape(&r.prediction),
            r.extracted.as_deref().map(escape).unwrap_or_else(|| "<i>none</i>".into()),
            yes_no(r.correct),
            variant_verdicts(r),
            yes_no(r.exact),
            yes_no(r.answered),
        ));
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

/// Each scoring variant's verdict and answer, under the main one.
fn variant_verdicts(r: &super::detailed::DetailedRecord) -> String {
    r.variants
        .iter()
        .map(|v| {
            let answer = v.extracted.as_deref().map(escape).unwrap_or_else(|| "<i>none</i>".into());
            format!("<br>{}: {} ({answer})", escape(&v.name), if v.correct { "yes" } else { "no" })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::detailed::DetailedRecord;
    use crate::score::{Primary, Summary};

    #[test]
    fn every_field_is_escaped() {
        let results = DetailedResults {
            run_id: 3,
            environment: "env<x>".into(),
            model: "m&m".into(),
            items: vec![DetailedRecord {
                id: "\"id\"".into(),
                prompt: "<script>alert(1)</script>".into(),
                target: "a<b".into(),
                prediction: "it's <b>".into(),
                extracted: Some("<i>".into()),
                correct: false,
                exact: false,
                answered: true,
                variants: Vec::new(),
            }],
        };
        let s = Summary {
            total: 1,
            correct: 0,
            exact: 0,
            answered: 1,
            correct_norm: None,
            ..Summary::default()
        };
        let html = render(&results, &ScoreBreakdown::new(&s, Primary::Accuracy, 0.1));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            html.contains("env&lt;x&gt;")
                && html.contains("m&amp;m")
                && html.contains("&quot;id&quot;")
        );
        assert!(html.contains("it&#39;s &lt;b&gt;") && html.contains("&lt;i&gt;"));
    }
}
