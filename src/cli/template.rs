//! `benchgen template render`: a chat template's text for a conversation, without a model.

use anyhow::Context;
use benchgen::model::chat::{ChatTemplate, RenderInput, TemplateValue};

use super::TemplateRenderArgs;

/// `--var NAME=VALUE`, split at the first `=`.
pub fn var_arg(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn json(path: &std::path::Path) -> anyhow::Result<TemplateValue> {
    TemplateValue::from_json(&read(path)?).with_context(|| path.display().to_string())
}

pub fn render(args: TemplateRenderArgs) -> anyhow::Result<()> {
    let name = args.template.display().to_string();
    let template = ChatTemplate::new(&read(&args.template)?, None, None).context(name.clone())?;
    let mut input = RenderInput::new(&json(&args.messages)?)
        .with_context(|| args.messages.display().to_string())?
        .add_generation_prompt(!args.no_generation_prompt);
    if let Some(tools) = &args.tools {
        input = input.tools(&json(tools)?).with_context(|| tools.display().to_string())?;
    }
    for (var, value) in &args.var {
        input = input.var(var, TemplateValue::from_arg(value))?;
    }
    // Rendered whole before anything is written: a failing template prints nothing on stdout.
    let text = template.render_input(&input).context(name)?;
    out!("{text}")?;
    Ok(())
}
