//! A run's pages: the run list, the run page (fields, live log, Score Breakdown, Files panel)
//! and the fine-tune dataset view.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::page::{esc, not_found, segment, status_badge, table, Page};
use super::{blocking, App};
use crate::report::ScoreBreakdown;
use crate::run::{RunDir, RunFile, RunRecord, RunStatus, RunsDir};

/// A Run ID as URLs write it: the canonical decimal integer, nothing else (`07`, `+7`, `7/..`
/// and the like name no run).
pub fn parse_run_id(text: &str) -> Option<u64> {
    let id: u64 = text.parse().ok()?;
    (id.to_string() == text).then_some(id)
}

/// The folder of run `id` as a URL names it, when such a run exists.
pub fn find_run(app: &App, id: &str) -> Option<(u64, RunDir)> {
    let id = parse_run_id(id)?;
    let run = RunsDir::new(&app.runs_dir).run(id);
    run.path().is_dir().then_some((id, run))
}

pub const RUN_COLUMNS: &[&str] =
    &["Run ID", "Status", "Model", "Environment", "Items", "Created", "Overall Score"];

/// One run as the run lists show it (columns [`RUN_COLUMNS`]).
pub fn run_row(run: &RunDir, rec: &RunRecord) -> Vec<String> {
    vec![
        format!("<a href=\"/runs/{0}\">{0}</a>", rec.run_id),
        status_badge(&run.status_label(rec)),
        esc(&rec.model.spec),
        esc(&rec.environment.name),
        esc(&rec.items_label()),
        esc(&rec.created),
        rec.overall_score.map_or_else(|| "-".into(), |s| format!("{s:.2}")),
    ]
}

pub async fn list(State(app): State<App>) -> Response {
    blocking(move || {
        let runs = RunsDir::new(&app.runs_dir);
        let ids = match runs.ids() {
            Ok(ids) => ids,
            Err(e) => return Page::error(e.to_string()).into_response(),
        };
        let rows: Vec<Vec<String>> = ids
            .into_iter()
            .rev()
            .filter_map(|id| {
                let run = runs.run(id);
                run.read_record().ok().map(|rec| run_row(&run, &rec))
            })
            .collect();
        let listing = if rows.is_empty() {
            "<p class=\"muted\">No runs yet.</p>".to_string()
        } else {
            table(RUN_COLUMNS, &rows)
        };
        let body = format!(
            "<h1>Runs</h1><p class=\"muted\">{}</p>{listing}",
            esc(&app.runs_dir.display().to_string())
        );
        Page::new("Runs", body).into_response()
    })
    .await
}

pub async fn page(State(app): State<App>, Path(id): Path<String>) -> Response {
    blocking(move || match find_run(&app, &id) {
        Some((id, run)) => run_page(id, &run).into_response(),
        None => not_found(),
    })
    .await
}

/// While the live log streams, the Score Breakdown is not there yet: the script appends each
/// line the server sends (log.txt's, after their timestamps) and reloads the page once the run has ended. Without script, the page
/// reloads itself.
const LIVE_SCRIPT: &str = "<script>(function(){\
var log=document.getElementById('log'),bar=document.getElementById('progress'),\
es=new EventSource(location.pathname+'/log');\
es.onmessage=function(e){log.textContent+=e.data+'\\n';log.scrollTop=log.scrollHeight;\
var m=/Processing: (\\d+)\\/(\\d+) \\(/.exec(e.data);if(m){bar.max=+m[2];bar.value=+m[1];}};\
es.addEventListener('end',function(){es.close();location.reload();});\
})();</script><noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>";

fn run_page(id: u64, run: &RunDir) -> Page {
    let Ok(rec) = run.read_record() else {
        // The folder exists a moment before its run.json.
        let body = format!(
            "<h1>Run {id}</h1><p class=\"muted\">Starting: the run has no run.json yet.</p>\
             <meta http-equiv=\"refresh\" content=\"1\">"
        );
        return Page::new(format!("Run {id}"), body);
    };
    let mut h = format!("<h1>Run {id}</h1>");
    h.push_str(&fields(run, &rec));
    match rec.status {
        RunStatus::Running if !run.stopped(&rec) => {
            h.push_str(
                "<h2>Live log</h2><div class=\"card\" id=\"live\"><progress id=\"progress\" \
                 value=\"0\" max=\"1\"></progress><pre id=\"log\"></pre></div>",
            );
            h.push_str(LIVE_SCRIPT);
        }
        _ => {
            if run.stopped(&rec) {
                h.push_str(&format!(
                    "<p class=\"error\" id=\"stopped\">No process is working on this run: it \
                     was killed or crashed. Resume it with <code>{}</code>.</p>",
                    esc(&crate::eval::resume_command(run.path(), id))
                ));
            }
            if let Ok(Some(b)) = run.read_breakdown::<ScoreBreakdown>() {
                h.push_str(&breakdown(&b));
            }
            h.push_str(&files_panel(id, run));
            let log = std::fs::read_to_string(run.file(RunFile::Log)).unwrap_or_default();
            let open = if rec.status == RunStatus::Completed { "" } else { " open" };
            h.push_str(&format!(
                "<h2>Log</h2><details{open} class=\"card\"><summary>log.txt</summary>\
                 <pre id=\"log\">{}</pre></details>",
                esc(&log)
            ));
        }
    }
    Page::new(format!("Run {id}"), h)
}

fn fields(run: &RunDir, rec: &RunRecord) -> String {
    let e = &rec.environment;
    let mut rows = vec![
        ("Status", status_badge(&run.status_label(rec))),
        ("Model", esc(&rec.model.spec)),
        (
            "Environment",
            format!(
                "<a href=\"/envs/{}\">{}</a> v{} (phase {})",
                segment(&e.name),
                esc(&e.name),
                esc(&e.version),
                esc(&e.phase)
            ),
        ),
        ("Created", esc(&rec.created)),
        (
            "Submission",
            rec.submission.as_deref().map_or_else(
                || "<span class=\"muted\">not yet</span>".into(),
                |s| {
                    format!(
                        "<a href=\"/runs/{}/files/{}\">{}</a>",
                        rec.run_id,
                        RunFile::Submission.name(),
                        esc(s)
                    )
                },
            ),
        ),
        ("Run ID", rec.run_id.to_string()),
        ("Items", esc(&rec.items_label())),
    ];
    if let Some(d) = rec.duration_s {
        rows.push(("Duration", format!("{d:.2}s")));
    }
    if let Some(e) = &rec.error {
        rows.push(("Error", format!("<span class=\"error\">{}</span>", esc(e))));
    }
    if let Some(c) = &rec.resume_command {
        rows.push(("Resume with", format!("<code>{}</code>", esc(c))));
    }
    let mut h = String::from("<div class=\"card\"><dl class=\"fields\">");
    for (name, value) in rows {
        h.push_str(&format!("<dt>{name}</dt><dd data-field=\"{name}\">{value}</dd>"));
    }
    h.push_str("</dl></div>");
    h
}

fn breakdown(b: &ScoreBreakdown) -> String {
    let rows: Vec<Vec<String>> = b
        .rows()
        .into_iter()
        .map(|(name, value)| vec![esc(&name), format!("<b>{}</b>", esc(&value))])
        .collect();
    format!(
        "<h2>Score Breakdown</h2><div class=\"card\" id=\"breakdown\"><p>{}</p>{}</div>",
        esc(&b.accuracy_line()),
        table(&["Metric", "Value"], &rows)
    )
}

/// Every file the run holds now, each a download; Detailed Results also viewed here, the
/// Generated dataset on its own page.
fn files_panel(id: u64, run: &RunDir) -> String {
    let mut rows = Vec::new();
    for file in run.present() {
        let href = format!("/runs/{id}/files/{}", file.name());
        let mut links = vec![format!(
            "<a class=\"download\" data-file=\"{0}\" href=\"{href}?download=1\">{0}</a>",
            file.name()
        )];
        match file {
            RunFile::DetailedHtml => {
                links.push(format!("<a href=\"{href}\" target=\"_blank\">View in the browser</a>"))
            }
            RunFile::Finetune => links.push(format!(
                "<a id=\"view-finetune\" href=\"/runs/{id}/finetune\">View fine-tune dataset</a>"
            )),
            _ => {}
        }
        let size = std::fs::metadata(run.file(file)).map_or(0, |m| m.len());
        rows.push(vec![esc(file.label()), links.join(" · "), format!("{size} bytes")]);
    }
    format!(
        "<h2>Files</h2><div class=\"card\" id=\"files\">{}</div>",
        table(&["File", "Download", "Size"], &rows)
    )
}

/// Fine-tune examples shown at most; the file itself has them all.
const FINETUNE_SHOWN: usize = 1000;

pub async fn finetune(State(app): State<App>, Path(id): Path<String>) -> Response {
    blocking(move || {
        let Some((id, run)) = find_run(&app, &id) else { return not_found() };
        let path = run.file(RunFile::Finetune);
        let Ok(text) = std::fs::read_to_string(&path) else { return not_found() };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut h = format!(
            "<h1>Fine-tune dataset — run {id}</h1><p class=\"muted\">{} examples in {} · \
             <a href=\"/runs/{id}/files/{2}?download=1\">download {2}</a> · \
             <a href=\"/runs/{id}\">back to the run</a></p>",
            lines.len(),
            esc(RunFile::Finetune.label()),
            RunFile::Finetune.name(),
        );
        for (n, line) in lines.iter().take(FINETUNE_SHOWN).enumerate() {
            h.push_str(&format!("<div class=\"card example\"><p class=\"muted\">#{}</p>", n + 1));
            h.push_str(&example(line));
            h.push_str("</div>");
        }
        if lines.len() > FINETUNE_SHOWN {
            h.push_str(&format!(
                "<p class=\"muted\">The first {FINETUNE_SHOWN} of {} are shown.</p>",
                lines.len()
            ));
        }
        Page::new(format!("Run {id} · fine-tune dataset"), h).into_response()
    })
    .await
}

/// One example: a chat's turns, a prompt and its completion, or the line as it is.
fn example(line: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let text =
        |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let turn = |role: &str, content: &str| {
        format!("<p><b>{}</b></p><pre class=\"turn\">{}</pre>", esc(role), esc(content))
    };
    if let Some(messages) = value.get("messages").and_then(|m| m.as_array()) {
        return messages.iter().map(|m| turn(&text(&m["role"]), &text(&m["content"]))).collect();
    }
    if let (Some(p), Some(c)) = (value.get("prompt"), value.get("completion")) {
        return turn("prompt", &text(p)) + &turn("completion", &text(c));
    }
    format!("<pre>{}</pre>", esc(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_integers_are_run_ids() {
        assert_eq!(parse_run_id("7"), Some(7));
        assert_eq!(parse_run_id("0"), Some(0));
        for bad in ["07", "+7", "-1", "7/..", "..", "", " 7", "1e3", "18446744073709551616"] {
            assert_eq!(parse_run_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn examples_show_turns_escaped() {
        let chat = r#"{"messages":[{"role":"user","content":"1+1=<b>"},{"role":"assistant","content":"2"}]}"#;
        let h = example(chat);
        assert!(
            h.contains("<b>user</b>") && h.contains("1+1=&lt;b&gt;") && h.contains(">2</pre>"),
            "{h}"
        );
        let h = example(r#"{"prompt":"p","completion":"c&"}"#);
        assert!(h.contains("<b>prompt</b>") && h.contains("c&amp;"), "{h}");
        assert_eq!(example("<not json>"), "<pre>&lt;not json&gt;</pre>");
    }
}
