//! Chat templates rendered in Rust must equal what Python transformers renders
//! (fixtures/goldens/chat/*.json, made by tools/make_chat_goldens.py from the real templates in
//! the shared data folder named by BENCHGEN_DATA_DIR).

use benchgen::model::chat::{ChatTemplate, ChatTemplateError, Message};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(serde::Deserialize)]
struct Golden {
    generated_by: String,
    template_source: String,
    special_tokens: BTreeMap<String, String>,
    /// The date strftime_now gave when the golden was made; replaced by today's before comparing.
    today: Option<Today>,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Today {
    format: String,
    value: String,
}

#[derive(serde::Deserialize)]
struct Case {
    messages: Vec<Message>,
    add_generation_prompt: bool,
    rendered: String,
}

/// The shared data folder, or None (after saying so) when these tests cannot run here.
fn data_file(relative: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("BENCHGEN_DATA_DIR") else {
        eprintln!("SKIPPED: BENCHGEN_DATA_DIR not set; chat-template goldens need ../shared/data");
        return None;
    };
    let path = Path::new(&dir).join(relative);
    if !path.is_file() {
        eprintln!(
            "SKIPPED: {} not found; chat-template goldens need ../shared/data",
            path.display()
        );
        return None;
    }
    Some(path)
}

fn load_golden(name: &str) -> Golden {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/goldens/chat")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad golden {}: {e}", path.display()))
}

fn first_difference(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| a.len().min(b.len()))
}

/// Renders every golden case and fails listing each mismatch with its first differing byte.
fn check_golden(name: &str) {
    let golden = load_golden(name);
    assert!(!golden.cases.is_empty(), "{name}: golden has no cases");
    let Some(path) = data_file(&golden.template_source) else {
        return;
    };
    let text = std::fs::read_to_string(&path).expect("template file readable");
    let template = if golden.template_source.ends_with("tokenizer_config.json") {
        ChatTemplate::from_tokenizer_config(&text)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: tokenizer_config.json has no chat_template"))
    } else {
        let token = |k: &str| golden.special_tokens.get(k).map(String::as_str);
        ChatTemplate::new(&text, token("bos_token"), token("eos_token"))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let mut failures = Vec::new();
    for (i, case) in golden.cases.iter().enumerate() {
        let mut expected = case.rendered.clone();
        if let Some(today) = &golden.today {
            let now = chrono::Local::now().format(&today.format).to_string();
            expected = expected.replace(&today.value, &now);
        }
        match template.render(&case.messages, case.add_generation_prompt) {
            Ok(got) if got == expected => {}
            Ok(got) => {
                let at = first_difference(&got, &expected);
                failures.push(format!(
                    "case {i} (add_generation_prompt={}): first difference at byte {at}\n  rust:   {got:?}\n  python: {expected:?}",
                    case.add_generation_prompt
                ));
            }
            Err(e) => failures.push(format!("case {i}: render failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{name} ({}) differs from {}:\n{}",
        golden.template_source,
        golden.generated_by,
        failures.join("\n")
    );
}

#[test]
fn tinyllama_matches_transformers() {
    check_golden("tinyllama");
}

#[test]
fn phi3_matches_transformers() {
    check_golden("phi3");
}

#[test]
fn qwen25_matches_transformers() {
    check_golden("qwen2.5");
}

#[test]
fn qwen3_matches_transformers() {
    check_golden("qwen3");
}

#[test]
fn smollm3_matches_transformers() {
    check_golden("smollm3");
}

fn user(content: &str) -> Vec<Message> {
    vec![Message { role: "user".into(), content: content.into() }]
}

#[test]
fn config_without_chat_template_is_none() {
    let config = r#"{"bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false}}"#;
    assert!(ChatTemplate::from_tokenizer_config(config).expect("valid config").is_none());
    let config = r#"{"chat_template": null}"#;
    assert!(ChatTemplate::from_tokenizer_config(config).expect("valid config").is_none());
}

#[test]
fn bad_config_is_an_error() {
    assert!(matches!(
        ChatTemplate::from_tokenizer_config("{not json"),
        Err(ChatTemplateError::Config(_))
    ));
    assert!(matches!(
        ChatTemplate::from_tokenizer_config(r#"{"chat_template": 3}"#),
        Err(ChatTemplateError::Config(_))
    ));
    assert!(matches!(
        ChatTemplate::from_tokenizer_config(r#"{"chat_template": []}"#),
        Err(ChatTemplateError::Config(_))
    ));
}

#[test]
fn raise_exception_carries_the_templates_message() {
    let t = ChatTemplate::new(
        "{% if messages[0].role != 'system' %}{{ raise_exception('nope') }}{% endif %}ok",
        None,
        None,
    )
    .expect("compiles");
    let err = t.render(&user("hi"), false).expect_err("must raise");
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(matches!(&err, ChatTemplateError::Raised(m) if m == "nope"), "{err:?}");
}

#[test]
fn syntax_error_names_the_line() {
    let err = ChatTemplate::new("fine\n{% if messages %}\n{{ x ++ }}\n", None, None)
        .expect_err("must not compile");
    match &err {
        ChatTemplateError::Syntax { line, .. } => assert_eq!(*line, Some(3), "{err}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(err.to_string().contains("line 3"), "{err}");
}

#[test]
fn render_error_is_reported_not_panicked() {
    let t = ChatTemplate::new("{{ messages[0].content + none }}", None, None).expect("compiles");
    let err = t.render(&user("hi"), false).expect_err("str + None fails in Jinja2 too");
    assert!(matches!(err, ChatTemplateError::Render { line: Some(1), .. }), "{err:?}");
}

#[test]
fn list_form_chat_template_picks_default() {
    let config = r#"{
        "chat_template": [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{{ eos_token }}"}
        ],
        "bos_token": {"content": "<s>", "special": true},
        "eos_token": "</s>"
    }"#;
    let t =
        ChatTemplate::from_tokenizer_config(config).expect("valid config").expect("has a template");
    assert_eq!(t.render(&user("hi"), false).expect("renders"), "<s>[user:hi]</s>");

    let config =
        r#"{"chat_template": [{"name": "a", "template": "A"}, {"name": "b", "template": "B"}]}"#;
    let t =
        ChatTemplate::from_tokenizer_config(config).expect("valid config").expect("has a template");
    assert_eq!(t.render(&user("hi"), false).expect("renders"), "A");
}

#[test]
fn tools_is_none_and_generation_prompt_is_passed() {
    let t = ChatTemplate::new(
        "{{ tools is none }}|{{ tools is defined }}|{{ add_generation_prompt }}|{{ bos_token is defined }}",
        None,
        Some("</s>"),
    )
    .expect("compiles");
    assert_eq!(t.render(&user("hi"), true).expect("renders"), "True|True|True|False");
}
