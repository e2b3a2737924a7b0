//! A stand-in for the HuggingFace hub on 127.0.0.1: the file-list API and `resolve` downloads
//! with ranges, etags and commits, as hf-hub and huggingface_hub expect them, plus a request
//! log, a required token and a fault that drops connections mid-file. It serves one model repo
//! (`ORG/NAME`) or one dataset repo (`datasets/ORG/NAME`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub const REPO: &str = "test-org/tiny-llama";
pub const COMMIT: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
pub const TAG: &str = "v1.0";

/// What the fake hub serves: one repo at one commit.
#[derive(Clone)]
pub struct HubFixture {
    pub repo: String,
    pub commit: String,
    /// Branches and tags naming the commit (the commit itself always does).
    pub revisions: Vec<String>,
    pub files: BTreeMap<String, Vec<u8>>,
    /// Listed by the API but answered 404 on download (a broken or racing repo).
    pub listed_only: BTreeSet<String>,
    /// Every request must carry `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Body downloads of this file cut off halfway, this many times, before it is served whole.
    pub drop_file: Option<(String, usize)>,
    /// Answer resumed downloads (`bytes=N-`, N > 0) with the whole file, as some proxies do.
    pub ignore_resume_ranges: bool,
}

/// `fixtures/embedded/model` (a real tiny Llama) under [`REPO`], with files a model load does
/// not need, so tests can check they are never fetched.
pub fn tiny_llama() -> HubFixture {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/embedded/model");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        files.insert(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&path).unwrap(),
        );
    }
    files.insert("README.md".into(), b"# tiny llama\n".to_vec());
    files.insert("pytorch_model.bin".into(), vec![7u8; 4096]);
    HubFixture {
        repo: REPO.into(),
        commit: COMMIT.into(),
        revisions: vec!["main".into(), TAG.into()],
        files,
        listed_only: BTreeSet::new(),
        token: None,
        drop_file: None,
        ignore_resume_ranges: false,
    }
}

/// A dataset repo (`datasets/ORG/NAME`) holding `files`, at [`COMMIT`] on `main`.
pub fn dataset(repo: &str, files: BTreeMap<String, Vec<u8>>) -> HubFixture {
    HubFixture {
        repo: format!("datasets/{repo}"),
        commit: COMMIT.into(),
        revisions: vec!["main".into()],
        files,
        listed_only: BTreeSet::new(),
        token: None,
        drop_file: None,
        ignore_resume_ranges: false,
    }
}

/// The real binary talking to the fake hub at `endpoint`, with `hf_home` as its HF home and
/// none of the user's hub, cache, token, data-folder, environment or registry settings.
pub fn benchgen_on_hub(endpoint: &str, hf_home: &Path) -> Command {
    let mut cmd = super::benchgen_command();
    for k in [
        "HF_HUB_CACHE",
        "HF_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
        "XDG_CACHE_HOME",
        "BENCHGEN_DATA_DIR",
        "BENCHGEN_ENVS",
        "BENCHGEN_MODELS",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("HF_HOME", hf_home).env("HF_ENDPOINT", endpoint);
    cmd
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

impl Logged {
    /// The file of a `resolve` request.
    pub fn file(&self) -> Option<&str> {
        let rest = self.path.strip_prefix('/')?;
        let (_, after) = rest.split_once("/resolve/")?;
        after.split_once('/').map(|(_, f)| f)
    }

    /// A request for file content, not hf-hub's one-byte metadata probe.
    pub fn is_body(&self) -> bool {
        self.method == "GET" && self.file().is_some() && self.range.as_deref() != Some("bytes=0-0")
    }
}

struct State {
    fixture: Mutex<HubFixture>,
    log: Mutex<Vec<Logged>>,
}

pub struct HubServer {
    pub port: u16,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HubServer {
    pub fn start(fixture: HubFixture) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(State { fixture: Mutex::new(fixture), log: Mutex::new(Vec::new()) });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let st = st.clone();
                        std::thread::spawn(move || {
                            let _ = serve(stream, &st);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { port, state, stop, accept: Some(accept) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
    }

    /// Files whose content was requested (metadata probes aside).
    pub fn fetched(&self) -> BTreeSet<String> {
        self.requests()
            .iter()
            .filter(|r| r.is_body())
            .filter_map(|r| r.file().map(str::to_string))
            .collect()
    }

    /// Every file named by any request, probes included.
    pub fn touched(&self) -> BTreeSet<String> {
        self.requests().iter().filter_map(|r| r.file().map(str::to_string)).collect()
    }

    pub fn update(&self, f: impl FnOnce(&mut HubFixture)) {
        f(&mut self.state.fixture.lock().unwrap());
    }

    /// Stops accepting; later connections are refused.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) =
        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let req = Logged {
        method,
        path: path.split('?').next().unwrap_or("").replace("%2F", "/"),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
    };
    state.log.lock().unwrap().push(req.clone());
    let reply = route(&req, &mut state.fixture.lock().unwrap());
    reply.send(stream, req.method == "HEAD")
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send the headers and this many body bytes, then hang up.
    cut_at: Option<usize>,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self { status, headers: Vec::new(), body: body.into(), cut_at: None }
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        let mut r = Self::new(status, serde_json::json!({ "error": message }).to_string());
        r.headers.push(("x-error-code".into(), code.into()));
        r.headers.push(("content-type".into(), "application/json".into()));
        r
    }

    fn send(self, mut stream: TcpStream, head_only: bool) -> std::io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            206 => "Partial Content",
            401 => "Unauthorized",
            404 => "Not Found",
            416 => "Range Not Satisfiable",
            _ => "Other",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status,
            self.body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        if !head_only {
            let end = self.cut_at.unwrap_or(self.body.len());
            stream.write_all(&self.body[..end])?;
        }
        stream.flush()?;
        stream.shutdown(Shutdown::Both)
    }
}

fn route(req: &Logged, fx: &mut HubFixture) -> Reply {
    if let Some(token) = &fx.token {
        if req.authorization.as_deref() != Some(&format!("Bearer {token}")) {
            return Reply::error(
                401,
                "GatedRepo",
                "Access to this model is restricted: you must be authenticated",
            );
        }
    }
    let known_rev =
        |fx: &HubFixture, rev: &str| rev == fx.commit || fx.revisions.iter().any(|r| r == rev);
    // Dataset fixtures name their repo `datasets/ORG/NAME`, as the hub's URLs do.
    let api = req
        .path
        .strip_prefix("/api/models/")
        .or_else(|| req.path.strip_prefix("/api/").filter(|r| r.starts_with("datasets/")));
    if let Some(rest) = api {
        let Some((repo, rev)) = rest.split_once("/revision/") else {
            return Reply::error(404, "RepoNotFound", "not found");
        };
        if repo != fx.repo {
            return Reply::error(404, "RepoNotFound", "Repository not found");
        }
        if !known_rev(fx, rev) {
            return Reply::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
        }
        let siblings: Vec<_> = fx
            .files
            .keys()
            .chain(fx.listed_only.iter())
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let body = serde_json::json!({ "id": fx.repo, "sha": fx.commit, "siblings": siblings });
        let mut r = Reply::new(200, body.to_string());
        r.headers.push(("content-type".into(), "application/json".into()));
        return r;
    }
    let Some((repo, after)) = req.path.strip_prefix('/').and_then(|p| p.split_once("/resolve/"))
    else {
        return Reply::error(404, "RepoNotFound", "not found");
    };
    if repo != fx.repo {
        return Reply::error(404, "RepoNotFound", "Repository not found");
    }
    // Revisions with slashes arrive escaped; a commit or plain branch has none.
    let Some((rev, file)) = after.split_once('/') else {
        return Reply::error(404, "EntryNotFound", "no file");
    };
    if !known_rev(fx, rev) {
        return Reply::error(404, "RevisionNotFound", &format!("Invalid rev id: {rev}"));
    }
    let Some(content) = fx.files.get(file).filter(|_| !fx.listed_only.contains(file)) else {
        return Reply::error(404, "EntryNotFound", &format!("{file} does not exist"));
    };
    let total = content.len();
    let common = vec![
        ("etag".to_string(), format!("\"{}\"", sha256_hex(content))),
        ("x-repo-commit".to_string(), fx.commit.clone()),
        ("accept-ranges".to_string(), "bytes".to_string()),
    ];
    let range = req
        .range
        .as_deref()
        .and_then(parse_range)
        .filter(|(start, _)| !(fx.ignore_resume_ranges && *start > 0));
    let mut reply = match range {
        Some((start, _)) if start >= total => {
            let mut r = Reply::new(416, Vec::new());
            r.headers.push(("content-range".into(), format!("bytes */{total}")));
            return r;
        }
        Some((start, end)) => {
            let end = end.unwrap_or(total - 1).min(total - 1);
            let mut r = Reply::new(206, content[start..=end].to_vec());
            r.headers.push(("content-range".into(), format!("bytes {start}-{end}/{total}")));
            r
        }
        None => Reply::new(200, content.clone()),
    };
    reply.headers.extend(common);
    if req.is_body() {
        if let Some((f, left)) = &mut fx.drop_file {
            if f == file && *left > 0 {
                *left -= 1;
                reply.cut_at = Some(reply.body.len() / 2);
            }
        }
    }
    reply
}

/// `bytes=START-` or `bytes=START-END`.
fn parse_range(h: &str) -> Option<(usize, Option<usize>)> {
    let (start, end) = h.strip_prefix("bytes=")?.split_once('-')?;
    let end = if end.is_empty() { None } else { Some(end.parse().ok()?) };
    Some((start.parse().ok()?, end))
}
