//! Helpers for tests that run the real `benchgen` binary.

pub mod decode;
pub mod hub_server;
pub mod openai_server;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The device the model tests run on: `BENCHGEN_TEST_DEVICE` (`cuda`, `cuda:N`, `metal`) in a
/// GPU build, else the CPU. Lets one test suite check the GPU paths against the same goldens.
pub fn test_device() -> candle_core::Device {
    match std::env::var("BENCHGEN_TEST_DEVICE") {
        Ok(spec) if !spec.is_empty() => benchgen::device::parse_device(&spec)
            .unwrap_or_else(|e| panic!("BENCHGEN_TEST_DEVICE: {e}")),
        _ => candle_core::Device::Cpu,
    }
}

/// Model sources as the binary sets them up: from this process's variables (`HF_HUB_OFFLINE`,
/// `BENCHGEN_MODELS`, the hub's), for tests that resolve models through the library.
pub fn sources() -> benchgen::model::spec::SourceOptions {
    benchgen::model::spec::SourceOptions::from_vars(&benchgen::vars::ProcessVars::from_process())
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `Command` for the `benchgen` binary under test. With `BENCHGEN_TEST_RUNNER` set (a command
/// line, split on whitespace) it runs through that wrapper: a cross build's test binary runs
/// under qemu-user (`tools/aarch64_test.sh`), where spawning another aarch64 binary directly
/// fails without a binfmt_misc handler on the host. Unset, the binary runs as itself.
pub fn benchgen_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_benchgen");
    let runner = std::env::var("BENCHGEN_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(prog) => {
            let mut cmd = Command::new(prog);
            cmd.args(words).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

/// `benchgen` with `args`, run in `cwd`.
pub fn benchgen(cwd: &Path, args: &[&str]) -> Output {
    benchgen_command().args(args).current_dir(cwd).output().expect("benchgen runs")
}

/// Runs `cmd` (stdout and stderr piped) and returns its output; a run past `limit` is killed
/// and fails the test with what it printed, so a hang never hangs the suite.
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("benchgen starts");
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} ran past {limit:?}\nstdout:\n{}\nstderr:\n{}",
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout, showing both streams on failure.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// The Run ID a command's live log announces (`Run ID: N`).
pub fn run_id(out: &str) -> u64 {
    let line = out.lines().find_map(|l| l.strip_prefix("Run ID: "));
    line.unwrap_or_else(|| panic!("no Run ID in {out}")).trim().parse().unwrap()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The items `detailed_results.html` embeds for its script (`<script type="application/json">`),
/// read as the browser reads them: the element ends at the first `</script>`.
pub fn page_data(html: &str) -> serde_json::Value {
    let open = "<script type=\"application/json\" id=\"data\">";
    let start = html.find(open).expect("the page embeds its items") + open.len();
    let end = start + html[start..].find("</script>").expect("the data element is closed");
    serde_json::from_str(&html[start..end]).expect("the embedded items are JSON")
}

pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).expect("valid JSON line")).collect()
}

/// Entries of a zip archive: name → content.
pub fn unzip(path: &Path) -> std::collections::BTreeMap<String, String> {
    use std::io::Read;
    let mut zip =
        zip::ZipArchive::new(std::fs::File::open(path).expect("zip opens")).expect("valid zip");
    (0..zip.len())
        .map(|i| {
            let mut e = zip.by_index(i).expect("entry");
            let mut s = String::new();
            e.read_to_string(&mut s).expect("utf-8 entry");
            (e.name().to_string(), s)
        })
        .collect()
}

/// Copies a directory tree (fixtures are read-only inputs; tests work on copies).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// The fixture checkpoints of the families beyond Llama's (`tools/make_goldens.py`), one per
/// family.
pub const FAMILY_FIXTURES: [&str; 10] = [
    "gemma2-softcap-window",
    "gemma3-local-global",
    "phi3-longrope-partial",
    "olmo2-postnorm",
    "gptneox-parallel-partial",
    "gpt2-learned-pos",
    "mixtral-top2",
    "qwen2moe-shared",
    "qwen3moe-normtopk",
    "olmoe-top2",
];
