//! `benchgen generate`: quick completions from any model, outside any environment.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use benchgen::device::{parse_device, parse_dtype};
use benchgen::engine::{sampling, GenOutput, GenParams, GenRequest, Generator, LocalEngine, Truncate};
use benchgen::model::chat::Message;
use benchgen::model::{spec, LoadedModel};
use serde::Deserialize;
use serde_json::json;

use super::GenerateArgs;

#[derive(Deserialize)]
struct PromptLine {
    id: serde_json::Value,
    prompt: String,
}

fn read_prompts(args: &GenerateArgs) -> anyhow::Result<Vec<(String, String)>> {
    match (&args.prompt, &args.prompts) {
        (Some(p), None) => Ok(vec![("0".into(), p.clone())]),
        (None, Some(path)) => read_prompts_file(path),
        _ => bail!("give exactly one of --prompt TEXT or --prompts FILE.jsonl"),
    }
}

fn read_prompts_file(path: &PathBuf) -> anyhow::Result<Vec<(String, String)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let p: PromptLine = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {}: expected {{\"id\", \"prompt\"}}", path.display(), n + 1))?;
        let id = match p.id {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        out.push((id, p.prompt));
    }
    Ok(out)
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let prompts = read_prompts(&args)?;
    let device = parse_device(&args.device)?;
    let dtype = parse_dtype(&args.dtype, &device)?;
    let (checkpoint, _) = spec::resolve_checkpoint(args.model.as_deref(), &args.sources.options())?;
    let model = LoadedModel::load(&checkpoint, &device, dtype)?;
    let chat = if args.chat {
        Some(model.chat_template.as_ref().with_context(|| format!("{} has no chat template", model.origin))?)
    } else {
        None
    };
    let params = GenParams {
        max_new_tokens: args.max_new_tokens,
        stop: args.stop.clone(),
        temperature: args.temperature,
        top_k: None,
        top_p: None,
    };
    let mut requests = Vec::with_capacity(prompts.len());
    let mut texts = Vec::with_capacity(prompts.len());
    for (index, (id, prompt)) in prompts.iter().enumerate() {
        let (text, add_special_tokens) = match chat {
            Some(t) => (t.render(&[Message { role: "user".into(), content: prompt.clone() }], true)?, false),
            None => (prompt.clone(), true),
        };
        texts.push(text.clone());
        requests.push(GenRequest {
            index,
            id: id.to_string(),
            prompt: text,
            add_special_tokens,
            params: params.clone(),
            seed: sampling::item_seed(args.seed, id),
            truncate: Truncate::Error,
        });
    }
    let mut outputs: Vec<Option<GenOutput>> = vec![None; prompts.len()];
    let mut engine = LocalEngine::new(model, args.batch_size);
    engine.generate(requests, &mut |o| {
        let i = o.index;
        outputs[i] = Some(o);
        Ok(())
    })?;
    for (i, out) in outputs.into_iter().enumerate() {
        let out = out.context("the engine returned no output for a prompt")?;
        if args.json {
            println!(
                "{}",
                json!({"id": prompts[i].0, "prompt": texts[i], "text": out.text,
                       "token_ids": out.token_ids, "finish_reason": out.finish_reason})
            );
        } else {
            println!("{}{}", texts[i], out.text);
        }
    }
    Ok(())
}
