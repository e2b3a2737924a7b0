//! The Evaluate tab: "Select a model to evaluate" in the model picker's four source tabs (the
//! data of `models list`), a phase and a limit, and Run Evaluation, which starts the run and
//! opens its page.

use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::envs::{env_page, open};
use super::launch::EvalRequest;
use super::page::{esc, segment};
use super::{blocking, App};
use crate::engine::remote::answers_models;
use crate::env::Environment;
use crate::model::listing::{self, Listing};
use crate::model::spec::Endpoint;

/// How long a Running endpoint has to answer `/v1/models` for its badge.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// One model the picker offers: what `--model` gets, and what the list shows.
struct Choice {
    spec: String,
    detail: String,
    /// Running endpoints: whether it answered just now.
    up: Option<bool>,
}

/// The picker's tabs, in the platform's order, and what went wrong reading the sources.
struct Picker {
    tabs: [(&'static str, Vec<Choice>); 4],
    problems: Vec<String>,
}

impl Picker {
    /// `probe`: ask each Running endpoint whether it is up (for the page, not for a check).
    fn read(app: &App, probe: bool) -> Self {
        let listing = app.sources.registry().and_then(|registry| {
            listing::list(&registry, app.trained_dir.clone(), &app.sources.hub.cache_dir)
        });
        let mut platform = vec![Choice {
            spec: crate::settings::EMBEDDED_MODEL.into(),
            detail: "the tiny arithmetic model compiled into benchgen (the default)".into(),
            up: None,
        }];
        // The embedded model is offered even when the registry or a folder cannot be read.
        let l = match listing {
            Ok(l) => l,
            Err(e) => {
                let tabs = [
                    ("Platform Models", platform),
                    ("Running", Vec::new()),
                    ("Trained", Vec::new()),
                    ("HuggingFace", Vec::new()),
                ];
                return Self { tabs, problems: vec![e.to_string()] };
            }
        };
        platform.extend(platform_choices(&l));
        let trained = l
            .trained
            .iter()
            .map(|t| Choice {
                spec: t.spec.clone(),
                detail: match &t.base {
                    Some(base) => format!("{}, base {base}, {} bytes", t.kind, t.size_bytes),
                    None => format!("{}, {} bytes", t.kind, t.size_bytes),
                },
                up: None,
            })
            .collect();
        let huggingface = l
            .huggingface
            .iter()
            .map(|m| Choice {
                spec: m.spec.clone(),
                detail: format!("cached, {} bytes", m.size_bytes),
                up: None,
            })
            .collect();
        let tabs = [
            ("Platform Models", platform),
            ("Running", running_choices(&l, app, probe)),
            ("Trained", trained),
            ("HuggingFace", huggingface),
        ];
        Self { tabs, problems: Vec::new() }
    }

    fn offers(&self, spec: &str) -> bool {
        self.tabs.iter().flat_map(|(_, choices)| choices).any(|c| c.spec == spec)
    }
}

/// Registry aliases that are not Running endpoints (those have their own tab).
fn platform_choices(l: &Listing) -> Vec<Choice> {
    l.platform
        .iter()
        .filter(|m| !l.running.iter().any(|r| r.alias == m.alias))
        .map(|m| {
            let mut detail = vec![m.source.clone()];
            detail.extend(m.revision.iter().map(|r| format!("revision {r}")));
            detail.extend(m.dtype.iter().cloned());
            detail.extend(m.description.iter().cloned());
            Choice { spec: format!("platform:{}", m.alias), detail: detail.join(", "), up: None }
        })
        .collect()
}

/// The registry's endpoints, each asked at once (in parallel) whether it answers now.
fn running_choices(l: &Listing, app: &App, probe: bool) -> Vec<Choice> {
    std::thread::scope(|scope| {
        let asked: Vec<_> = l
            .running
            .iter()
            .map(|r| {
                let endpoint = Endpoint { url: r.url.clone(), model: r.model.clone() };
                let server = &app.sources.server;
                let answer = probe
                    .then(|| scope.spawn(move || answers_models(&endpoint, server, PROBE_TIMEOUT)));
                (r, answer)
            })
            .collect();
        asked
            .into_iter()
            .map(|(r, answer)| Choice {
                spec: format!("platform:{}", r.alias),
                detail: match &r.model {
                    Some(m) => format!("{} model {m}", r.url),
                    None => r.url.clone(),
                },
                up: answer.map(|a| a.join().unwrap_or(false)),
            })
            .collect()
    })
}

pub async fn tab(State(app): State<App>, Path(name): Path<String>) -> Response {
    blocking(move || match open(&app, &name) {
        Ok(env) => evaluate_page(&app, &env, &name, None, None).into_response(),
        Err(page) => page.into_response(),
    })
    .await
}

/// The Evaluate tab, with `error` above the form when the last try failed and `chosen` the
/// model it asked for.
fn evaluate_page(
    app: &App,
    env: &Environment,
    name: &str,
    error: Option<&str>,
    chosen: Option<&str>,
) -> super::page::Page {
    let picker = Picker::read(app, true);
    let mut h = String::new();
    if let Some(e) = error {
        h.push_str(&format!("<p class=\"error\" id=\"eval-error\">{}</p>", esc(e)));
    }
    for p in &picker.problems {
        h.push_str(&format!("<p class=\"error\">{}</p>", esc(p)));
    }
    h.push_str(&format!(
        "<form method=\"post\" action=\"/envs/{}/evaluate\" class=\"card\">\
         <h2>Select a model to evaluate</h2><div class=\"picker\">",
        segment(name)
    ));
    // CSS-only tabs: a radio per tab, each showing its panel; no script needed.
    let mut style = String::from("<style>.picker .panel{display:none}.picker>input{display:none}\
.picker>label{display:inline-block;padding:8px 14px;cursor:pointer;color:#475467;border-bottom:2px solid transparent}\
.picker .panel{border-top:1px solid #dde1e8;padding:10px 0}.choice{display:block;padding:6px 4px}\
.choice:hover{background:#f0f4ff}");
    let mut panels = String::new();
    let chosen = chosen.unwrap_or(crate::settings::EMBEDDED_MODEL);
    for (i, (title, choices)) in picker.tabs.iter().enumerate() {
        let checked = if i == 0 { " checked" } else { "" };
        h.push_str(&format!(
            "<input type=\"radio\" name=\"source_tab\" id=\"source-{i}\"{checked}>\
             <label for=\"source-{i}\" id=\"tab-{i}\">{title} ({})</label>",
            choices.len()
        ));
        style.push_str(&format!(
            "#source-{i}:checked~#panel-{i}{{display:block}}#source-{i}:checked+label{{color:#1d4ed8;border-color:#1d4ed8;font-weight:600}}"
        ));
        panels.push_str(&format!("<div class=\"panel\" id=\"panel-{i}\" data-source=\"{title}\">"));
        if choices.is_empty() {
            panels.push_str(&format!("<p class=\"muted\">{}</p>", empty_note(title)));
        }
        for c in choices {
            let checked = if c.spec == chosen { " checked" } else { "" };
            let badge = match c.up {
                Some(true) => " <span class=\"badge running\">running</span>",
                _ => "",
            };
            panels.push_str(&format!(
                "<label class=\"choice\"><input type=\"radio\" name=\"model\" value=\"{0}\"{checked}> \
                 <b>{0}</b>{badge} <span class=\"muted\">{1}</span></label>",
                esc(&c.spec),
                esc(&c.detail)
            ));
        }
        panels.push_str("</div>");
    }
    style.push_str("</style>");
    h.push_str(&panels);
    h.push_str("</div>");
    h.push_str(&style);
    let phases: String = env
        .manifest
        .phases
        .iter()
        .map(|p| format!("<option value=\"{0}\">{0}</option>", esc(&p.name)))
        .collect();
    h.push_str(&format!(
        "<p><label>Phase <select name=\"phase\">{phases}</select></label> \
         <label>Limit <input type=\"number\" name=\"limit\" min=\"1\" placeholder=\"all items\"></label></p>\
         <button type=\"submit\" id=\"run-evaluation\">Run Evaluation</button></form>"
    ));
    env_page(env, name, "evaluate", &h)
}

fn empty_note(tab: &str) -> &'static str {
    match tab {
        "Running" => "None: add a registry alias whose source is running:URL.",
        "Trained" => {
            "None: checkpoints are listed from $BENCHGEN_TRAINED_DIR (default ./checkpoints)."
        }
        "HuggingFace" => "None cached: models appear here once downloaded into the HF cache.",
        _ => "None.",
    }
}

#[derive(serde::Deserialize)]
pub struct EvaluateForm {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// Run Evaluation: checks the form against what the tab offered, starts the run and opens its
/// page; what stops it is shown on the Evaluate tab.
pub async fn start(
    State(app): State<App>,
    Path(name): Path<String>,
    Form(form): Form<EvaluateForm>,
) -> Response {
    blocking(move || {
        let env = match open(&app, &name) {
            Ok(env) => env,
            Err(page) => return page.into_response(),
        };
        let request = match check(&app, &env, &name, &form) {
            Ok(request) => request,
            Err(message) => {
                return evaluate_page(&app, &env, &name, Some(&message), form.model.as_deref())
                    .with_status(StatusCode::BAD_REQUEST)
                    .into_response()
            }
        };
        match app.launcher.start(&app.runs_dir, &request) {
            Ok(id) => Redirect::to(&format!("/runs/{id}")).into_response(),
            Err(e) => evaluate_page(&app, &env, &name, Some(&e.to_string()), Some(&request.model))
                .with_status(StatusCode::UNPROCESSABLE_ENTITY)
                .into_response(),
        }
    })
    .await
}

/// The run `form` asks for on `env` (found as `name`, which `eval --env` finds it by too).
fn check(
    app: &App,
    env: &Environment,
    name: &str,
    form: &EvaluateForm,
) -> Result<EvalRequest, String> {
    let model = form.model.as_deref().unwrap_or("");
    if model.is_empty() {
        return Err("Select a model to evaluate.".into());
    }
    if !Picker::read(app, false).offers(model) {
        return Err(format!("{model} is not one of the models offered here."));
    }
    let phase = form.phase.as_deref().unwrap_or(&env.manifest.phases[0].name);
    if !env.manifest.phases.iter().any(|p| p.name == phase) {
        return Err(format!("{} has no phase {phase}.", env.manifest.name));
    }
    let limit = match form.limit.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("Limit must be a whole number of items above 0, not {text}.")),
        },
    };
    Ok(EvalRequest {
        env: name.to_string(),
        model: model.to_string(),
        phase: phase.to_string(),
        limit,
    })
}
