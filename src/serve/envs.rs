//! The Environments list and an environment's tabs: Overview, Phases, Leaderboard and
//! Evaluations (Evaluate is in `evaluate.rs`).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::page::{esc, not_found, not_found_page, segment, table, Page};
use super::{blocking, markdown, App};
use crate::env::Environment;
use crate::leaderboard::{leaderboard, Options};
use crate::run::RunsDir;

/// The tabs of an environment's page, in order: path segment and title.
pub const TABS: [(&str, &str); 5] = [
    ("overview", "Overview"),
    ("phases", "Phases"),
    ("leaderboard", "Leaderboard"),
    ("evaluations", "Evaluations"),
    ("evaluate", "Evaluate"),
];

pub async fn list(State(app): State<App>) -> Response {
    blocking(move || {
        let mut rows = Vec::new();
        for (name, source) in Environment::available(&app.env_sources) {
            let (version, description) = match Environment::by_name(&name, &app.env_sources) {
                Some(Ok(env)) => (esc(&env.manifest.version), esc(&env.manifest.description)),
                Some(Err(e)) => {
                    (String::new(), format!("<span class=\"error\">{}</span>", esc(&e.to_string())))
                }
                None => (String::new(), String::new()),
            };
            rows.push(vec![
                format!("<a href=\"/envs/{}\">{}</a>", segment(&name), esc(&name)),
                version,
                description,
                format!("<span class=\"muted\">{}</span>", esc(&source)),
            ]);
        }
        let body = format!(
            "<h1>Environments</h1><p class=\"muted\">Benchmarks to evaluate models on: the ones \
             that ship with benchgen and those in <code>$BENCHGEN_ENVS</code>.</p>{}",
            table(&["Name", "Version", "Description", "Source"], &rows)
        );
        Page::new("Environments", body).into_response()
    })
    .await
}

/// The environment named `name`, or the page that says why there is none to show.
pub fn open(app: &App, name: &str) -> Result<Environment, Page> {
    match Environment::by_name(name, &app.env_sources) {
        // Pages never download: a phase on the hub that is not cached says so instead.
        Some(Ok(env)) => Ok(env.offline(true)),
        Some(Err(e)) => Err(Page::error(e.to_string())),
        None => Err(not_found_page()),
    }
}

/// The page of `env` (found as `name`) with tab `current` on, holding `content`.
pub fn env_page(env: &Environment, name: &str, current: &str, content: &str) -> Page {
    let m = &env.manifest;
    let mut tabs = String::from("<nav class=\"tabs\">");
    for (path, title) in TABS {
        let on = if path == current { " class=\"on\"" } else { "" };
        tabs.push_str(&format!("<a{on} href=\"/envs/{}/{path}\">{title}</a>", segment(name)));
    }
    tabs.push_str("</nav>");
    let body = format!(
        "<h1>{}</h1><p class=\"muted\">v{} — {} · {}</p>{tabs}{content}",
        esc(&m.name),
        esc(&m.version),
        esc(&m.description),
        esc(&env.origin)
    );
    Page::new(format!("{} · {}", m.name, title_of(current)), body)
}

fn title_of(tab: &str) -> &'static str {
    TABS.iter().find(|(path, _)| *path == tab).map_or("", |(_, title)| title)
}

pub async fn overview(State(app): State<App>, Path(name): Path<String>) -> Response {
    blocking(move || render(&app, &name, "overview", false)).await
}

#[derive(serde::Deserialize)]
pub struct TabQuery {
    /// Leaderboard: also runs over part of a phase.
    #[serde(default)]
    partial: Option<String>,
}

pub async fn tab(
    State(app): State<App>,
    Path((name, tab)): Path<(String, String)>,
    Query(query): Query<TabQuery>,
) -> Response {
    let partial = query.partial.is_some_and(|p| p == "1");
    blocking(move || render(&app, &name, &tab, partial)).await
}

fn render(app: &App, name: &str, tab: &str, partial: bool) -> Response {
    let env = match open(app, name) {
        Ok(env) => env,
        Err(page) => return page.into_response(),
    };
    let content = match tab {
        "overview" => overview_tab(&env),
        "phases" => phases_tab(&env),
        "leaderboard" => leaderboard_tab(app, &env, name, partial),
        "evaluations" => evaluations_tab(app, &env),
        _ => return not_found(),
    };
    env_page(&env, name, tab, &content).into_response()
}

fn overview_tab(env: &Environment) -> String {
    match &env.readme {
        Some(readme) => format!("<div class=\"card readme\">{}</div>", markdown::to_html(readme)),
        None => "<p class=\"muted\">This environment has no README.md.</p>".into(),
    }
}

fn phases_tab(env: &Environment) -> String {
    let m = &env.manifest;
    let rows: Vec<Vec<String>> = m
        .phases
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let items = match env.load_items(phase) {
                Ok(items) => format!("{} items", items.len()),
                Err(e) => format!(
                    "<span class=\"muted\">data not available: {}</span>",
                    esc(&e.to_string())
                ),
            };
            let shots = phase.shots(m.fewshot.as_ref());
            let shots = match &m.fewshot {
                Some(f) if shots > 0 => format!("{shots}-shot from phase {}", esc(&f.phase)),
                _ => "zero-shot".into(),
            };
            vec![
                format!(
                    "{}{}",
                    esc(&phase.name),
                    if i == 0 { " <span class=\"badge\">default</span>" } else { "" }
                ),
                format!("<code>{}</code>", esc(phase.file_name())),
                items,
                shots,
            ]
        })
        .collect();
    let s = &m.scoring;
    format!(
        "{}<h2>Scoring</h2><p>method <code>{}</code>, metric <code>{}</code>, Overall Score = \
         <code>{}</code></p>",
        table(&["Phase", "Data", "Items", "Prompt"], &rows),
        esc(&format!("{:?}", s.method)),
        esc(&format!("{:?}", s.metric)),
        esc(&format!("{:?}", s.primary)),
    )
}

fn leaderboard_tab(app: &App, env: &Environment, name: &str, include_partial: bool) -> String {
    let toggle = if include_partial {
        format!("<a href=\"/envs/{}/leaderboard\">Full-phase runs only</a>", segment(name))
    } else {
        format!(
            "Full-phase runs only · <a href=\"/envs/{}/leaderboard?partial=1\">include runs over \
             part of a phase</a>",
            segment(name)
        )
    };
    let runs = RunsDir::new(&app.runs_dir);
    let entries = match leaderboard(&runs, &env.manifest.name, Options { include_partial }) {
        Ok(entries) => entries,
        Err(e) => return format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
    };
    if entries.is_empty() {
        return format!("<p class=\"muted\">No completed runs yet.</p><p>{toggle}</p>");
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let b = &e.breakdown;
            vec![
                (i + 1).to_string(),
                esc(&e.label()),
                e.items.to_string(),
                format!("{:.2}", b.overall_score),
                format!("{:.2}%", b.accuracy),
                format!("{:.2}%", b.exact_match),
                format!("{:.2}%", b.answer_rate),
                format!("{:.1}s", b.duration_s),
                format!("<a href=\"/runs/{0}\">{0}</a>", e.run_id),
                esc(&e.created),
            ]
        })
        .collect();
    format!(
        "{}<p class=\"muted\">{toggle}</p>",
        table(
            &[
                "Rank", "Model", "Items", "Overall", "Accuracy", "Exact", "Answered", "Duration",
                "Run", "Date"
            ],
            &rows
        )
    )
}

fn evaluations_tab(app: &App, env: &Environment) -> String {
    let runs = RunsDir::new(&app.runs_dir);
    let ids = match runs.ids() {
        Ok(ids) => ids,
        Err(e) => return format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
    };
    let rows: Vec<Vec<String>> = ids
        .into_iter()
        .rev()
        .filter_map(|id| {
            let run = runs.run(id);
            let rec = run.read_record().ok()?;
            (rec.environment.name == env.manifest.name).then(|| super::runs::run_row(&run, &rec))
        })
        .collect();
    if rows.is_empty() {
        return format!(
            "<p class=\"muted\">No runs of this environment in {}.</p>",
            esc(&app.runs_dir.display().to_string())
        );
    }
    table(super::runs::RUN_COLUMNS, &rows)
}
