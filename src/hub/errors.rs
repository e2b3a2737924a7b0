//! Hub failures in the user's terms: what went wrong, where, and what to do about it.

use hf_hub::api::sync::ApiError;

use super::cache::{Missing, RepoCache};
use super::RepoKind;
use crate::error::Error;

pub(super) fn offline(origin: &str, revision: &str, cache: &RepoCache, missing: &Missing) -> Error {
    let place = match &missing.commit {
        Some(c) => format!("{}", cache.snapshot_dir(c).display()),
        None => format!("{} (no refs/{revision})", cache.dir.display()),
    };
    cache.kind.error(
        origin,
        format!(
            "offline (--offline or HF_HUB_OFFLINE) and revision {revision} is not fully cached: missing {} in {place}; \
             run once without --offline and with HF_HUB_OFFLINE unset to download it",
            missing.files.join(", ")
        ),
    )
}

/// What was being fetched when a request failed.
pub(super) enum What<'a> {
    Info { revision: &'a str },
    File { name: &'a str, commit: &'a str },
}

/// Facts a message needs beyond the error itself.
pub(super) struct Context<'a> {
    pub origin: &'a str,
    pub endpoint: &'a str,
    pub token_sent: bool,
    /// The revision is complete in the cache, so `--offline` would work.
    pub cached: bool,
    pub cache: &'a RepoCache,
}

impl Context<'_> {
    fn offline_hint(&self) -> String {
        if self.cached {
            match self.cache.kind {
                RepoKind::Model => {
                    "; this model is in the cache: pass --offline (or set HF_HUB_OFFLINE=1) to use it without the network".into()
                }
                RepoKind::Dataset => {
                    "; this file is in the cache: set HF_HUB_OFFLINE=1 (or pass --offline to eval) to use it without the network".into()
                }
            }
        } else {
            String::new()
        }
    }
}

/// Whether another attempt may succeed: dropped connections and server trouble, not refusals.
pub(super) fn retryable(e: &ApiError) -> bool {
    match e {
        ApiError::RequestError(e) => match e.as_ref() {
            ureq::Error::Status(code, _) => *code >= 500 || *code == 429,
            ureq::Error::Transport(_) => true,
        },
        ApiError::IoError(_) | ApiError::TooManyRetries(_) => true,
        _ => false,
    }
}

pub(super) fn explain(e: ApiError, what: &What, cx: &Context) -> Error {
    let endpoint = cx.endpoint;
    let msg = match e {
        ApiError::RequestError(e) => match *e {
            ureq::Error::Status(code @ (401 | 403), _) => {
                let token = if cx.token_sent {
                    "a token was sent (HF_TOKEN or the `huggingface-cli login` token file): check it is valid and has read access"
                } else {
                    "no token was sent: set HF_TOKEN or run `huggingface-cli login`"
                };
                format!(
                    "access denied (HTTP {code}) by {endpoint}: the repository is gated or private (or does not exist); \
                     {token}, and accept the {}'s terms on its page on the hub",
                    cx.cache.kind.noun()
                )
            }
            ureq::Error::Status(404, resp) => {
                let code = resp.header("x-error-code").unwrap_or_default().to_string();
                let body = resp.into_string().unwrap_or_default();
                match what {
                    What::Info { revision } if code == "RevisionNotFound" || body.contains("Invalid rev id") => format!(
                        "revision {revision} not found on {endpoint}: expected a branch, tag or full commit of the repository"
                    ),
                    What::Info { .. } => {
                        format!("repository not found on {endpoint}: check the name ({}) and HF_ENDPOINT", cx.cache.kind.spec())
                    }
                    What::File { name, commit } => {
                        format!("{name} not found in the repository at commit {commit} on {endpoint}")
                    }
                }
            }
            ureq::Error::Status(code, resp) => {
                let url = resp.get_url().to_string();
                let body: String = resp.into_string().unwrap_or_default().chars().take(300).collect();
                format!("HTTP {code} from {url}: {}{}", body.trim(), cx.offline_hint())
            }
            ureq::Error::Transport(t) => format!(
                "cannot reach the hub at {endpoint} (HF_ENDPOINT): {t}{}",
                if cx.cached { cx.offline_hint() } else { "; check the network and HF_ENDPOINT".into() }
            ),
        },
        ApiError::IoError(e) => transfer(&e.to_string(), what, cx),
        ApiError::TooManyRetries(e) => transfer(&e.to_string(), what, cx),
        ApiError::MissingHeader(h) | ApiError::InvalidHeader(h) => format!(
            "{endpoint} did not answer like the HuggingFace hub (header {h} missing or invalid): check HF_ENDPOINT"
        ),
        ApiError::LockAcquisition(p) => format!(
            "another process is downloading the same file (lock {}): wait for it to finish, then retry",
            p.display()
        ),
        ApiError::InvalidResume | ApiError::ParseIntError(_) => format!(
            "a partial download in {} does not match the file on the hub: delete the *.part files there and retry",
            cx.cache.dir.join("blobs").display()
        ),
    };
    cx.cache.kind.error(cx.origin, msg)
}

fn transfer(cause: &str, what: &What, cx: &Context) -> String {
    let item = match what {
        What::Info { revision } => format!("reading the file list of revision {revision}"),
        What::File { name, .. } => format!("downloading {name}"),
    };
    format!(
        "{item} from {} (HF_ENDPOINT) failed: {cause}; what arrived is kept in {} and the next run resumes it{}",
        cx.endpoint,
        cx.cache.dir.join("blobs").display(),
        cx.offline_hint()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, error_code: &str) -> ApiError {
        let raw = format!("HTTP/1.1 {code} x\r\nx-error-code: {error_code}\r\n\r\n{{}}");
        ApiError::RequestError(Box::new(ureq::Error::Status(code, raw.parse().unwrap())))
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(retryable(&status(503, "")));
        assert!(retryable(&status(429, "")));
        assert!(retryable(&ApiError::IoError(std::io::ErrorKind::UnexpectedEof.into())));
        for code in [401, 403, 404, 416] {
            assert!(!retryable(&status(code, "")), "{code}");
        }
        assert!(!retryable(&ApiError::InvalidResume));
    }

    #[test]
    fn messages_name_the_cause_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = RepoCache::new(tmp.path(), "o/n");
        let cx = |token_sent, cached| Context {
            origin: "hf:o/n",
            endpoint: "http://hub",
            token_sent,
            cached,
            cache: &cache,
        };
        let info = What::Info { revision: "dev" };
        let msg = |e, what: &What, cx: &Context| explain(e, what, cx).to_string();

        let m = msg(status(401, ""), &info, &cx(false, false));
        assert!(
            m.contains("gated or private")
                && m.contains("set HF_TOKEN")
                && m.contains("huggingface-cli login"),
            "{m}"
        );
        assert!(msg(status(403, ""), &info, &cx(true, false)).contains("a token was sent"));
        assert!(msg(status(404, "RevisionNotFound"), &info, &cx(false, false))
            .contains("revision dev not found"));
        assert!(msg(status(404, "RepoNotFound"), &info, &cx(false, false))
            .contains("repository not found on http://hub"));
        let file = What::File { name: "tokenizer.json", commit: "abc" };
        assert!(msg(status(404, "EntryNotFound"), &file, &cx(false, false))
            .contains("tokenizer.json not found"));
        let m = msg(
            ApiError::IoError(std::io::ErrorKind::UnexpectedEof.into()),
            &file,
            &cx(false, true),
        );
        assert!(
            m.contains("downloading tokenizer.json")
                && m.contains("resumes")
                && m.contains("--offline"),
            "{m}"
        );
        assert!(!msg(
            ApiError::IoError(std::io::ErrorKind::UnexpectedEof.into()),
            &file,
            &cx(false, false)
        )
        .contains("--offline"));
    }
}
