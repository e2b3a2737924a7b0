//! `benchgen serve` in a real browser: headless Chromium from Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver by fantoccini. Without them each test says
//! `SKIPPED: ...` and passes (`.ci/run` installs them). With `BENCHGEN_SCREENSHOT_DIR` set, every
//! page visited is saved there as a PNG.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::common::openai_server::{Behavior, OpenAiServer};
use crate::common::serve::{isolate, request, Served};
use crate::common::*;

/// How long a page may take to show what a test waits for (runs included).
const PATIENCE: Duration = Duration::from_secs(90);

struct Browser {
    client: Client,
    driver: Child,
    shots: Option<PathBuf>,
}

impl Browser {
    /// The browser, or `None` (having said why) where Chromium or its driver is not installed.
    async fn start(test: &str) -> Option<Self> {
        let (Some(chromium), Some(driver)) =
            (find_program(&["chromium", "chromium-browser"]), find_program(&["chromedriver"]))
        else {
            eprintln!(
                "SKIPPED: {test}: headless Chromium and chromedriver are not installed \
                 (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // A process group of its own, so that the browsers it starts go with it (see Drop).
        let driver = std::os::unix::process::CommandExt::process_group(
            Command::new(driver).arg(format!("--port={port}")),
            0,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let options = serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1400", "--no-first-run", "--no-default-browser-check",
                     "--disable-crash-reporter", "--disable-breakpad"],
        });
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://{addr}"))
            .await
            .expect("a Chromium session");
        let shots = std::env::var_os("BENCHGEN_SCREENSHOT_DIR").map(PathBuf::from);
        Some(Self { client, driver, shots })
    }

    async fn shot(&self, name: &str) {
        let Some(dir) = &self.shots else { return };
        std::fs::create_dir_all(dir).unwrap();
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn text_of(&self, css: &str) -> String {
        let element =
            self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        // textContent: also what is inside a closed <details>.
        element.prop("textContent").await.unwrap().unwrap_or_default()
    }

    async fn field(&self, name: &str) -> String {
        self.text_of(&format!("dd[data-field='{name}']")).await.trim().to_string()
    }

    async fn shown(&self, css: &str) -> bool {
        let element =
            self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        element.is_displayed().await.unwrap()
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    async fn click(&self, css: &str) {
        let element =
            self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        element.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn page_text(&self) -> String {
        self.text_of("body").await
    }

    /// Ends the session; the driver goes with the browser (Drop), as it does when a test fails.
    async fn finish(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the driver's own process group (its pid, made a group leader).
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
    })
}

/// Polls `probe` until it gives a value, failing the test with `what` after [`PATIENCE`].
async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Every link of the run page's Files panel gives the bytes of the file on disk, and there is
/// one for every file the run holds.
async fn check_downloads(b: &Browser, served: &Served, run: &Path) {
    let links = b.client.find_all(Locator::Css("#files a.download")).await.unwrap();
    let mut offered = BTreeSet::new();
    for link in links {
        let name = link.attr("data-file").await.unwrap().expect("data-file");
        let href = link.attr("href").await.unwrap().expect("href");
        let reply = served.get(&href);
        assert_eq!(reply.status, 200, "{href}");
        assert_eq!(
            reply.body,
            std::fs::read(run.join(&name)).unwrap(),
            "{href}: not the file's bytes"
        );
        assert!(reply.header("content-disposition").is_some_and(|d| d.starts_with("attachment")));
        offered.insert(name);
    }
    for must in [
        "submission.zip",
        "predictions.jsonl",
        "scoring_output/scores.json",
        "detailed_results.json",
        "detailed_results.html",
        "finetune.jsonl",
        "log.txt",
        "run.json",
    ] {
        assert!(offered.contains(must), "the Files panel has no {must}: {offered:?}");
    }
}

#[test]
fn evaluate_in_the_browser_from_environment_to_downloads() {
    runtime().block_on(async {
        let Some(b) = Browser::start("evaluate_in_the_browser_from_environment_to_downloads").await
        else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let served = Served::start(dir.path(), &[]);
        let run = dir.path().join("runs/1");

        // Environments, then one environment's tabs.
        b.client.goto(&served.url("/")).await.unwrap();
        b.shot("01-environments").await;
        b.click("a[href='/envs/arithmetic']").await;
        assert_eq!(b.text_of("h1").await, "arithmetic");
        let readme = b.text_of(".readme").await;
        assert!(readme.contains("The embedded default environment of benchgen"), "{readme}");
        b.shot("02-environment-overview").await;
        b.click("nav.tabs a[href$='/phases']").await;
        assert!(b.page_text().await.contains("100 items"));
        b.shot("03-environment-phases").await;
        b.click("nav.tabs a[href$='/leaderboard']").await;
        assert!(b.page_text().await.contains("No completed runs yet."));
        b.click("nav.tabs a[href$='/evaluations']").await;
        assert!(b.page_text().await.contains("No runs of this environment"));

        // Evaluate: the four source tabs; the embedded model is under Platform Models.
        b.click("nav.tabs a[href$='/evaluate']").await;
        assert_eq!(b.text_of("form h2").await, "Select a model to evaluate");
        for (i, title) in ["Platform Models (1)", "Running (0)", "Trained (0)", "HuggingFace (0)"]
            .iter()
            .enumerate()
        {
            assert_eq!(b.text_of(&format!("#tab-{i}")).await, *title);
        }
        b.click("#tab-2").await;
        assert!(b.shown("#panel-2").await && !b.shown("#panel-0").await, "one panel at a time");
        b.click("#tab-0").await;
        assert!(b.shown("#panel-0").await && !b.shown("#panel-2").await);
        b.click("input[name='model'][value='embedded']").await;
        b.shot("04-evaluate").await;
        b.click("#run-evaluation").await;

        // The run page: its fields at once, then the breakdown once it completed.
        wait_for("the run page", || async { (b.path().await == "/runs/1").then_some(()) }).await;
        wait_for("the Score Breakdown", || async {
            b.client.find(Locator::Css("#breakdown")).await.ok().map(|_| ())
        })
        .await;
        assert_eq!(b.field("Status").await, "Completed");
        assert_eq!(b.field("Model").await, "embedded");
        assert!(b.field("Environment").await.starts_with("arithmetic v1.0.0"));
        assert_eq!(b.field("Run ID").await, "1");
        assert_eq!(b.field("Submission").await, "submission.zip");
        assert!(!b.field("Created").await.is_empty());
        let log = b.text_of("#log").await;
        assert!(log.contains("Processing: 100/100 (100%)"), "{log}");
        assert_eq!(log, std::fs::read_to_string(run.join("log.txt")).unwrap());
        let accuracy = log
            .lines()
            .map(benchgen::log::strip_timestamp)
            .find(|l| l.starts_with("accuracy="))
            .expect("an accuracy line");
        let breakdown = b.text_of("#breakdown").await;
        assert!(breakdown.contains(accuracy) && breakdown.contains("Overall Score"), "{breakdown}");
        b.shot("07-run-completed").await;
        check_downloads(&b, &served, &run).await;

        // Detailed Results viewed in the browser.
        let view = b.client.find(Locator::Css("a[target='_blank']")).await.unwrap();
        let href = view.attr("href").await.unwrap().unwrap();
        b.client.goto(&served.url(&href)).await.unwrap();
        assert!(b.text_of("h1").await.starts_with("Detailed Results"));
        b.shot("08-detailed-results").await;

        // The Generated dataset's own page: every example, as turns.
        b.client.goto(&served.url("/runs/1")).await.unwrap();
        b.click("#view-finetune").await;
        let lines = read_jsonl(&run.join("finetune.jsonl"));
        let examples = b.client.find_all(Locator::Css(".example")).await.unwrap();
        assert_eq!(examples.len(), lines.len());
        let first = &lines[0]["messages"];
        let shown = examples[0].prop("textContent").await.unwrap().unwrap_or_default();
        for turn in first.as_array().unwrap() {
            assert!(shown.contains(turn["content"].as_str().unwrap()), "{shown} lacks {turn}");
        }
        b.shot("09-finetune-dataset").await;

        // The run now ranks on the Leaderboard and is listed under Evaluations.
        b.client.goto(&served.url("/envs/arithmetic/leaderboard")).await.unwrap();
        let board = b.text_of("table").await;
        assert!(board.contains("embedded") && board.contains("68.00"), "{board}");
        b.shot("10-leaderboard").await;
        b.client.goto(&served.url("/envs/arithmetic/evaluations")).await.unwrap();
        assert!(b.client.find(Locator::Css("a[href='/runs/1']")).await.is_ok());
        b.finish().await;
    });
}

#[test]
fn a_run_started_from_the_command_line_is_watched_live() {
    runtime().block_on(async {
        let Some(b) = Browser::start("a_run_started_from_the_command_line_is_watched_live").await
        else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        // A server slow enough (20 items, one at a time) that the run is seen going.
        let server = OpenAiServer::start(Behavior {
            delay: Duration::from_millis(250),
            ..Behavior::default()
        });
        let spec = format!("running:{}#test-model", server.url());
        let registry = dir.path().join("config/benchgen/models.toml");
        std::fs::create_dir_all(registry.parent().unwrap()).unwrap();
        std::fs::write(&registry, format!("[models.slow]\nsource = \"{spec}\"\n")).unwrap();
        let served = Served::start(dir.path(), &[]);

        // The endpoint answers: it is badged running in the picker's Running tab.
        b.client.goto(&served.url("/envs/arithmetic/evaluate")).await.unwrap();
        b.click("#tab-1").await;
        let running = b.text_of("#panel-1").await;
        assert!(running.contains("platform:slow") && running.contains("running"), "{running}");
        b.shot("05-evaluate-running-endpoint").await;

        let mut cmd = benchgen_command();
        cmd.args(["eval", "--model", &spec, "--limit", "20", "--batch-size", "1"])
            .args(["--runs-dir", "runs"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        isolate(&mut cmd, dir.path());
        let cli = cmd.spawn().expect("benchgen eval starts");

        // It appears under Evaluations, as it runs.
        b.client.goto(&served.url("/envs/arithmetic/evaluations")).await.unwrap();
        wait_for("the CLI run under Evaluations", || async {
            let found = b.client.find(Locator::Css("a[href='/runs/1']")).await.ok();
            if found.is_none() {
                b.client.refresh().await.unwrap();
            }
            found
        })
        .await;
        b.click("a[href='/runs/1']").await;
        assert_eq!(b.field("Status").await, "Running");
        assert_eq!(b.field("Model").await, spec);
        // The log grows on the page while the run goes: a Processing line before the last.
        let partial = wait_for("a live Processing line", || async {
            let log = b.text_of("#log").await;
            (log.contains("Processing: ") && !log.contains("(100%)")).then_some(log)
        })
        .await;
        assert!(partial.contains("Run ID: 1"), "{partial}");
        assert!(b.client.find(Locator::Css("#breakdown")).await.is_err());
        b.shot("06-run-live").await;

        wait_for("the Score Breakdown", || async {
            b.client.find(Locator::Css("#breakdown")).await.ok().map(|_| ())
        })
        .await;
        assert_eq!(b.field("Status").await, "Completed");
        let log = b.text_of("#log").await;
        assert!(log.contains("Processing: 20/20 (100%)"), "{log}");
        b.shot("11-run-completed-from-cli").await;

        let out = cli.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(request(&served.addr, "GET", "/runs/1", &[], "").text().contains("Completed"));
        b.finish().await;
    });
}
