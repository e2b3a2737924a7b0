//! The OpenAI wire format: request bodies from engine requests, engine outputs from the
//! server's answers. Pure functions, so every mapping is tested without a server.

use serde_json::{json, Map, Value};

use crate::engine::{find_stop, FinishReason, GenOutput, GenRequest, LoglikOutput, LoglikRequest};

/// The OpenAI API takes at most this many stop strings; the rest are applied here.
const MAX_SERVER_STOPS: usize = 4;

/// A server answer that does not hold what was asked for. Messages read after "the answer" /
/// "this one:" in the caller's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer has no choices")]
    NoChoices,
    #[error("the chat answer has no choices[0].message")]
    NoMessage,
    #[error("the answer has no choices[0].text")]
    NoText,
    #[error("it returned no logprobs")]
    NoLogprobs,
    #[error("its logprobs have no tokens")]
    NoTokens,
    #[error("its logprobs have no token_logprobs")]
    NoTokenLogprobs,
    #[error("its text_offset holds a non-integer")]
    BadTextOffset,
    #[error("its tokens, token_logprobs and text_offset differ in length")]
    LengthMismatch,
    #[error("it did not echo the prompt's tokens (echo=true ignored)")]
    NotEchoed,
    #[error(
        "token {index} of the prompt has no logprob (the first token never has one: is the context empty?)"
    )]
    NoTokenLogprob { index: usize },
    #[error("no token of its answer covers the continuation {continuation:?}")]
    ContinuationUncovered { continuation: String },
}

/// Text from `/v1/completions`, or a conversation for `/v1/chat/completions`.
pub fn generation_body(model: &str, req: &GenRequest) -> Value {
    let p = &req.params;
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    match &req.messages {
        Some(messages) => body.insert("messages".into(), json!(messages)),
        None => body.insert("prompt".into(), json!(req.prompt)),
    };
    body.insert("max_tokens".into(), json!(p.max_new_tokens));
    body.insert("temperature".into(), json!(p.temperature));
    if let Some(top_p) = p.top_p {
        body.insert("top_p".into(), json!(top_p));
    }
    // top_k is not part of the OpenAI API and strict servers refuse unknown fields.
    let stops: Vec<&String> =
        p.stop.iter().filter(|s| !s.is_empty()).take(MAX_SERVER_STOPS).collect();
    if !stops.is_empty() {
        body.insert("stop".into(), json!(stops));
    }
    // Servers parse the seed as a signed 64-bit integer.
    body.insert("seed".into(), json!(req.seed & i64::MAX as u64));
    Value::Object(body)
}

pub fn endpoint_path(req: &GenRequest) -> &'static str {
    if req.messages.is_some() {
        "/chat/completions"
    } else {
        "/completions"
    }
}

/// The first choice's text, cut at the earliest stop string (the server cuts only at the
/// first four, and some return the stop string itself).
pub fn parse_generation(req: &GenRequest, resp: &Value) -> Result<GenOutput, AnswerError> {
    let choice = resp.pointer("/choices/0").ok_or(AnswerError::NoChoices)?;
    let text = if req.messages.is_some() {
        // A chat answer with no text (refusal, tool call) is an empty prediction, not an error.
        match choice.pointer("/message/content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None if choice.get("message").is_some() => String::new(),
            _ => return Err(AnswerError::NoMessage),
        }
    } else {
        choice.get("text").and_then(Value::as_str).ok_or(AnswerError::NoText)?.to_string()
    };
    let (text, cut) = match find_stop(&text, &req.params.stop) {
        Some(at) => (text[..at].to_string(), true),
        None => (text, false),
    };
    // "stop" covers both end-of-sequence and stop strings; vLLM's stop_reason tells them apart
    // (the matched string, or null / a token id for end-of-sequence). Without it, the server's
    // end-of-sequence is the likelier reading, unless the text was cut here.
    let named_stop = choice.get("stop_reason").is_some_and(Value::is_string);
    let finish_reason = match choice.get("finish_reason").and_then(Value::as_str) {
        _ if cut => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        _ if named_stop => FinishReason::Stop,
        _ => FinishReason::Eos,
    };
    let usage = |k: &str| {
        resp.pointer(&format!("/usage/{k}")).and_then(Value::as_u64).unwrap_or(0) as usize
    };
    Ok(GenOutput {
        index: req.index,
        text,
        token_ids: Vec::new(),
        tokens_in: usage("prompt_tokens"),
        tokens_out: usage("completion_tokens"),
        tokens_dropped: 0,
        finish_reason,
    })
}

/// Scores context + continuation in one prompt: `echo` returns the prompt's own tokens with
/// their log-probabilities. `max_tokens` is 0 where the server allows it (nothing generated),
/// else 1 (the generated token is ignored).
pub fn loglik_body(model: &str, r: &LoglikRequest, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "prompt": format!("{}{}", r.context, r.continuation),
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "echo": true,
        "logprobs": 1,
    })
}

/// Why an answer holds no usable prompt log-probabilities.
pub const NO_PROMPT_LOGPROBS: &str = "multiple-choice (log-likelihood) environments need a server that returns \
     prompt logprobs with echo=true (vLLM, or another server implementing the legacy completions logprobs with echo)";

/// Sums the log-probabilities of the continuation's tokens. Offsets are in characters (as
/// OpenAI and vLLM count them); a token that straddles the context's end belongs to the
/// continuation, since the continuation's first characters are inside it.
pub fn parse_loglik(r: &LoglikRequest, resp: &Value) -> Result<LoglikOutput, AnswerError> {
    let lp = resp
        .pointer("/choices/0/logprobs")
        .filter(|v| v.is_object())
        .ok_or(AnswerError::NoLogprobs)?;
    let tokens = lp.get("tokens").and_then(Value::as_array).ok_or(AnswerError::NoTokens)?;
    let token_logprobs =
        lp.get("token_logprobs").and_then(Value::as_array).ok_or(AnswerError::NoTokenLogprobs)?;
    let tops = lp.get("top_logprobs").and_then(Value::as_array);
    let offsets: Vec<usize> = match lp.get("text_offset").and_then(Value::as_array) {
        Some(o) => o
            .iter()
            .map(|v| v.as_u64().map(|n| n as usize).ok_or(AnswerError::BadTextOffset))
            .collect::<Result<_, _>>()?,
        // Without offsets, token texts laid end to end give them.
        None => tokens
            .iter()
            .scan(0, |at, t| {
                let start = *at;
                *at += t.as_str().map_or(0, |s| s.chars().count());
                Some(start)
            })
            .collect(),
    };
    if offsets.len() != tokens.len() || token_logprobs.len() != tokens.len() {
        return Err(AnswerError::LengthMismatch);
    }
    let ctx_chars = r.context.chars().count();
    let prompt_chars = ctx_chars + r.continuation.chars().count();
    // Tokens at or past the prompt's end are generated (max_tokens 1), not the prompt's.
    let n_prompt = offsets.iter().take_while(|&&o| o < prompt_chars).count();
    if n_prompt == 0 || offsets[0] != 0 {
        return Err(AnswerError::NotEchoed);
    }
    let mut out = LoglikOutput {
        index: r.index,
        logprob: 0.0,
        is_greedy: true,
        context_tokens: 0,
        continuation_tokens: 0,
        context_dropped: 0,
    };
    for i in 0..n_prompt {
        let end = if i + 1 < n_prompt { offsets[i + 1] } else { prompt_chars };
        if end <= ctx_chars {
            out.context_tokens += 1;
            continue;
        }
        let lp = token_logprobs[i].as_f64().ok_or(AnswerError::NoTokenLogprob { index: i })?;
        out.logprob += lp;
        out.continuation_tokens += 1;
        let best = tops
            .and_then(|t| t.get(i))
            .and_then(Value::as_object)
            .and_then(|m| m.values().filter_map(Value::as_f64).reduce(f64::max));
        // Ties and float noise in the server's rounding count as greedy.
        out.is_greedy &= best.is_some_and(|b| lp >= b - 1e-6);
    }
    if out.continuation_tokens == 0 {
        return Err(AnswerError::ContinuationUncovered { continuation: r.continuation.clone() });
    }
    Ok(out)
}

/// The `id`s of `/v1/models`.
pub fn model_ids(resp: &Value) -> Vec<String> {
    resp.get("data")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{GenParams, Truncate};
    use crate::model::chat::Message;

    fn req(stop: &[&str], messages: Option<Vec<Message>>) -> GenRequest {
        GenRequest {
            index: 3,
            id: "x".into(),
            prompt: "1+1=".into(),
            add_special_tokens: true,
            params: GenParams {
                max_new_tokens: 8,
                stop: stop.iter().map(|s| s.to_string()).collect(),
                temperature: 0.0,
                top_k: Some(5),
                top_p: None,
            },
            seed: u64::MAX,
            truncate: Truncate::Error,
            messages,
        }
    }

    #[test]
    fn completion_body_sends_four_stops_and_a_signed_seed() {
        let r = req(&["a", "b", "", "c", "d", "e"], None);
        let b = generation_body("m", &r);
        assert_eq!(b["prompt"], "1+1=");
        assert_eq!(b["stop"], json!(["a", "b", "c", "d"]));
        assert_eq!(b["seed"], json!(i64::MAX));
        assert!(
            b.get("top_p").is_none() && b.get("top_k").is_none() && b.get("messages").is_none()
        );
        assert_eq!(endpoint_path(&r), "/completions");
        let chat = req(&[], Some(vec![Message { role: "user".into(), content: "hi".into() }]));
        let b = generation_body("m", &chat);
        assert_eq!(b["messages"], json!([{"role": "user", "content": "hi"}]));
        assert!(b.get("prompt").is_none() && b.get("stop").is_none());
        assert_eq!(endpoint_path(&chat), "/chat/completions");
    }

    #[test]
    fn generation_cuts_late_stops_and_maps_finish_reasons() {
        let r = req(&["a", "b", "c", "d", "\n"], None);
        let resp = json!({"choices": [{"text": "42\nmore", "finish_reason": "length"}],
                          "usage": {"prompt_tokens": 5, "completion_tokens": 8}});
        let out = parse_generation(&r, &resp).unwrap();
        assert_eq!(
            (out.text.as_str(), out.finish_reason, out.tokens_in, out.tokens_out),
            ("42", FinishReason::Stop, 5, 8)
        );
        let resp = json!({"choices": [{"text": "42", "finish_reason": "stop"}]});
        let out = parse_generation(&r, &resp).unwrap();
        assert_eq!((out.finish_reason, out.tokens_in, out.index), (FinishReason::Eos, 0, 3));
        let resp =
            json!({"choices": [{"text": "42", "finish_reason": "stop", "stop_reason": "\n"}]});
        assert_eq!(parse_generation(&r, &resp).unwrap().finish_reason, FinishReason::Stop);
        let resp = json!({"choices": [{"text": "4242", "finish_reason": "length"}]});
        assert_eq!(parse_generation(&r, &resp).unwrap().finish_reason, FinishReason::Length);
        assert!(parse_generation(&r, &json!({"choices": []})).is_err());
    }

    #[test]
    fn chat_answers_read_the_message() {
        let r = req(&[], Some(vec![]));
        let resp = json!({"choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}]});
        assert_eq!(parse_generation(&r, &resp).unwrap().text, "hello");
        let resp = json!({"choices": [{"message": {"role": "assistant", "content": null}}]});
        assert_eq!(parse_generation(&r, &resp).unwrap().text, "");
        assert!(parse_generation(&r, &json!({"choices": [{"text": "x"}]})).is_err());
    }

    fn echo(tokens: &[&str], lps: &[Option<f64>], tops: &[f64]) -> Value {
        let mut offsets = Vec::new();
        let mut at = 0;
        for t in tokens {
            offsets.push(at);
            at += t.chars().count();
        }
        let tops: Vec<Value> = tokens.iter().zip(tops).map(|(t, b)| json!({ *t: b })).collect();
        json!({"choices": [{"text": tokens.concat(), "logprobs": {
            "tokens": tokens, "token_logprobs": lps, "text_offset": offsets, "top_logprobs": tops}}]})
    }

    #[test]
    fn continuation_tokens_are_summed_and_a_straddling_token_counts_with_them() {
        let r = LoglikRequest {
            index: 7,
            context: "Q: 1+1=".into(),
            continuation: " 2".into(),
            ..Default::default()
        };
        // "=" ends the context exactly: " 2" is the continuation's one token.
        let resp = echo(
            &["Q:", " 1+1", "=", " 2"],
            &[None, Some(-1.0), Some(-0.5), Some(-0.25)],
            &[0.0, -1.0, -0.5, -0.25],
        );
        let out = parse_loglik(&r, &resp).unwrap();
        assert_eq!(
            out,
            LoglikOutput {
                index: 7,
                logprob: -0.25,
                is_greedy: true,
                context_tokens: 3,
                continuation_tokens: 1,
                context_dropped: 0
            }
        );
        // "= 2" straddles the boundary: it belongs to the continuation; a likelier token elsewhere
        // makes it not greedy.
        let resp =
            echo(&["Q:", " 1+1", "= 2"], &[None, Some(-1.0), Some(-2.0)], &[0.0, -1.0, -0.1]);
        let out = parse_loglik(&r, &resp).unwrap();
        assert_eq!(
            (out.logprob, out.is_greedy, out.context_tokens, out.continuation_tokens),
            (-2.0, false, 2, 1)
        );
    }

    #[test]
    fn offsets_count_characters_and_generated_tokens_are_ignored() {
        let r = LoglikRequest {
            index: 0,
            context: "é=".into(),
            continuation: "ü".into(),
            ..Default::default()
        };
        // A generated token (max_tokens 1) after the prompt is not scored.
        let resp = echo(
            &["é", "=", "ü", "!"],
            &[None, Some(-1.0), Some(-3.0), Some(-9.0)],
            &[0.0, -1.0, -3.0, -9.0],
        );
        let out = parse_loglik(&r, &resp).unwrap();
        assert_eq!((out.logprob, out.continuation_tokens, out.context_tokens), (-3.0, 1, 2));
    }

    #[test]
    fn missing_logprobs_or_echo_are_errors() {
        let r = LoglikRequest {
            index: 0,
            context: "a".into(),
            continuation: "b".into(),
            ..Default::default()
        };
        let e = parse_loglik(&r, &json!({"choices": [{"text": ""}]})).unwrap_err();
        assert_eq!(e, AnswerError::NoLogprobs);
        assert!(e.to_string().contains("no logprobs"));
        assert!(parse_loglik(&r, &json!({"choices": [{"text": "", "logprobs": null}]})).is_err());
        let not_echoed = json!({"choices": [{"logprobs": {"tokens": ["c"], "token_logprobs": [-1.0], "text_offset": [2]}}]});
        let e = parse_loglik(&r, &not_echoed).unwrap_err();
        assert_eq!(e, AnswerError::NotEchoed);
        assert!(e.to_string().contains("echo"));
        let uncovered = json!({"choices": [{"logprobs": {"tokens": ["a"], "token_logprobs": [null], "text_offset": [0]}}]});
        let e = parse_loglik(&LoglikRequest { continuation: String::new(), ..r }, &uncovered)
            .unwrap_err();
        assert_eq!(e, AnswerError::ContinuationUncovered { continuation: String::new() });
        assert_eq!(e.to_string(), "no token of its answer covers the continuation \"\"");
    }

    #[test]
    fn lists_served_models() {
        assert_eq!(model_ids(&json!({"data": [{"id": "a"}, {"id": "b"}]})), ["a", "b"]);
        assert!(model_ids(&json!({})).is_empty());
    }
}
