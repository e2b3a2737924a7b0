//! Online fetch: one `info()` for the commit and the file list, then only the needed files, at
//! that commit, through hf-hub (blobs named by etag, `.part` files resumed with a Range
//! request and renamed only once complete, relative snapshot links).

use std::collections::BTreeSet;
use std::time::Duration;

use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo};

use super::cache::{plan, shards, RepoCache};
use super::errors::{explain, retryable, Context, What};
use super::{is_commit, HubFile, HubOptions, HubSnapshot};
use crate::error::{Error, Result};

/// Tries per file. A dropped connection leaves a `.part` that the next try resumes; hf-hub's
/// own retry loop is not used because it reports failure after a last try that succeeded.
const ATTEMPTS: u32 = 4;

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.min(4))
}

pub(super) fn fetch(
    repo: &str,
    revision: &str,
    cache: &RepoCache,
    opts: &HubOptions,
) -> Result<HubSnapshot> {
    let cached = cache.snapshot(revision).is_ok();
    let commit = session(repo, revision, cache, opts, cached, |listed, fetcher| {
        let p = plan(&|f| listed.contains(f));
        if !p.missing.is_empty() {
            return Err(Error::model(
                fetcher.cx.origin,
                format!(
                    "revision {revision} (commit {}) has no {}: benchgen needs config.json, tokenizer.json and \
                     safetensors weights (model.safetensors, or model.safetensors.index.json and its shards)",
                    fetcher.commit,
                    p.missing.join(", ")
                ),
            ));
        }
        fetcher.all(&p.files, p.index.as_deref(), listed)
    })?;
    Ok(HubSnapshot { dir: cache.snapshot_dir(&commit), commit })
}

/// One named file of the repo (a dataset's data file).
pub(super) fn fetch_file(
    repo: &str,
    revision: &str,
    file: &str,
    cache: &RepoCache,
    opts: &HubOptions,
) -> Result<HubFile> {
    let cached = cache.file(revision, file).is_ok();
    let commit = session(repo, revision, cache, opts, cached, |listed, fetcher| {
        if !listed.contains(file) {
            let mut near: Vec<&str> = listed
                .iter()
                .map(String::as_str)
                .filter(|f| !f.starts_with('.'))
                .take(20)
                .collect();
            if listed.len() > near.len() {
                near.push("…");
            }
            return Err(cache.kind.error(
                fetcher.cx.origin,
                format!(
                    "revision {revision} (commit {}) has no file {file}; it has: {}",
                    fetcher.commit,
                    near.join(", ")
                ),
            ));
        }
        fetcher.get(file)
    })?;
    Ok(HubFile { path: cache.snapshot_dir(&commit).join(file), commit })
}

/// One `info()` for the commit of `revision` and the repo's file list, then `fetch` (given the
/// list) downloads what it needs at that commit; `revision`'s ref is written once it succeeds.
/// Returns the commit.
fn session(
    repo: &str,
    revision: &str,
    cache: &RepoCache,
    opts: &HubOptions,
    cached: bool,
    fetch: impl FnOnce(&BTreeSet<String>, &Fetcher) -> Result<()>,
) -> Result<String> {
    let kind = cache.kind;
    let origin = kind.origin(repo);
    let endpoint = opts.config.endpoint.clone();
    let token = opts.config.token();
    let cx = Context {
        origin: &origin,
        endpoint: &endpoint,
        token_sent: token.is_some(),
        cached,
        cache,
    };
    let info_what = What::Info { revision };
    let api = ApiBuilder::from_cache(Cache::new(opts.config.cache_dir.clone()))
        .with_endpoint(endpoint.clone())
        .with_token(token.clone())
        .with_progress(opts.progress)
        .with_retries(0)
        .build()
        .map_err(|e| explain(e, &info_what, &cx))?;
    let info = api
        .repo(Repo::with_revision(repo.to_string(), kind.repo_type(), revision.to_string()))
        .info()
        .map_err(|e| explain(e, &info_what, &cx))?;
    let commit = info.sha;
    if !is_commit(&commit) {
        return Err(kind.error(&origin, format!("{endpoint} answered {commit:?} as the commit of {revision}, not a 40-hex commit id")));
    }
    let listed: BTreeSet<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();

    let commit_ref_existed = cache.ref_path(&commit).exists();
    let fetcher = Fetcher {
        at: api.repo(Repo::with_revision(repo.to_string(), kind.repo_type(), commit.clone())),
        cache,
        commit: &commit,
        cx: &cx,
        token: token.as_deref(),
    };
    let fetched = fetch(&listed, &fetcher);
    // hf-hub records the commit it downloaded at as a ref named after itself, even when a later
    // file fails; huggingface_hub never writes such refs, and `models list` would show a branch.
    if !commit_ref_existed {
        let _ = std::fs::remove_file(cache.ref_path(&commit));
    }
    fetched?;
    if revision != commit {
        cache.write_ref(revision, &commit).map_err(|e| Error::io(cache.ref_path(revision), e))?;
    }
    Ok(commit)
}

struct Fetcher<'a> {
    at: ApiRepo,
    cache: &'a RepoCache,
    commit: &'a str,
    cx: &'a Context<'a>,
    token: Option<&'a str>,
}

impl Fetcher<'_> {
    /// `files`, then the shards `index` (one of them) lists, which the repo must have.
    fn all(&self, files: &[String], index: Option<&str>, listed: &BTreeSet<String>) -> Result<()> {
        for f in files {
            self.get(f)?;
        }
        let Some(index) = index else { return Ok(()) };
        let (origin, commit) = (self.cx.origin, self.commit);
        let path = self.cache.snapshot_dir(commit).join(index);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let shard_files = shards(&text)
            .map_err(|m| Error::model(origin, format!("{index} at commit {commit}: {m}")))?;
        let absent: Vec<&str> =
            shard_files.iter().filter(|f| !listed.contains(*f)).map(String::as_str).collect();
        if !absent.is_empty() {
            return Err(Error::model(
                origin,
                format!(
                    "{index} at commit {commit} lists shards the repository lacks: {}",
                    absent.join(", ")
                ),
            ));
        }
        shard_files.iter().try_for_each(|s| self.get(s))
    }

    /// Downloads `file` into the snapshot, retrying what a retry can fix.
    fn download(&self, file: &str) -> Result<()> {
        if self.cache.has(self.commit, file) {
            return Ok(());
        }
        let what = What::File { name: file, commit: self.commit };
        let mut attempt = 0;
        let mut cleared = false;
        loop {
            match self.at.download(file) {
                Ok(_) => break,
                Err(e) if !cleared && bad_part(&e) => {
                    cleared = true;
                    self.remove_part(file);
                }
                Err(e) if retryable(&e) && attempt + 1 < ATTEMPTS => {
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                Err(e) => return Err(explain(e, &what, self.cx)),
            }
        }
        // hf-hub files a download under the commit the server names in x-repo-commit.
        if !self.cache.has(self.commit, file) {
            return Err(self.cache.kind.error(
                self.cx.origin,
                format!("{} served {file} for a commit other than {}: retry, the repository may have changed", self.cx.endpoint, self.commit),
            ));
        }
        Ok(())
    }

    /// A file already in the snapshot (from an earlier run or from Python) is not downloaded;
    /// a new one is checked against its etag where that is a sha256 (LFS files: the weights).
    /// hf-hub appends whatever a resumed request returns, so a server that ignores Range would
    /// otherwise leave a corrupt blob at its final path.
    fn get(&self, file: &str) -> Result<()> {
        if self.cache.has(self.commit, file) {
            return Ok(());
        }
        for tries_left in (0..2).rev() {
            self.download(file)?;
            let link = self.cache.snapshot_dir(self.commit).join(file);
            let blob = std::fs::canonicalize(&link).map_err(|e| Error::io(&link, e))?;
            let name = blob.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if !(name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Ok(());
            }
            let actual = crate::hash::sha256_file(&blob)?;
            if actual.eq_ignore_ascii_case(&name) {
                return Ok(());
            }
            let _ = std::fs::remove_file(&link);
            let _ = std::fs::remove_file(&blob);
            if tries_left == 0 {
                return Err(self.cache.kind.error(
                    self.cx.origin,
                    format!("{file} from {} does not match its sha256 {name} (got {actual}); it was removed from the cache: retry", self.cx.endpoint),
                ));
            }
        }
        Ok(())
    }

    /// Deletes the file's `.part` so the next try starts over. hf-hub names it after the etag,
    /// which only the hub's answer gives: ask for one byte, as hf-hub does, without following
    /// redirects (the etag is on the hub's answer, not the CDN's).
    fn remove_part(&self, file: &str) {
        let url = self.at.url(file);
        let agent = ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(30)).build();
        let mut req = agent.get(&url).set("Range", "bytes=0-0");
        if let Some(t) = self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let Ok(resp) = req.call() else { return };
        let Some(etag) = resp.header("x-linked-etag").or_else(|| resp.header("etag")) else {
            return;
        };
        let etag = etag.replace('"', "");
        if etag.is_empty() || etag.contains(['/', '\\']) || etag.contains("..") {
            return;
        }
        let _ = std::fs::remove_file(self.cache.dir.join("blobs").join(format!("{etag}.part")));
    }
}

/// A `.part` hf-hub cannot resume: as long as the file (killed between the last byte and the
/// rename, so resuming asks for bytes past the end: 416) or longer.
fn bad_part(e: &ApiError) -> bool {
    match e {
        ApiError::InvalidResume => true,
        ApiError::RequestError(e) => matches!(e.as_ref(), ureq::Error::Status(416, _)),
        _ => false,
    }
}
