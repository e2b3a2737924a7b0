//! `benchgen serve` for tests: the real binary on a port the system picks (read from its first
//! line), with nothing of the user's registry, HF cache or checkpoints, and a plain HTTP/1.1
//! client on std that sends paths exactly as written (no normalising of `..`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub struct Served {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl Served {
    /// `benchgen serve --addr 127.0.0.1:0 --runs-dir runs` in `cwd`, its home folders in `cwd`
    /// too; `vars` are set on top.
    pub fn start(cwd: &Path, vars: &[(&str, &str)]) -> Self {
        let mut cmd = super::benchgen_command();
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--runs-dir", "runs"]).current_dir(cwd);
        isolate(&mut cmd, cwd);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("benchgen serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .map(str::to_string);
        let Some(addr) = addr else {
            let _ = child.kill();
            panic!("benchgen serve printed no address: {line:?}");
        };
        Self { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> Reply {
        request(&self.addr, "GET", path, &[], "")
    }

    /// A form post, as a browser on this server's own page sends it.
    pub fn post_form(&self, path: &str, form: &str) -> Reply {
        let origin = format!("http://{}", self.addr);
        request(
            &self.addr,
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded"), ("Origin", &origin)],
            form,
        )
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Model sources of the test's own: no registry, HF cache or checkpoints of the user's.
pub fn isolate(cmd: &mut std::process::Command, home: &Path) {
    for k in
        ["BENCHGEN_MODELS", "HF_HUB_CACHE", "BENCHGEN_ENVS", "BENCHGEN_API_KEY", "OPENAI_API_KEY"]
    {
        cmd.env_remove(k);
    }
    cmd.env("XDG_CONFIG_HOME", home.join("config"))
        .env("HF_HOME", home.join("hf"))
        .env("HOME", home)
        .env("BENCHGEN_TRAINED_DIR", home.join("checkpoints"));
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`), the reply read to its end.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reply");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = unchunk(&body);
    }
    Reply { status, headers, body }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
    out
}

/// Waits (up to a minute) until run `id` in `runs` is no longer Running; returns its status.
pub fn wait_for_end(runs: &Path, id: u64) -> String {
    let started = Instant::now();
    loop {
        let record = runs.join(id.to_string()).join("run.json");
        if let Ok(text) = std::fs::read_to_string(&record) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                let status = v["status"].as_str().unwrap_or("").to_string();
                if status != "Running" {
                    return status;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "run {id} did not end in a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
}
