//! Items → prompt strings, through the environment's minijinja template.

use minijinja::{Environment as Jinja, UndefinedBehavior};

use crate::env::{manifest::PromptSpec, ChatMode, Item};
use crate::error::{Error, Result};

pub struct PromptBuilder {
    jinja: Jinja<'static>,
    system: String,
}

impl PromptBuilder {
    /// Compiles the template once; `origin` names the environment in errors.
    pub fn new(spec: &PromptSpec, origin: &str) -> Result<Self> {
        if spec.chat == ChatMode::Always {
            return Err(Error::env(
                origin,
                "chat = true needs chat-template support, which this build does not have yet; \
                 use chat = \"auto\" or false",
            ));
        }
        let mut jinja = Jinja::new();
        // A typo in a field name must fail loudly, not render an empty string into every prompt.
        jinja.set_undefined_behavior(UndefinedBehavior::Strict);
        jinja.set_keep_trailing_newline(true);
        jinja
            .add_template_owned("prompt", spec.template.clone())
            .map_err(|e| Error::env(origin, format!("[prompt] template: {e}")))?;
        Ok(Self { jinja, system: spec.system.clone() })
    }

    pub fn render(&self, item: &Item) -> Result<String> {
        let tmpl = self.jinja.get_template("prompt").map_err(|e| Error::Invalid(e.to_string()))?;
        let body = tmpl.render(&item.fields).map_err(|e| {
            Error::Invalid(format!("item {}: cannot render the prompt template: {e}", item.id))
        })?;
        // Without a chat template the system prompt is plain text ahead of the prompt.
        Ok(if self.system.is_empty() { body } else { format!("{}\n\n{body}", self.system) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: serde_json::Value) -> Item {
        let serde_json::Value::Object(fields) = v else { panic!("object") };
        Item { id: "x".into(), fields, target: String::new() }
    }

    fn spec(template: &str) -> PromptSpec {
        PromptSpec { template: template.into(), system: String::new(), chat: ChatMode::Auto }
    }

    #[test]
    fn renders_item_fields_and_refuses_unknown_ones() {
        let b = PromptBuilder::new(&spec("Q: {{ question }}\nA:"), "e").unwrap();
        assert_eq!(b.render(&item(json!({"question": "2+2?"}))).unwrap(), "Q: 2+2?\nA:");
        let b = PromptBuilder::new(&spec("{{ questoin }}"), "e").unwrap();
        let err = b.render(&item(json!({"question": "2+2?"}))).unwrap_err().to_string();
        assert!(err.contains("item x") && err.contains("undefined"), "{err}");
    }

    #[test]
    fn bad_template_syntax_is_an_environment_error() {
        let err = PromptBuilder::new(&spec("{{ question "), "envdir").err().unwrap().to_string();
        assert!(err.contains("envdir") && err.contains("template"), "{err}");
    }

    #[test]
    fn system_prompt_goes_first() {
        let mut s = spec("{{ q }}");
        s.system = "Answer briefly.".into();
        let b = PromptBuilder::new(&s, "e").unwrap();
        assert_eq!(b.render(&item(json!({"q": "hi"}))).unwrap(), "Answer briefly.\n\nhi");
    }
}
