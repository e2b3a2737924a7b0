//! Every chat template of llama.cpp's collection (`models/templates/*.jinja`) must render as
//! Python transformers renders it: fixtures/goldens/templates/*.json, made by
//! tools/make_template_goldens.py, hold transformers' output (or the error it raised) for each
//! case, and the sha256 of the template file it rendered. The goldens hold no template text: the
//! templates are read from the folder named by `BENCHGEN_LLAMA_TEMPLATES_DIR` (`.ci/run` fetches
//! it); without it the tests say so and pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use benchgen::model::chat::{ChatTemplate, RenderInput, TemplateValue};

use crate::common::{benchgen_command, output_within, stderr, stdout};

/// Templates left out, each with the construct benchgen does not render as Jinja2 does. A
/// template listed here that renders every case right fails the test, so the list stays true.
const EXCLUDED: &[(&str, &str)] = &[(
    "meetkai-functionary-medium-v3.1.jinja",
    "its tools list: `\"…\"|safe + t | tojson()` adds a str to a Markup, which Jinja2 HTML-escapes \
     (`&#34;`); minijinja's `+` joins plain strings and has no hook to do that",
)];

/// The template folder, or why there is none.
/// llama.cpp's templates folder, or None (after saying so) when these tests cannot run here.
fn templates_dir() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("BENCHGEN_LLAMA_TEMPLATES_DIR").filter(|v| !v.is_empty())
    else {
        eprintln!(
            "SKIPPED: llama.cpp's chat templates: BENCHGEN_LLAMA_TEMPLATES_DIR is not set \
             (.ci/run sets it to llama.cpp's models/templates)"
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        eprintln!(
            "SKIPPED: llama.cpp's chat templates: BENCHGEN_LLAMA_TEMPLATES_DIR={} is not a directory",
            dir.display()
        );
        return None;
    }
    Some(dir)
}

fn goldens_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/goldens/templates")
}

/// One golden file: the serde_json view for the plain fields, and the same text parsed with key
/// order kept (as Python's json.loads keeps it) for what the template is given.
struct Golden {
    name: String,
    plain: serde_json::Value,
    ordered: TemplateValue,
}

fn load_goldens() -> Vec<Golden> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(goldens_dir())
        .expect("fixtures/goldens/templates exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("golden readable");
            let plain: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("bad golden {}: {e}", path.display()));
            let ordered = TemplateValue::from_json(&text).expect("golden parses");
            let name = plain["template"].as_str().expect("golden names its template").to_string();
            Golden { name, plain, ordered }
        })
        .collect()
}

fn first_difference(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).position(|(x, y)| x != y).unwrap_or_else(|| a.len().min(b.len()))
}

/// The input of case `i` of a golden.
fn case_input(golden: &Golden, i: usize) -> RenderInput {
    let case = &golden.plain["cases"][i];
    let conversation = case["conversation"].as_str().expect("case names its conversation");
    let messages = golden
        .ordered
        .get("conversations")
        .and_then(|c| c.get(conversation))
        .expect("the golden holds the case's conversation");
    let mut input = RenderInput::new(&messages)
        .unwrap_or_else(|e| panic!("{}: {e}", golden.name))
        .add_generation_prompt(case["add_generation_prompt"].as_bool().expect("a boolean"));
    if case["tools"].as_bool().expect("a boolean") {
        let tools = golden.ordered.get("tools").expect("the golden holds its tools");
        input = input.tools(&tools).expect("tools are a list");
    }
    let now = golden.plain["now"].as_str().expect("the golden records its time");
    input = input.now(
        chrono::NaiveDateTime::parse_from_str(now, "%Y-%m-%dT%H:%M:%S").expect("a valid time"),
    );
    let tokens = golden.ordered.get("special_tokens").expect("special tokens recorded");
    for key in golden.plain["special_tokens"].as_object().expect("an object").keys() {
        input = input.var(key, tokens.get(key).expect("present")).expect("a free name");
    }
    if let Some(vars) = case.get("vars").and_then(|v| v.as_object()) {
        for (key, value) in vars {
            // Scalars (enable_thinking=false): no key order to keep.
            let value = TemplateValue::from_json(&value.to_string()).expect("valid JSON");
            input = input.var(key, value).expect("a free name");
        }
    }
    input
}

/// Renders every case of one golden; the failures, each with the case and first difference.
fn check(golden: &Golden, dir: &Path) -> Vec<String> {
    let name = &golden.name;
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => return vec![format!("{name}: cannot read {}: {e}", path.display())],
    };
    let sha = benchgen::hash::sha256_hex(&bytes);
    if golden.plain["sha256"].as_str() != Some(sha.as_str()) {
        return vec![format!(
            "{name}: the template file differs from the one the golden was made from (sha256 {sha}); \
             regenerate with tools/make_template_goldens.py"
        )];
    }
    let text = String::from_utf8(bytes).expect("templates are UTF-8");
    let template = match ChatTemplate::new(&text, None, None) {
        Ok(t) => t,
        Err(e) => return vec![format!("{name}: does not compile: {e}")],
    };
    let cases = golden.plain["cases"].as_array().expect("cases");
    assert!(!cases.is_empty(), "{name}: golden has no cases");
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let label = format!(
            "{name} case {i} ({}, tools={}, add_generation_prompt={})",
            case["conversation"], case["tools"], case["add_generation_prompt"]
        );
        let got = template.render_input(&case_input(golden, i));
        match (case.get("rendered").and_then(|r| r.as_str()), got) {
            (Some(want), Ok(got)) if got == want => {}
            (Some(want), Ok(got)) => {
                let at = first_difference(&got, want);
                let from = at.saturating_sub(60);
                let show = |s: &str| {
                    let mut start = from.min(s.len());
                    while !s.is_char_boundary(start) {
                        start -= 1;
                    }
                    let mut end = (at + 60).min(s.len());
                    while !s.is_char_boundary(end) {
                        end += 1;
                    }
                    format!("{:?}", &s[start..end])
                };
                failures.push(format!(
                    "{label}: first difference at byte {at}\n  benchgen:     {}\n  transformers: {}",
                    show(&got),
                    show(want)
                ));
            }
            (Some(_), Err(e)) => failures.push(format!("{label}: benchgen failed: {e}")),
            (None, Ok(_)) => failures.push(format!(
                "{label}: transformers raised {} but benchgen rendered",
                case["error"]
            )),
            (None, Err(_)) => {}
        }
    }
    failures
}

#[test]
fn every_llama_cpp_template_renders_as_transformers() {
    let Some(dir) = templates_dir() else { return };
    let goldens = load_goldens();
    assert!(goldens.len() >= 60, "expected llama.cpp's ~70 templates, found {}", goldens.len());
    for (excluded, _) in EXCLUDED {
        assert!(goldens.iter().any(|g| g.name == *excluded), "{excluded}: excluded but no golden");
    }
    let mut failures = Vec::new();
    let mut passed = 0;
    for golden in &goldens {
        let failed = check(golden, &dir);
        let excluded = EXCLUDED.iter().find(|(n, _)| *n == golden.name);
        match (excluded, failed.is_empty()) {
            (None, true) => passed += 1,
            (None, false) => failures.extend(failed),
            (Some(_), true) => failures.push(format!(
                "{}: listed in EXCLUDED but renders every case as transformers: remove it",
                golden.name
            )),
            (Some((_, why)), false) => eprintln!("excluded: {} ({why})", golden.name),
        }
    }
    eprintln!("{passed} of {} templates byte-identical to transformers", goldens.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// A golden case through the real binary: `benchgen template render` with the case's messages,
/// tools and variables in files and flags, its stdout byte for byte.
fn render_through_binary(template: &str, conversation: &str, tools: bool, generation_prompt: bool) {
    let Some(dir) = templates_dir() else { return };
    let goldens = load_goldens();
    let golden = goldens.iter().find(|g| g.name == template).expect("a golden for the template");
    let cases = golden.plain["cases"].as_array().expect("cases");
    let case = cases
        .iter()
        .find(|c| {
            c["conversation"] == conversation
                && c["tools"] == tools
                && c["add_generation_prompt"] == generation_prompt
        })
        .expect("the golden has the case");
    let tmp = tempfile::tempdir().expect("temp dir");
    let messages = golden.ordered.get("conversations").and_then(|c| c.get(conversation));
    let messages_file = tmp.path().join("messages.json");
    std::fs::write(&messages_file, messages.expect("conversation").to_string()).expect("written");
    let mut cmd = benchgen_command();
    cmd.args(["template", "render"]).arg(dir.join(template));
    cmd.arg("--messages").arg(&messages_file);
    if tools {
        let tools_file = tmp.path().join("tools.json");
        let tools = golden.ordered.get("tools").expect("tools").to_string();
        std::fs::write(&tools_file, tools).expect("written");
        cmd.arg("--tools").arg(tools_file);
    }
    if !generation_prompt {
        cmd.arg("--no-generation-prompt");
    }
    for (name, value) in golden.plain["special_tokens"].as_object().expect("tokens") {
        cmd.arg("--var").arg(format!("{name}={}", value.as_str().expect("a string")));
    }
    let out = output_within(&mut cmd, Duration::from_secs(60));
    match case.get("rendered").and_then(|r| r.as_str()) {
        Some(want) => {
            assert!(out.status.success(), "{template}: {}", stderr(&out));
            assert_eq!(stdout(&out), want, "{template}: {conversation}");
        }
        None => {
            assert!(!out.status.success(), "{template} must refuse {conversation}");
            assert_eq!(stdout(&out), "", "nothing on stdout when the template fails");
        }
    }
}

#[test]
fn binary_renders_tool_calls_as_transformers() {
    render_through_binary("Qwen-Qwen2.5-7B-Instruct.jinja", "tool_call", true, true);
}

#[test]
fn binary_renders_a_prefill_with_special_tokens_as_transformers() {
    render_through_binary("meta-llama-Llama-3.1-8B-Instruct.jinja", "prefill", false, false);
}

#[test]
fn binary_fails_where_transformers_raises() {
    render_through_binary("google-gemma-2-2b-it.jinja", "system_user", false, true);
}

/// `benchgen template render` on a template written here (no llama.cpp folder needed).
fn render_local(template: &str, messages: &str, args: &[&str]) -> std::process::Output {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(tmp.path().join("t.jinja"), template).expect("written");
    std::fs::write(tmp.path().join("m.json"), messages).expect("written");
    let mut cmd = benchgen_command();
    cmd.current_dir(tmp.path()).args(["template", "render", "t.jinja", "--messages", "m.json"]);
    cmd.args(args);
    output_within(&mut cmd, Duration::from_secs(60))
}

#[test]
fn render_prints_exactly_the_template_output() {
    let t = "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}\
             {% if add_generation_prompt %}A:{% endif %}";
    let messages = r#"[{"role": "user", "content": "hi"}]"#;
    let out = render_local(t, messages, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "[user:hi]A:", "no newline added");
    let out = render_local(t, messages, &["--no-generation-prompt"]);
    assert_eq!(stdout(&out), "[user:hi]");
}

#[test]
fn render_passes_variables_and_every_message_field() {
    let t = "{{ enable_thinking is false }}|{{ bos_token }}|{{ n + 1 }}|{{ messages[0].name }}|\
             {{ messages[0].tool_calls[0].function.arguments | tojson }}|\
             {{ tools[0].z if tools else tools }}";
    let messages = r#"[{"role": "assistant", "content": null, "name": "x",
        "tool_calls": [{"function": {"name": "f", "arguments": {"b": 1, "a": [2.5, "é"]}}}]}]"#;
    let tmp = tempfile::tempdir().expect("temp dir");
    let tools = tmp.path().join("tools.json");
    std::fs::write(&tools, r#"[{"z": "tool"}]"#).expect("written");
    let tools = tools.to_str().expect("UTF-8 path");
    let out = render_local(
        t,
        messages,
        &["--var", "enable_thinking=false", "--var", "bos_token=<s>", "--var", "n=2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), r#"True|<s>|3|x|{"b": 1, "a": [2.5, "é"]}|None"#);
    let out = render_local(t, messages, &["--var", "n=2", "--tools", tools]);
    assert!(stdout(&out).ends_with("|tool"), "{}", stdout(&out));
}

#[test]
fn render_names_what_benchgen_does_not_offer() {
    let messages = r#"[{"role": "user", "content": "hi"}]"#;
    for (template, named) in [
        ("{{ messages[0].content.zfill(3) }}", "zfill"),
        ("{{ messages | frobnicate }}", "frobnicate"),
        ("{{ messages is frobbed }}", "frobbed"),
        ("{% for m in none %}{% endfor %}", "not iterable"),
    ] {
        let out = render_local(template, messages, &[]);
        assert!(!out.status.success(), "{template} must fail");
        assert_eq!(stdout(&out), "", "{template}: nothing on stdout");
        assert!(stderr(&out).contains(named), "{template}: {}", stderr(&out));
    }
    let out = render_local("x", r#"{"role": "user"}"#, &[]);
    assert!(stderr(&out).contains("messages must be a list of objects"), "{}", stderr(&out));
    let out = render_local("x", messages, &["--var", "add_generation_prompt=false"]);
    assert!(!out.status.success(), "a variable with its own flag is refused");
    assert!(stderr(&out).contains("add_generation_prompt cannot be set"), "{}", stderr(&out));
}
