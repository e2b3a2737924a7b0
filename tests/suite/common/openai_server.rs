//! A small OpenAI-compatible server for tests, on 127.0.0.1 and std alone: `/v1/models`,
//! `/v1/completions` (with echo + logprobs), `/v1/chat/completions`. Its answers are
//! deterministic functions of the prompt ([`answer_for`], [`char_logprob`]) so a test can say
//! what every prediction must be. It records what it was sent and how many requests it held
//! at once, and can be told to fail.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Clone)]
pub struct Behavior {
    pub models: Vec<String>,
    /// Requests without `Authorization: Bearer KEY` get 401.
    pub api_key: Option<String>,
    /// The first completion requests get these statuses (429 with `Retry-After: 0`).
    pub faults: Vec<u16>,
    /// Whether `echo` + `logprobs` return prompt logprobs; else `logprobs` is null.
    pub logprobs: bool,
    /// Refuse `max_tokens: 0` with a 400, as some servers do.
    pub refuse_zero_max_tokens: bool,
    /// Time spent on each completion, so that concurrent requests overlap.
    pub delay: Duration,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            models: vec!["test-model".into()],
            api_key: None,
            faults: Vec::new(),
            logprobs: true,
            refuse_zero_max_tokens: false,
            delay: Duration::from_millis(20),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

struct State {
    behavior: Behavior,
    requests: Mutex<Vec<Request>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    completions_seen: AtomicUsize,
    faults_served: AtomicUsize,
}

pub struct OpenAiServer {
    pub port: u16,
    state: Arc<State>,
}

impl OpenAiServer {
    pub fn start(behavior: Behavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            behavior,
            requests: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            completions_seen: AtomicUsize::new(0),
            faults_served: AtomicUsize::new(0),
        });
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve_connection(stream, &state));
            }
        });
        Self { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn faults_served(&self) -> usize {
        self.state.faults_served.load(Ordering::SeqCst)
    }
}

/// The server's answer to an arithmetic prompt ending in "A+B=" or "A-B=": right, except when
/// (A + B) % 4 == 1, where it is one too high. Anything else gets "?".
pub fn answer_for(prompt: &str) -> String {
    let Some(q) = prompt.trim_end().strip_suffix('=') else { return "?".into() };
    let q = q.rsplit(|c: char| !(c.is_ascii_digit() || c == '+' || c == '-')).next().unwrap_or("");
    let (a, b, sum) = if let Some((a, b)) = q.split_once('+') {
        match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(a), Ok(b)) => (a, b, a + b),
            _ => return "?".into(),
        }
    } else if let Some((a, b)) = q.split_once('-') {
        match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(a), Ok(b)) => (a, b, a - b),
            _ => return "?".into(),
        }
    } else {
        return "?".into();
    };
    let wrong = (a + b) % 4 == 1;
    (if wrong { sum + 1 } else { sum }).to_string()
}

/// The log-probability of character `c` at position `j` after the prompt's last "=": the
/// server "believes" [`answer_for`] and is confident of its characters, doubtful of others.
pub fn char_logprob(believed: &str, j: usize, c: char) -> f64 {
    if believed.chars().nth(j) == Some(c) {
        -0.125
    } else {
        -3.0
    }
}

/// What the server's logprobs give `option` as the continuation of `question`.
pub fn option_logprob(question: &str, option: &str) -> f64 {
    let believed = answer_for(question);
    option.chars().enumerate().map(|(j, c)| char_logprob(&believed, j, c)).sum()
}

fn serve_connection(stream: TcpStream, state: &State) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut stream = stream;
    // One request per connection keeps the parser small; every response says Connection: close.
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut length = 0;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let (status, extra, reply) = respond(state, &method, &path, authorization.as_deref(), &body);
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let text = reply.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        text.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.flush();
}

fn error(status: u16, message: &str) -> (u16, String, Value) {
    (status, String::new(), json!({"error": {"message": message, "type": "test"}}))
}

fn respond(
    state: &State,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &Value,
) -> (u16, String, Value) {
    let b = &state.behavior;
    if let Some(key) = &b.api_key {
        if auth != Some(format!("Bearer {key}").as_str()) {
            return error(401, "Incorrect API key provided");
        }
    }
    match (method, path) {
        ("GET", "/v1/models") => {
            let data: Vec<Value> =
                b.models.iter().map(|m| json!({"id": m, "object": "model"})).collect();
            (200, String::new(), json!({"object": "list", "data": data}))
        }
        ("POST", "/v1/completions") | ("POST", "/v1/chat/completions") => {
            let n = state.completions_seen.fetch_add(1, Ordering::SeqCst);
            if let Some(&status) = b.faults.get(n) {
                state.faults_served.fetch_add(1, Ordering::SeqCst);
                let (s, _, v) = error(status, "injected fault");
                let extra =
                    if status == 429 { "Retry-After: 0\r\n".to_string() } else { String::new() };
                return (s, extra, v);
            }
            std::thread::sleep(b.delay);
            if body["model"] != json!(b.models[0]) {
                return error(404, &format!("The model `{}` does not exist.", body["model"]));
            }
            if path == "/v1/chat/completions" {
                chat(body)
            } else if body["echo"] == json!(true) {
                echo(b, body)
            } else {
                completion(body)
            }
        }
        _ => error(404, "no such route"),
    }
}

/// Honours stop strings as a real server does: the text ends before the first one.
fn cut(text: String, body: &Value) -> (String, &'static str) {
    let stops: Vec<&str> = body["stop"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match stops.iter().filter_map(|s| text.find(s)).min() {
        Some(at) => (text[..at].to_string(), "stop"),
        None => (text, "stop"),
    }
}

fn completion(body: &Value) -> (u16, String, Value) {
    let prompt = body["prompt"].as_str().unwrap_or("");
    let (text, finish) = cut(format!("{}\nmore text", answer_for(prompt)), body);
    let usage = json!({"prompt_tokens": prompt.chars().count(), "completion_tokens": text.chars().count(),
                       "total_tokens": prompt.chars().count() + text.chars().count()});
    (
        200,
        String::new(),
        json!({"object": "text_completion", "model": body["model"],
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": null}], "usage": usage}),
    )
}

fn chat(body: &Value) -> (u16, String, Value) {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let (text, finish) = cut(format!("{}\nmore text", answer_for(user)), body);
    (
        200,
        String::new(),
        json!({"object": "chat.completion", "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
    )
}

/// One token per character; after the last "=", characters score by [`char_logprob`].
fn echo(b: &Behavior, body: &Value) -> (u16, String, Value) {
    let prompt = body["prompt"].as_str().unwrap_or("").to_string();
    let max_tokens = body["max_tokens"].as_u64().unwrap_or(16);
    if max_tokens == 0 && b.refuse_zero_max_tokens {
        return error(400, "max_tokens must be at least 1");
    }
    if !b.logprobs {
        return (
            200,
            String::new(),
            json!({"choices": [{"index": 0, "text": prompt, "logprobs": null, "finish_reason": "length"}]}),
        );
    }
    let eq = prompt.rfind('=').map(|i| prompt[..i].chars().count());
    let question: String = match eq {
        Some(n) => prompt.chars().take(n + 1).collect(),
        None => String::new(),
    };
    let believed = answer_for(&question);
    let mut chars: Vec<char> = prompt.chars().collect();
    // A server that must generate a token returns it after the prompt.
    if max_tokens > 0 {
        chars.push('#');
    }
    let prompt_len = prompt.chars().count();
    let (mut tokens, mut lps, mut offsets, mut tops) = (vec![], vec![], vec![], vec![]);
    for (i, c) in chars.iter().enumerate() {
        tokens.push(c.to_string());
        offsets.push(i);
        let lp = match eq {
            _ if i == 0 => Value::Null,
            _ if i >= prompt_len => json!(-0.5),
            Some(n) if i > n => json!(char_logprob(&believed, i - n - 1, *c)),
            _ => json!(-1.0),
        };
        let top = match (eq, believed.chars().nth(i.saturating_sub(eq.unwrap_or(0) + 1))) {
            (Some(n), Some(best)) if i > n && i < prompt_len => json!({ best.to_string(): -0.125 }),
            _ if i == 0 => Value::Null,
            _ => json!({ c.to_string(): lp }),
        };
        lps.push(lp);
        tops.push(top);
    }
    let text: String = chars.iter().collect();
    (
        200,
        String::new(),
        json!({"object": "text_completion", "model": body["model"],
        "choices": [{"index": 0, "text": text, "finish_reason": "length",
                     "logprobs": {"tokens": tokens, "token_logprobs": lps, "text_offset": offsets, "top_logprobs": tops}}],
        "usage": {"prompt_tokens": prompt_len, "completion_tokens": max_tokens}}),
    )
}
