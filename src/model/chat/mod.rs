//! Hugging Face chat templates, rendered the way `transformers` renders them.
//!
//! Prompts are only comparable with published results when they are byte-identical to what
//! `tokenizer.apply_chat_template(messages, tokenize=False, ...)` produces, so this module copies
//! transformers' Jinja2 set-up (trim_blocks, lstrip_blocks, loop controls, `raise_exception`,
//! its `tojson`, `strftime_now`, the `{% generation %}` tag) and patches the places where
//! minijinja differs from Jinja2 on what templates actually use: Python's string methods and
//! Python's way of printing `None`, booleans, floats, lists and dicts; `for` over None and
//! `none is iterable` fail as in Python; `map`/`select`/`reject`/`selectattr`/`rejectattr` give
//! generators (no length, not JSON serializable). [`RenderInput`] carries what tool-using and
//! reasoning templates take (any message fields, tools, extra variables), JSON objects keeping
//! their key order as Python dicts do. llama.cpp's collection of real templates is the test
//! (tests/suite/template_goldens.rs).
//!
//! Known differences, none of which those templates hit with the tested conversations except the
//! first: a str added to a `|safe` string is not HTML-escaped (Jinja2's Markup escapes it);
//! dict literals written in a template iterate (and `tojson`) in sorted key order, not in
//! insertion order (minijinja's `preserve_order` feature would change every map in the crate);
//! `list + list` is a lazy sequence without indexing; tuples print as lists; `strftime_now`
//! rejects directives chrono lacks (e.g. `%Q`) where Python copies them through, and `%Z` gives
//! an offset, not a zone name; a list-form chat_template without "default" uses its first entry
//! where transformers refuses.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use minijinja::value::{from_args, Enumerator, Kwargs, Object, ObjectRepr, Rest, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, Value};
use serde::Serialize;

mod input;
mod pymethods;
mod pyvalue;
mod tags;
mod tojson;

pub use input::{RenderInput, TemplateValue};
use pymethods::*;
use pyvalue::*;
use tags::*;
use tojson::*;

const TEMPLATE_NAME: &str = "chat_template";

/// The context variable holding a fixed time for `strftime_now` ([`RenderInput::now`]); a name no
/// template uses, so that the function can read it from the render's state.
const NOW_VAR: &str = "__benchgen_strftime_now__";

/// The special tokens transformers passes to every template (its `special_tokens_map`).
const NAMED_TOKENS: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

/// One chat turn. Only text content: multimodal parts and tool calls are out of scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A compiled chat template together with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    tokens: Vec<(&'static str, String)>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate").field("tokens", &self.tokens).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    /// The tokenizer_config.json text could not be used (not JSON, wrong types, no usable entry).
    #[error("tokenizer_config.json: {0}")]
    Config(String),
    #[error("chat template has a syntax error{}: {message}", at_line(*.line))]
    Syntax { line: Option<usize>, message: String },
    /// The template called `raise_exception(message)`, usually to reject the conversation.
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    #[error("chat template failed to render{}: {message}", at_line(*.line))]
    Render { line: Option<usize>, message: String },
    /// The messages, tools or variables handed to the template are not what it takes.
    #[error("chat template input: {0}")]
    Input(String),
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

impl ChatTemplate {
    /// From the text of a tokenizer_config.json: its `chat_template` (a string, or a list of
    /// `{"name", "template"}` objects: "default" is taken, else the first), plus the special
    /// tokens (each a string or an object with "content"). `Ok(None)` when there is no
    /// chat_template, because base models legitimately have none.
    pub fn from_tokenizer_config(json: &str) -> Result<Option<ChatTemplate>, ChatTemplateError> {
        let config: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| ChatTemplateError::Config(format!("not valid JSON: {e}")))?;
        let config = config
            .as_object()
            .ok_or_else(|| ChatTemplateError::Config("top level is not an object".into()))?;
        let template = match config.get("chat_template") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => s.as_str(),
            Some(serde_json::Value::Array(list)) => pick_named_template(list)?,
            Some(other) => {
                let found = json_type(other);
                let msg =
                    format!("chat_template must be a string or a list of templates, not {found}");
                return Err(ChatTemplateError::Config(msg));
            }
        };
        let mut tokens = Vec::new();
        for key in NAMED_TOKENS {
            let value = match config.get(key) {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Object(o)) => match o.get("content") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    _ => {
                        return Err(ChatTemplateError::Config(format!(
                            "{key} is an object without a string \"content\""
                        )))
                    }
                },
                Some(other) => {
                    return Err(ChatTemplateError::Config(format!(
                        "{key} must be a string or an object with \"content\", not {}",
                        json_type(other)
                    )))
                }
            };
            tokens.push((key, value));
        }
        Self::compile(template, tokens).map(Some)
    }

    /// A bare template (e.g. the text of chat_template.jinja) with explicit special tokens.
    pub fn new(
        template: &str,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<ChatTemplate, ChatTemplateError> {
        let tokens = [("bos_token", bos_token), ("eos_token", eos_token)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.to_string())))
            .collect();
        Self::compile(template, tokens)
    }

    /// Renders as transformers' `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` does, with no tools and no extra template variables.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let messages: Vec<Value> =
            messages.iter().map(|m| Value::from_object(MessageView::new(m))).collect();
        self.render_context(Value::from(messages), add_generation_prompt, None, &[], None)
    }

    /// Renders as transformers' `apply_chat_template(messages, tools=..., tokenize=False,
    /// add_generation_prompt=..., **vars)` does: any message fields, the tools list, extra
    /// variables (which override the special tokens given at construction).
    pub fn render_input(&self, input: &RenderInput) -> Result<String, ChatTemplateError> {
        self.render_context(
            Value::from(input.messages.clone()),
            input.add_generation_prompt,
            input.tools.clone(),
            &input.vars,
            input.now,
        )
    }

    /// The context transformers builds: the special tokens, the messages, the generation
    /// prompt flag, `tools` and `documents` (None when not given), then the extra variables.
    fn render_context(
        &self,
        messages: Value,
        add_generation_prompt: bool,
        tools: Option<Value>,
        vars: &[(String, Value)],
        now: Option<chrono::NaiveDateTime>,
    ) -> Result<String, ChatTemplateError> {
        let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
        for (key, value) in &self.tokens {
            ctx.insert(key, Value::from(value.as_str()));
        }
        ctx.insert("messages", messages);
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        // transformers passes these explicitly as None when the caller gives none.
        ctx.insert("tools", tools.unwrap_or(Value::from(())));
        ctx.insert("documents", Value::from(()));
        for (name, value) in vars {
            ctx.insert(name, value.clone());
        }
        if let Some(now) = now {
            ctx.insert(NOW_VAR, Value::from(now.format("%Y-%m-%dT%H:%M:%S").to_string()));
        }
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|e| render_error(&e))?;
        template.render(ctx).map_err(|e| render_error(&e))
    }

    fn compile(
        template: &str,
        tokens: Vec<(&'static str, String)>,
    ) -> Result<ChatTemplate, ChatTemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        env.set_unknown_method_callback(python_method);
        env.set_formatter(|out, _state, value| {
            write!(out, "{}", PyStr(value)).map_err(Error::from)
        });
        env.add_filter("tojson", tojson_filter);
        env.add_filter("string", |v: &Value| PyStr(v).to_string());
        env.add_filter("trim", |v: &Value, chars: Option<&str>| {
            py_strip(&PyStr(v).to_string(), chars, true, true).to_string()
        });
        env.add_filter("length", py_length);
        env.add_filter("count", py_length);
        env.add_function("raise_exception", raise_exception);
        env.add_function(ITERABLE_CHECK, iterable_check);
        env.add_test("iterable", is_iterable);
        add_generator_filters(&mut env);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, rewrite_tags(template)).map_err(|e| {
            ChatTemplateError::Syntax {
                line: e.line(),
                message: e.detail().unwrap_or("invalid template").to_string(),
            }
        })?;
        Ok(ChatTemplate { env, tokens })
    }
}

fn pick_named_template(list: &[serde_json::Value]) -> Result<&str, ChatTemplateError> {
    let mut named = Vec::with_capacity(list.len());
    for entry in list {
        let name = entry.get("name").and_then(|n| n.as_str());
        let template = entry.get("template").and_then(|t| t.as_str());
        match template {
            Some(t) => named.push((name, t)),
            None => {
                return Err(ChatTemplateError::Config(
                    "chat_template list entry has no string \"template\"".into(),
                ))
            }
        }
    }
    named
        .iter()
        .find(|(name, _)| *name == Some("default"))
        .or(named.first())
        .map(|(_, t)| *t)
        .ok_or_else(|| ChatTemplateError::Config("chat_template is an empty list".into()))
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The error message without minijinja's "(in chat_template:N)" suffix, which `line` carries.
fn detail(e: &Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn render_error(e: &Error) -> ChatTemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(raised) = err.downcast_ref::<RaisedException>() {
            return ChatTemplateError::Raised(raised.0.clone());
        }
        source = err.source();
    }
    ChatTemplateError::Render { line: e.line(), message: detail(e) }
}

/// Marks an error as coming from the template's own `raise_exception`, so it can be reported
/// as the template's message rather than as an engine failure.
#[derive(Debug)]
struct RaisedException(String);

impl fmt::Display for RaisedException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

fn raise_exception(message: &Value) -> Result<Value, Error> {
    let message = PyStr(message).to_string();
    Err(Error::new(ErrorKind::InvalidOperation, message.clone())
        .with_source(RaisedException(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str) -> String {
        let t = ChatTemplate::new(template, Some("<s>"), Some("</s>")).expect("compiles");
        let messages = [Message { role: "user".into(), content: "hi".into() }];
        t.render(&messages, false).expect("renders")
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        // Expected strings are Python's json.dumps output for the same values and options.
        assert_eq!(
            render(r#"{{ {"a": "café <&>", "b": [1, 2.5, none, true]} | tojson }}"#),
            r#"{"a": "café <&>", "b": [1, 2.5, null, true]}"#
        );
        assert_eq!(
            render(r#"{{ {"a": [1, {"x": []}], "b": {}} | tojson(indent=2) }}"#),
            "{\n  \"a\": [\n    1,\n    {\n      \"x\": []\n    }\n  ],\n  \"b\": {}\n}"
        );
        assert_eq!(
            render(r#"{{ "é\n\u0001😀" | tojson(ensure_ascii=true) }}"#),
            r#""\u00e9\n\u0001\ud83d\ude00""#
        );
        assert_eq!(render(r#"{{ [1, 2] | tojson(separators=(",", ":")) }}"#), "[1,2]");
        assert_eq!(render("{{ messages | tojson }}"), r#"[{"role": "user", "content": "hi"}]"#);
        assert_eq!(
            render("{{ [1e20, 0.0001, 1e-05, -0.0] | tojson }}"),
            "[1e+20, 0.0001, 1e-05, -0.0]"
        );
    }

    #[test]
    fn tojson_rejects_unknown_options_and_undefined() {
        let t = ChatTemplate::new("{{ [1] | tojson(bogus=1) }}", None, None).expect("compiles");
        assert!(t.render(&[], false).is_err());
        let t = ChatTemplate::new("{{ nothing | tojson }}", None, None).expect("compiles");
        assert!(t.render(&[], false).is_err());
    }

    #[test]
    fn strftime_matches_python() {
        use chrono::TimeZone;
        let t = chrono::Utc.with_ymd_and_hms(2025, 6, 5, 14, 7, 9).single().expect("valid date");
        // Python: datetime(2025, 6, 5, 14, 7, 9).strftime(...)
        assert_eq!(strftime(&t, "%d %B %Y").expect("formats"), "05 June 2025");
        assert_eq!(
            strftime(&t, "%Y-%m-%d %H:%M:%S %a %b %A %j %I %p").expect("formats"),
            "2025-06-05 14:07:09 Thu Jun Thursday 156 02 PM"
        );
        assert!(strftime(&t, "%Q").is_err());
    }

    #[test]
    fn strftime_now_renders_today() {
        let today = strftime(&chrono::Local::now(), "%d %B %Y").expect("formats");
        assert_eq!(render(r#"{{ strftime_now("%d %B %Y") }}"#), today);
    }

    #[test]
    fn prints_values_like_python() {
        assert_eq!(
            render("{{ none }} {{ true }} {{ [1, 'a', none, 1.5] }} {{ {'k': false} }} {{ 1e20 }}"),
            "None True [1, 'a', None, 1.5] {'k': False} 1e+20"
        );
        assert_eq!(render("{{ messages[0] }}"), "{'role': 'user', 'content': 'hi'}");
        assert_eq!(render("{{ [\"it's\"] | string }}"), "[\"it's\"]");
    }

    #[test]
    fn python_string_methods() {
        assert_eq!(
            render("{{ ' \x1fa b\n'.strip() }}|{{ 'xxaxx'.rstrip('x') }}|{{ '  a  b '.split() }}|{{ 'a,,b'.split(',') }}"),
            "a b|xxa|['a', 'b']|['a', '', 'b']"
        );
        assert_eq!(
            render("{{ ' a b  c '.split(none, 1) }}|{{ ' a b  c '.rsplit(none, 1) }}|{{ 'a-b-c'.rsplit('-', 1) }}"),
            "['a', 'b  c ']|[' a b', 'c']|['a-b', 'c']"
        );
        assert_eq!(render("{{ \"they're 1st\".title() }}"), "They'Re 1St");
        assert_eq!(render("{{ ' \x1f x \n'|trim }}|{{ 'xxaxx'|trim('x') }}"), "x|a");
        assert_eq!(render("{{ 'abc'.removeprefix('a') }}{{ 'abc'.removesuffix('c') }}"), "bcab");
        assert_eq!(render("{{ 'Ab'.upper() }}{{ 'x'.startswith(('y', 'x')) }}"), "ABTrue");
        assert_eq!(
            render("{{ messages[0].get('role') }}{% for k, v in messages[0].items() %};{{ k }}={{ v }}{% endfor %}"),
            "user;role=user;content=hi"
        );
    }

    #[test]
    fn lenient_undefined_like_jinja2() {
        assert_eq!(render("{{ missing|length }}{{ messages|count }}"), "01");
        assert_eq!(
            render("[{{ missing }}]{% for x in missing %}x{% endfor %}{{ 'a' in missing }}"),
            "[]False"
        );
        let t = ChatTemplate::new("{{ missing.attr }}", None, None).expect("compiles");
        assert!(t.render(&[], false).is_err());
    }

    #[test]
    fn generation_tags_render_their_body() {
        assert_eq!(
            rewrite_tags("a{%- generation -%}b{% endgeneration %}c{% if x %}"),
            "a{%- with -%}b{% endwith %}c{% if x %}"
        );
        let untouched = "{{ '{% generation %}' }}{# {% generation %} #}{ {%+ endgeneration";
        assert_eq!(rewrite_tags(untouched), untouched);
        assert_eq!(
            render("{% for m in messages %}\n  {% generation %}\n{{ m.content }}\n  {% endgeneration %}\n{% endfor %}"),
            "hi\n"
        );
    }

    #[test]
    fn loop_controls_work() {
        assert_eq!(
            render("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
            "02"
        );
    }

    fn render_json(template: &str, messages: &str) -> Result<String, ChatTemplateError> {
        let t = ChatTemplate::new(template, None, None).expect("compiles");
        let messages = TemplateValue::from_json(messages).expect("valid JSON");
        t.render_input(&RenderInput::new(&messages).expect("a list of objects"))
    }

    #[test]
    fn for_loops_refuse_none_like_jinja2() {
        assert_eq!(
            checked_for_loop(" for k, v in x.items() if v recursive "),
            Some(format!("for k, v in {ITERABLE_CHECK}(x.items()) if v recursive"))
        );
        assert_eq!(
            checked_for_loop("for t in tools|selectattr('a', 'in', ['if'])"),
            Some(format!("for t in {ITERABLE_CHECK}(tools|selectattr('a', 'in', ['if']))"))
        );
        assert_eq!(checked_for_loop("format x"), None);
        assert_eq!(checked_for_loop("if x in y"), None);
        assert!(render_json("{% for t in tools %}{% endfor %}", "[]").is_err());
        assert_eq!(
            render_json("{% for t in nothing %}x{% endfor %}{{ tools is iterable }}", "[]")
                .expect("undefined iterates as empty"),
            "False"
        );
    }

    #[test]
    fn filters_that_make_generators_in_jinja2_act_like_them() {
        let err =
            render_json("{{ [1, 2] | map('string') | tojson }}", "[]").expect_err("generator");
        assert!(err.to_string().contains("generator is not JSON serializable"), "{err}");
        assert!(render_json("{{ [1] | select | length }}", "[]").is_err());
        assert_eq!(
            render_json(
                "{{ [1, 2] | map('string') | list | tojson }}{{ 'yes' if [] | reject else 'no' }}",
                "[]"
            )
            .expect("renders"),
            r#"["1", "2"]yes"#
        );
        assert_eq!(
            render_json("{{ ([1] + [2]) | tojson }}", "[]").expect("a list, not a generator"),
            "[1, 2]"
        );
    }

    #[test]
    fn messages_keep_key_order_and_are_normalised_like_transformers() {
        // {"thinking": r, **message, "reasoning_content": r} after dropping None values.
        let rendered = render_json(
            "{{ messages[0] | tojson }}|{{ messages[1] }}",
            r#"[{"role": "assistant", "z": 1, "a": null, "reasoning": "r", "content": "c"},
                {"role": "user", "reasoning_content": "q", "b": {"y": 1, "x": 2}}]"#,
        )
        .expect("renders");
        assert_eq!(
            rendered,
            r#"{"thinking": "r", "role": "assistant", "z": 1, "reasoning": "r", "content": "c", "reasoning_content": "r"}|{'thinking': 'q', 'role': 'user', 'reasoning_content': 'q', 'b': {'y': 1, 'x': 2}}"#
        );
        assert!(TemplateValue::from_json(r#"{"a": 1"#).is_err());
        assert_eq!(TemplateValue::from_arg("<s>").to_string(), r#""<s>""#);
        assert_eq!(TemplateValue::from_arg("false").to_string(), "false");
        let not_list = TemplateValue::from_json(r#"{"role": "user"}"#).expect("valid JSON");
        assert!(matches!(RenderInput::new(&not_list), Err(ChatTemplateError::Input(_))));
    }

    #[test]
    fn strftime_now_can_be_pinned() {
        let t = ChatTemplate::new(r#"{{ strftime_now("%d %B %Y %H:%M") }}"#, None, None)
            .expect("compiles");
        let now = chrono::NaiveDate::from_ymd_opt(2025, 6, 5)
            .and_then(|d| d.and_hms_opt(14, 7, 9))
            .expect("valid");
        let messages = TemplateValue::from_json("[]").expect("valid JSON");
        let input = RenderInput::new(&messages).expect("a list").now(now);
        assert_eq!(t.render_input(&input).expect("renders"), "05 June 2025 14:07");
    }
}
