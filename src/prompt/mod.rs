//! Items → prompt strings: the environment's minijinja template, then, when the environment
//! asks for it and the model has one, the model's chat template.

use minijinja::{Environment as Jinja, UndefinedBehavior};

pub mod fewshot;
#[cfg(test)]
mod fewshot_tests;

use crate::env::manifest::{PhaseSpec, PromptSpec};
use crate::env::{ChatMode, Environment, Item};
use crate::error::{Error, PromptError, Result};
use crate::model::chat::{ChatTemplate, Message};
use fewshot::Fewshot;

/// A prompt ready for the tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub text: String,
    /// False when a chat template already wrote the special tokens into `text`.
    pub add_special_tokens: bool,
}

pub struct PromptBuilder {
    jinja: Jinja<'static>,
    system: String,
    chat: ChatMode,
    /// The environment, for messages.
    origin: String,
    fewshot: Option<Fewshot>,
}

impl PromptBuilder {
    /// Compiles the template once; `origin` names the environment in errors.
    pub fn new(spec: &PromptSpec, origin: &str) -> Result<Self> {
        let mut jinja = Jinja::new();
        // A typo in a field name must fail loudly, not render an empty string into every prompt.
        jinja.set_undefined_behavior(UndefinedBehavior::Strict);
        jinja.set_keep_trailing_newline(true);
        jinja
            .add_template_owned("prompt", spec.template.clone())
            .map_err(|e| Error::env(origin, format!("environment.toml [prompt] template: {e}")))?;
        jinja.add_template_owned("choice", spec.choice_template.clone()).map_err(|e| {
            Error::env(origin, format!("environment.toml [prompt] choice_template: {e}"))
        })?;
        Ok(Self {
            jinja,
            system: spec.system.clone(),
            chat: spec.chat,
            origin: origin.to_string(),
            fewshot: None,
        })
    }

    /// Puts solved examples ahead of every item (`None`: zero-shot).
    pub fn with_fewshot(mut self, fewshot: Option<Fewshot>) -> Result<Self> {
        if let Some(f) = &fewshot {
            for (name, text) in [("shot_text", &f.spec.template), ("shot_target", &f.spec.target)] {
                if let Some(t) = text {
                    self.jinja.add_template_owned(name, t.clone()).map_err(|e| {
                        Error::env(
                            &self.origin,
                            format!("environment.toml [fewshot] {}: {e}", fewshot_key(name)),
                        )
                    })?;
                }
            }
        }
        self.fewshot = fewshot;
        Ok(self)
    }

    /// Each few-shot example of `item` as (question, answer), in prompt order. `index` is the
    /// item's position in its phase's full item order (what lm-eval's sampler goes by).
    pub fn examples(&self, index: usize, item: &Item) -> Result<Vec<(String, String)>> {
        let Some(f) = &self.fewshot else { return Ok(Vec::new()) };
        f.select(index, item)
            .into_iter()
            .map(|ex| {
                Ok((self.example_part(ex, "shot_text")?, self.example_part(ex, "shot_target")?))
            })
            .collect()
    }

    fn example_part(&self, ex: &Item, name: &str) -> Result<String> {
        let Ok(tmpl) = self.jinja.get_template(name) else {
            return Ok(match name {
                "shot_text" => self.render_body(ex)?,
                // lm-eval's doc_to_target for multiple choice is the right option's text.
                _ => ex.target_index.and_then(|i| ex.choices.get(i)).unwrap_or(&ex.target).clone(),
            });
        };
        tmpl.render(&ex.fields).map_err(|e| {
            Error::env(
                &self.origin,
                format!(
                    "few-shot example {}: cannot render environment.toml [fewshot] {}: {e}",
                    ex.id,
                    fewshot_key(name)
                ),
            )
        })
    }

    /// The item's text with its few-shot examples ahead of it, as lm-evaluation-harness joins
    /// them: question, target delimiter, answer, separator, for each; then the item.
    pub fn render_text(&self, index: usize, item: &Item) -> Result<String> {
        let body = self.render_body(item)?;
        let Some(f) = &self.fewshot else { return Ok(body) };
        let mut text = String::new();
        for (question, answer) in self.examples(index, item)? {
            text.push_str(&question);
            text.push_str(&f.spec.target_delimiter);
            text.push_str(&answer);
            text.push_str(&f.spec.separator);
        }
        text.push_str(&body);
        Ok(text)
    }

    /// The item's text from the environment's template alone.
    pub fn render_body(&self, item: &Item) -> Result<String> {
        let tmpl = self
            .jinja
            .get_template("prompt")
            .map_err(|source| PromptError::NoTemplate { name: "prompt", source })?;
        tmpl.render(&item.fields).map_err(|e| {
            // Name the fields the template uses that the item lacks (a typo, usually).
            let mut missing: Vec<String> = tmpl
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !item.fields.contains_key(v))
                .collect();
            missing.sort();
            let hint = if missing.is_empty() {
                String::new()
            } else {
                let mut fields: Vec<&str> = item.fields.keys().map(String::as_str).collect();
                fields.sort();
                format!(
                    "; the item has no field {} (its fields: {})",
                    missing.join(", "),
                    fields.join(", ")
                )
            };
            Error::env(
                &self.origin,
                format!(
                    "item {}: cannot render environment.toml [prompt] template: {e}{hint}",
                    item.id
                ),
            )
        })
    }

    /// The continuation scored for option `index` of a multiple-choice item.
    pub fn render_choice(&self, item: &Item, index: usize) -> Result<String> {
        let tmpl = self
            .jinja
            .get_template("choice")
            .map_err(|source| PromptError::NoTemplate { name: "choice", source })?;
        let ctx = minijinja::context! {
            choice => item.choices.get(index),
            label => item.choice_labels.get(index),
            index => index,
        };
        tmpl.render(ctx)
            .map_err(|source| PromptError::Choice { item: item.id.clone(), source }.into())
    }

    /// Whether prompts go through `template`: always with `chat = true` (an error when the model
    /// has none), when present with `auto`, never with `false`.
    pub fn chat_template<'t>(
        &self,
        template: Option<&'t ChatTemplate>,
        model: &str,
    ) -> Result<Option<&'t ChatTemplate>> {
        match (self.chat, template) {
            (ChatMode::Never, _) | (ChatMode::Auto, None) => Ok(None),
            (_, Some(t)) => Ok(Some(t)),
            (ChatMode::Always, None) => Err(Error::model(
                model,
                "the environment sets chat = true but the model has no chat template \
                 (tokenizer_config.json chat_template or chat_template.jinja)",
            )),
        }
    }

    /// The environment's `[prompt] chat` setting.
    pub fn chat_mode(&self) -> ChatMode {
        self.chat
    }

    /// The conversation a chat template (the model's, or a server's) turns into the prompt:
    /// the system prompt, if any, then each few-shot example as a user turn answered by an
    /// assistant turn (lm-eval's `--fewshot_as_multiturn`), then the item as the user's turn.
    pub fn messages(&self, index: usize, item: &Item) -> Result<Vec<Message>> {
        let mut messages = Vec::new();
        if !self.system.is_empty() {
            messages.push(Message { role: "system".into(), content: self.system.clone() });
        }
        for (question, answer) in self.examples(index, item)? {
            messages.push(Message { role: "user".into(), content: question });
            messages.push(Message { role: "assistant".into(), content: answer });
        }
        messages.push(Message { role: "user".into(), content: self.render_body(item)? });
        Ok(messages)
    }

    /// The full prompt: system and user turns through the chat template, or plain text with
    /// the system prompt ahead of it. `index`: as for [`Self::examples`].
    pub fn render(&self, index: usize, item: &Item, chat: Option<&ChatTemplate>) -> Result<Prompt> {
        match chat {
            Some(t) => {
                let text = t.render(&self.messages(index, item)?, true).map_err(|e| {
                    PromptError::Chat { item: item.id.clone(), source: Box::new(e) }
                })?;
                Ok(Prompt { text, add_special_tokens: false })
            }
            None => {
                let body = self.render_text(index, item)?;
                let text = if self.system.is_empty() {
                    body
                } else {
                    format!("{}\n\n{body}", self.system)
                };
                Ok(Prompt { text, add_special_tokens: true })
            }
        }
    }
}

/// The `[fewshot]` key an example template comes from.
fn fewshot_key(template: &str) -> &'static str {
    if template == "shot_text" {
        "template"
    } else {
        "target"
    }
}

/// Every prompt problem of a phase's `items` (`env validate`): a template, few-shot example
/// or option that does not render. (The data's own problems are `Environment::check_phase`'s.)
pub fn check_renders(env: &Environment, phase: &PhaseSpec, items: &[Item]) -> Vec<Error> {
    let mut problems = Vec::new();
    let builder = PromptBuilder::new(&env.manifest.prompt, &env.origin)
        .and_then(|b| b.with_fewshot(fewshot::for_phase(env, phase)?));
    match builder {
        Ok(builder) => {
            for (index, it) in items.iter().enumerate() {
                // With the examples: their templates must render too.
                problems.extend(builder.render_text(index, it).err());
                problems.extend(
                    (0..it.choices.len()).filter_map(|c| builder.render_choice(it, c).err()),
                );
            }
        }
        Err(e) => problems.push(e),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: serde_json::Value) -> Item {
        let serde_json::Value::Object(fields) = v else { panic!("object") };
        Item {
            id: "x".into(),
            fields,
            target: String::new(),
            targets: vec![],
            choices: vec![],
            choice_labels: vec![],
            target_index: None,
        }
    }

    fn spec(template: &str, chat: ChatMode) -> PromptSpec {
        PromptSpec {
            template: template.into(),
            system: String::new(),
            chat,
            choice_template: " {{ choice }}".into(),
        }
    }

    fn zephyr() -> ChatTemplate {
        let tmpl =
            "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}\
                    {% if add_generation_prompt %}<|assistant|>\n{% endif %}";
        ChatTemplate::new(tmpl, Some("<s>"), Some("</s>")).unwrap()
    }

    #[test]
    fn renders_item_fields_and_refuses_unknown_ones() {
        let b = PromptBuilder::new(&spec("Q: {{ question }}\nA:", ChatMode::Auto), "e").unwrap();
        let p = b.render(0, &item(json!({"question": "2+2?"})), None).unwrap();
        assert_eq!(p, Prompt { text: "Q: 2+2?\nA:".into(), add_special_tokens: true });
        let b = PromptBuilder::new(&spec("{{ questoin }}", ChatMode::Auto), "e").unwrap();
        let err = b.render(0, &item(json!({"question": "2+2?"})), None).unwrap_err().to_string();
        assert!(err.contains("item x") && err.contains("undefined"), "{err}");
    }

    #[test]
    fn bad_template_syntax_is_an_environment_error() {
        let err = PromptBuilder::new(&spec("{{ question ", ChatMode::Auto), "envdir")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("envdir") && err.contains("template"), "{err}");
    }

    #[test]
    fn system_prompt_goes_first_as_text_or_as_a_turn() {
        let mut s = spec("{{ q }}", ChatMode::Auto);
        s.system = "Answer briefly.".into();
        let b = PromptBuilder::new(&s, "e").unwrap();
        let it = item(json!({"q": "hi"}));
        assert_eq!(b.render(0, &it, None).unwrap().text, "Answer briefly.\n\nhi");
        let t = zephyr();
        let chat = b.chat_template(Some(&t), "m").unwrap();
        let p = b.render(0, &it, chat).unwrap();
        assert_eq!(p.text, "<|system|>\nAnswer briefly.</s>\n<|user|>\nhi</s>\n<|assistant|>\n");
        assert!(!p.add_special_tokens);
        let messages = b.messages(0, &it).unwrap();
        let roles: Vec<(&str, &str)> =
            messages.iter().map(|m| (m.role.as_str(), m.content.as_str())).collect();
        assert_eq!(roles, [("system", "Answer briefly."), ("user", "hi")]);
    }

    #[test]
    fn choices_render_through_their_template() {
        let mut it = item(json!({"q": "hi"}));
        it.choices = vec!["red".into(), "blue".into()];
        it.choice_labels = vec!["A".into(), "B".into()];
        let b = PromptBuilder::new(&spec("{{ q }}", ChatMode::Auto), "e").unwrap();
        assert_eq!(b.render_choice(&it, 1).unwrap(), " blue");
        let mut s = spec("{{ q }}", ChatMode::Auto);
        s.choice_template = " {{ label }}".into();
        let b = PromptBuilder::new(&s, "e").unwrap();
        assert_eq!(b.render_choice(&it, 0).unwrap(), " A");
    }

    fn gsm_item(id: &str, q: &str, a: &str) -> Item {
        let mut it = item(json!({"question": q, "answer": a}));
        it.id = id.into();
        it.target = a.into();
        it
    }

    fn two_shot(chat: ChatMode) -> PromptBuilder {
        let spec = crate::env::FewshotSpec {
            phase: "train".into(),
            n: 2,
            sampler: crate::env::FewshotSampler::FirstN,
            seed: 1234,
            template: None,
            target: None,
            target_delimiter: " ".into(),
            separator: "\n\n".into(),
        };
        let pool = vec![
            gsm_item("0", "1+1?", "1+1=2\n#### 2"),
            gsm_item("1", "2*3?", "2*3=6\n#### 6"),
            gsm_item("2", "9-4?", "9-4=5\n#### 5"),
        ];
        let fewshot = Fewshot::new(spec, 2, pool, false);
        PromptBuilder::new(&spec_of("Question: {{ question }}\nAnswer:", chat), "e")
            .unwrap()
            .with_fewshot(Some(fewshot))
            .unwrap()
    }

    fn spec_of(template: &str, chat: ChatMode) -> PromptSpec {
        spec(template, chat)
    }

    #[test]
    fn two_shot_plain_text_joins_as_lm_eval() {
        let b = two_shot(ChatMode::Never);
        let it = gsm_item("q", "5+5?", "#### 10");
        // lm-eval: doc_to_text + target_delimiter + doc_to_target per example, each followed by
        // fewshot_delimiter, then the doc's doc_to_text.
        let want = "Question: 1+1?\nAnswer: 1+1=2\n#### 2\n\nQuestion: 2*3?\nAnswer: 2*3=6\n#### 6\n\nQuestion: 5+5?\nAnswer:";
        assert_eq!(
            b.render(0, &it, None).unwrap(),
            Prompt { text: want.into(), add_special_tokens: true }
        );
        // Other example templates and delimiters are honoured.
        let mut f = b.fewshot.clone().unwrap();
        f.spec.template = Some("Q {{ question }}".into());
        f.spec.target = Some("{{ answer[-1] }}".into());
        f.spec.target_delimiter = "=".into();
        f.spec.separator = "|".into();
        let b =
            PromptBuilder::new(&spec_of("Question: {{ question }}\nAnswer:", ChatMode::Never), "e")
                .unwrap()
                .with_fewshot(Some(f))
                .unwrap();
        assert_eq!(
            b.render(0, &it, None).unwrap().text,
            "Q 1+1?=2|Q 2*3?=6|Question: 5+5?\nAnswer:"
        );
    }

    #[test]
    fn two_shot_chat_is_multiturn() {
        let b = two_shot(ChatMode::Auto);
        let it = gsm_item("q", "5+5?", "#### 10");
        let t = zephyr();
        let p = b.render(0, &it, b.chat_template(Some(&t), "m").unwrap()).unwrap();
        // lm-eval --apply_chat_template --fewshot_as_multiturn: each example is a user turn
        // (doc_to_text) answered by an assistant turn (doc_to_target), then the doc's user turn.
        let want = "<|user|>\nQuestion: 1+1?\nAnswer:</s>\n<|assistant|>\n1+1=2\n#### 2</s>\n\
                    <|user|>\nQuestion: 2*3?\nAnswer:</s>\n<|assistant|>\n2*3=6\n#### 6</s>\n\
                    <|user|>\nQuestion: 5+5?\nAnswer:</s>\n<|assistant|>\n";
        assert_eq!(p.text, want);
        let messages = b.messages(0, &it).unwrap();
        let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"]);
    }

    #[test]
    fn multiple_choice_examples_answer_with_the_option_text() {
        let mut ex = gsm_item("0", "Sky?", "1");
        ex.choices = vec!["green".into(), "blue".into()];
        ex.target_index = Some(1);
        let mut b = two_shot(ChatMode::Never);
        if let Some(f) = b.fewshot.as_mut() {
            f.pool = vec![ex];
        }
        let text = b.render(0, &gsm_item("q", "Grass?", "0"), None).unwrap().text;
        assert_eq!(text, "Question: Sky?\nAnswer: blue\n\nQuestion: Grass?\nAnswer:");
    }

    #[test]
    fn chat_modes() {
        let t = zephyr();
        let never = PromptBuilder::new(&spec("{{ q }}", ChatMode::Never), "e").unwrap();
        assert!(never.chat_template(Some(&t), "m").unwrap().is_none());
        let auto = PromptBuilder::new(&spec("{{ q }}", ChatMode::Auto), "e").unwrap();
        assert!(auto.chat_template(Some(&t), "m").unwrap().is_some());
        assert!(auto.chat_template(None, "m").unwrap().is_none());
        let always = PromptBuilder::new(&spec("{{ q }}", ChatMode::Always), "e").unwrap();
        let err = always.chat_template(None, "my-model").unwrap_err().to_string();
        assert!(err.contains("my-model") && err.contains("no chat template"), "{err}");
    }
}
