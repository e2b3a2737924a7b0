//! HTTP to an OpenAI-compatible server: base URL, API key, timeouts, and retries with
//! exponential backoff for what a busy or restarting server answers (429, 5xx, a dropped
//! connection). Everything else fails at once with the server's own message, which usually
//! says what is wrong with the request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::spec::{Endpoint, ServerOptions};
use crate::rng::SplitMix64;

/// Attempts per request, the first included.
const MAX_ATTEMPTS: u32 = 5;
const BACKOFF_BASE_S: f64 = 0.5;
const BACKOFF_CAP_S: f64 = 8.0;
/// A server asking for a longer pause than this is waited on for this long only, so a
/// misconfigured `Retry-After` cannot stall a run for hours.
const RETRY_AFTER_CAP_S: f64 = 60.0;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Long generations on a loaded server take minutes; `BENCHGEN_REQUEST_TIMEOUT` overrides.
const DEFAULT_READ_TIMEOUT_S: f64 = 600.0;
/// Server error bodies can be whole HTML pages; messages keep their start.
const MAX_MESSAGE_CHARS: usize = 500;

/// A request that failed for good: the HTTP status when the server answered.
#[derive(Debug, Clone)]
pub struct RequestError {
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The server's API root, ending in `/v1`.
fn base_url(endpoint: &Endpoint) -> String {
    if endpoint.url.ends_with("/v1") {
        endpoint.url.clone()
    } else {
        format!("{}/v1", endpoint.url)
    }
}

/// Whether the server answers `GET /v1/models` with a model list within `timeout`, once and
/// without retries: a quick "is it up now" for the model picker, not a request a run relies on.
pub fn answers_models(endpoint: &Endpoint, opts: &ServerOptions, timeout: Duration) -> bool {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    let mut req = agent.get(&format!("{}/models", base_url(endpoint)));
    if let Some(key) = &opts.api_key {
        req = req.set("Authorization", &format!("Bearer {key}"));
    }
    let Ok(resp) = req.call() else { return false };
    let Ok(text) = resp.into_string() else { return false };
    serde_json::from_str::<Value>(&text).is_ok_and(|v| v.get("data").is_some_and(Value::is_array))
}

pub struct Client {
    agent: ureq::Agent,
    /// Ends in `/v1`.
    base: String,
    api_key: Option<String>,
    /// `running:URL`, naming the server in errors.
    pub origin: String,
}

impl Client {
    /// `connections`: how many requests may be in flight at once (kept alive between requests).
    pub fn new(endpoint: &Endpoint, connections: usize, opts: &ServerOptions) -> Result<Self> {
        let origin = format!("running:{}", endpoint.url);
        let read_timeout = parse_read_timeout(opts.request_timeout.as_deref())
            .map_err(|e| Error::model(&origin, e.to_string()))?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(read_timeout)
            .timeout_write(WRITE_TIMEOUT)
            .max_idle_connections_per_host(connections.max(1))
            .user_agent(concat!("benchgen/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self { agent, base: base_url(endpoint), api_key: opts.api_key.clone(), origin })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn get(&self, path: &str) -> Result<Value, RequestError> {
        self.send("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, RequestError> {
        self.send("POST", path, Some(&body.to_string()))
    }

    fn send(&self, method: &str, path: &str, body: Option<&str>) -> Result<Value, RequestError> {
        let url = format!("{}{path}", self.base);
        let mut jitter = SplitMix64::new(clock_seed());
        let mut attempt = 1;
        loop {
            let (error, retry_after) = match self.attempt(method, &url, body) {
                Ok(v) => return Ok(v),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(e, retry_after)) => (e, retry_after),
            };
            if attempt >= MAX_ATTEMPTS || crate::interrupt::requested() {
                return Err(RequestError {
                    message: format!("{} (gave up after {attempt} attempt(s))", error.message),
                    ..error
                });
            }
            let pause = retry_after.map_or_else(
                || {
                    let full = (BACKOFF_BASE_S * 2f64.powi(attempt as i32 - 1)).min(BACKOFF_CAP_S);
                    // Half to all of the step, so workers that failed together do not retry together.
                    full * (0.5 + 0.5 * jitter.unit())
                },
                |s| s.clamp(0.0, RETRY_AFTER_CAP_S),
            );
            pause_unless_interrupted(Duration::from_secs_f64(pause));
            attempt += 1;
        }
    }

    fn attempt(&self, method: &str, url: &str, body: Option<&str>) -> Result<Value, Attempt> {
        let mut req = self.agent.request(method, url).set("Accept", "application/json");
        if let Some(key) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let sent = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        match sent {
            Ok(resp) => {
                // A connection dropped mid-body is as transient as one refused.
                let text = resp
                    .into_string()
                    .map_err(|e| Attempt::Retry(transport(url, &e.to_string()), None))?;
                serde_json::from_str(&text).map_err(|e| {
                    Attempt::Final(RequestError {
                        status: None,
                        message: format!("{url}: the answer is not JSON ({e}): {}", clip(&text)),
                    })
                })
            }
            Err(ureq::Error::Status(code, resp)) => {
                let retry_after =
                    resp.header("retry-after").and_then(|h| h.trim().parse::<f64>().ok());
                let detail = server_message(resp);
                let hint = if code == 401 || code == 403 {
                    " (the API key comes from BENCHGEN_API_KEY, else OPENAI_API_KEY)"
                } else {
                    ""
                };
                let error = RequestError {
                    status: Some(code),
                    message: format!("{url}: HTTP {code}: {detail}{hint}"),
                };
                if code == 429 || code >= 500 {
                    Err(Attempt::Retry(error, retry_after))
                } else {
                    Err(Attempt::Final(error))
                }
            }
            Err(ureq::Error::Transport(t)) => {
                // ureq puts the URL first; the message already names it.
                let text = t.to_string();
                let prefix = t.url().map(|u| format!("{u}: ")).unwrap_or_default();
                let error = transport(url, text.strip_prefix(&prefix).unwrap_or(&text));
                match t.kind() {
                    ureq::ErrorKind::Dns
                    | ureq::ErrorKind::ConnectionFailed
                    | ureq::ErrorKind::Io
                    | ureq::ErrorKind::BadStatus
                    | ureq::ErrorKind::ProxyConnect => Err(Attempt::Retry(error, None)),
                    _ => Err(Attempt::Final(error)),
                }
            }
        }
    }
}

enum Attempt {
    /// Worth another try, after the server's `Retry-After` (seconds) if it sent one.
    Retry(RequestError, Option<f64>),
    Final(RequestError),
}

fn transport(url: &str, detail: &str) -> RequestError {
    RequestError { status: None, message: format!("cannot reach {url}: {detail}") }
}

/// The `error.message` of an OpenAI-style error body, else the body itself.
fn server_message(resp: ureq::Response) -> String {
    let text = resp.into_string().unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    match message {
        Some(m) => clip(&m),
        None if text.trim().is_empty() => "(empty body)".into(),
        None => clip(text.trim()),
    }
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// `BENCHGEN_REQUEST_TIMEOUT` set to something that is not a positive number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("BENCHGEN_REQUEST_TIMEOUT={value}: expected a number of seconds above 0")]
pub struct BadRequestTimeout {
    /// The variable's value, as set.
    pub value: String,
}

fn parse_read_timeout(var: Option<&str>) -> Result<Duration, BadRequestTimeout> {
    match var {
        Some(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
            _ => Err(BadRequestTimeout { value: v.to_string() }),
        },
        _ => Ok(Duration::from_secs_f64(DEFAULT_READ_TIMEOUT_S)),
    }
}

/// Sleeps in short steps, so Ctrl-C during a long `Retry-After` stops the run promptly.
fn pause_unless_interrupted(total: Duration) {
    let step = Duration::from_millis(100);
    let mut left = total;
    while !left.is_zero() && !crate::interrupt::requested() {
        let now = left.min(step);
        std::thread::sleep(now);
        left -= now;
    }
}

/// Jitter only has to differ between workers and runs, not be unpredictable.
fn clock_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let thread = format!("{:?}", std::thread::current().id());
    thread.bytes().fold(nanos, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_gets_v1_once() {
        let opts = ServerOptions::default();
        let c = Client::new(&Endpoint { url: "http://h:1".into(), model: None }, 1, &opts).unwrap();
        assert_eq!(c.base(), "http://h:1/v1");
        let c =
            Client::new(&Endpoint { url: "http://h:1/v1".into(), model: None }, 1, &opts).unwrap();
        assert_eq!(c.base(), "http://h:1/v1");
        assert_eq!(c.origin, "running:http://h:1/v1");
    }

    #[test]
    fn request_timeout_is_seconds_above_zero() {
        assert_eq!(parse_read_timeout(Some(" 2.5 ")), Ok(Duration::from_secs_f64(2.5)));
        assert_eq!(parse_read_timeout(None), Ok(Duration::from_secs_f64(DEFAULT_READ_TIMEOUT_S)));
        let e = parse_read_timeout(Some("0")).unwrap_err();
        assert_eq!(e, BadRequestTimeout { value: "0".into() });
        assert_eq!(
            e.to_string(),
            "BENCHGEN_REQUEST_TIMEOUT=0: expected a number of seconds above 0"
        );
    }

    #[test]
    fn long_messages_are_clipped_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        let c = clip(&long);
        assert_eq!(c.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(clip("short"), "short");
    }
}
