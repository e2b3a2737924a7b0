//! A run's files, by the names [`RunFile`] gives them: the URL's name is looked up in that list
//! and only the listed file's own path is read, so no URL reaches anything else.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::page::not_found;
use super::runs::find_run;
use super::App;
use crate::run::RunFile;

#[derive(serde::Deserialize)]
pub struct FileQuery {
    /// `1`: as an attachment (saved), not shown in the browser.
    #[serde(default)]
    download: Option<String>,
}

pub async fn download(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
    Query(query): Query<FileQuery>,
) -> Response {
    let Some(file) = RunFile::ALL.into_iter().find(|f| f.name() == name) else {
        return not_found();
    };
    let Some((_, run)) = find_run(&app, &id) else { return not_found() };
    let Ok(bytes) = tokio::fs::read(run.file(file)).await else { return not_found() };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(file)));
    let base = file.name().rsplit('/').next().unwrap_or(file.name());
    let disposition = if query.download.is_some_and(|d| d == "1") || file == RunFile::Submission {
        format!("attachment; filename=\"{base}\"")
    } else {
        format!("inline; filename=\"{base}\"")
    };
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // A run's HTML shows model output: it runs as an origin of its own, unable to act on these
    // pages, with no network.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox allow-scripts; default-src 'none'; style-src 'unsafe-inline'; \
             script-src 'unsafe-inline'; img-src data:",
        ),
    );
    response
}

fn content_type(file: RunFile) -> &'static str {
    match file.name().rsplit('.').next() {
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        Some("html") => "text/html; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_file_has_a_type() {
        assert_eq!(content_type(RunFile::Submission), "application/zip");
        assert_eq!(content_type(RunFile::DetailedHtml), "text/html; charset=utf-8");
        assert_eq!(content_type(RunFile::Scores), "application/json");
        assert_eq!(content_type(RunFile::Journal), "text/plain; charset=utf-8");
        assert_eq!(content_type(RunFile::Log), "text/plain; charset=utf-8");
    }
}
