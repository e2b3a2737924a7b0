//! `benchgen generate`: quick completions from any model, outside any environment.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use benchgen::device::WeightType;
use benchgen::engine::remote::RemoteEngine;
use benchgen::engine::{
    sampling, GenOutput, GenParams, GenRequest, Generator, LocalEngine, Truncate,
};
use benchgen::model::chat::Message;
use benchgen::model::spec::{self, ModelSource};
use benchgen::model::LoadedModel;
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
        let p: PromptLine = serde_json::from_str(&line).with_context(|| {
            format!("{}: line {}: expected {{\"id\", \"prompt\"}}", path.display(), n + 1)
        })?;
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
    let params = GenParams {
        max_new_tokens: args.max_new_tokens,
        stop: args.stop.clone(),
        temperature: args.temperature,
        top_k: None,
        top_p: None,
    };
    let (mut engine, rendered) = engine_and_prompts(&args, &prompts)?;
    let mut requests = Vec::with_capacity(prompts.len());
    let mut texts = Vec::with_capacity(prompts.len());
    for (index, ((id, _), (text, add_special_tokens, messages))) in
        prompts.iter().zip(rendered).enumerate()
    {
        texts.push(text.clone());
        requests.push(GenRequest {
            index,
            id: id.to_string(),
            prompt: text,
            add_special_tokens,
            params: params.clone(),
            seed: sampling::item_seed(args.seed, id),
            truncate: Truncate::Error,
            messages,
        });
    }
    let mut outputs: Vec<Option<GenOutput>> = vec![None; prompts.len()];
    engine.generate(requests, &mut |o| {
        let i = o.index;
        outputs[i] = Some(o);
        Ok(())
    })?;
    for (i, out) in outputs.into_iter().enumerate() {
        let out = out.context("the engine returned no output for a prompt")?;
        if args.json {
            outln!(
                "{}",
                json!({"id": prompts[i].0, "prompt": texts[i], "text": out.text,
                       "token_ids": out.token_ids, "finish_reason": out.finish_reason})
            )?;
        } else {
            outln!("{}{}", texts[i], out.text)?;
        }
    }
    Ok(())
}

/// Each prompt as the engine takes it: text, whether the tokenizer adds special tokens, and
/// for a server's chat endpoint the conversation.
type Rendered = (String, bool, Option<Vec<Message>>);

/// A local model renders `--chat` prompts with its own template; a server gets the user turn
/// on `/v1/chat/completions` and applies its template itself.
fn engine_and_prompts(
    args: &GenerateArgs,
    prompts: &[(String, String)],
) -> anyhow::Result<(Box<dyn Generator>, Vec<Rendered>)> {
    // Checked first, so a typo fails before any download.
    let device = args.device.open()?;
    let sources = args.sources.options();
    let gguf = spec::preflight(args.model.as_deref(), &sources)?.gguf;
    let weights = WeightType::for_model(args.dtype, &device, gguf)?;
    let resolved = spec::resolve_source(args.model.as_deref(), &sources)?;
    let user = |p: &str| vec![Message { role: "user".into(), content: p.to_string() }];
    match resolved.source {
        ModelSource::Endpoint(endpoint) => {
            let engine = RemoteEngine::connect(&endpoint, args.batch_size, &sources.server)?;
            let rendered = prompts
                .iter()
                .map(|(_, p)| (p.clone(), true, args.chat.then(|| user(p))))
                .collect();
            Ok((Box::new(engine), rendered))
        }
        ModelSource::Local(checkpoint) => {
            let model =
                LoadedModel::load_for_inference(&checkpoint, &device, weights, args.kv_dtype)?;
            let rendered = if args.chat {
                let t = model
                    .chat_template
                    .as_ref()
                    .with_context(|| format!("{} has no chat template", model.origin))?;
                prompts
                    .iter()
                    .map(|(_, p)| Ok((t.render(&user(p), true)?, false, None)))
                    .collect::<anyhow::Result<_>>()?
            } else {
                prompts.iter().map(|(_, p)| (p.clone(), true, None)).collect()
            };
            let local = LocalEngine::new(model, args.batch_size).with_kv_budget(args.kv_budget);
            let (engine, note) =
                benchgen::engine::for_device(local, &checkpoint, &device, weights, args.batch_size);
            if let Some(note) = note {
                eprintln!("{note}");
            }
            Ok((engine, rendered))
        }
    }
}
