//! The frame every page shares (header, inline style, security headers) and small builders.
//! Every text that reaches HTML goes through [`esc`]; URLs built from names go through
//! [`segment`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub use crate::report::html::escape as esc;

/// Inline only: the pages need no network, not even for their style.
const STYLE: &str = "\
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,sans-serif;color:#1d2330;background:#f5f6f8}\
header{background:#1d2330;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}\
header a{color:#cfd6e4;text-decoration:none}header a.brand{color:#fff;font-weight:600;font-size:17px}\
main{max-width:1100px;margin:24px auto;padding:0 24px}\
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:24px 0 8px}.muted{color:#667085}\
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:16px 20px;margin:16px 0}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e4e7ec;vertical-align:top}\
th{font-weight:600;color:#475467;font-size:13px}\
nav.tabs{display:flex;gap:4px;border-bottom:1px solid #dde1e8;margin:16px 0}\
nav.tabs a{padding:8px 14px;text-decoration:none;color:#475467;border-bottom:2px solid transparent}\
nav.tabs a.on{color:#1d4ed8;border-color:#1d4ed8;font-weight:600}\
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;background:#e4e7ec;color:#344054}\
.badge.Running,.badge.running{background:#d1fadf;color:#05603a}.badge.Completed{background:#d1e9ff;color:#1849a9}\
.badge.Failed,.badge.Stopped{background:#fee4e2;color:#b42318}.badge.Interrupted{background:#fef0c7;color:#93370d}\
dl.fields{display:grid;grid-template-columns:max-content 1fr;gap:6px 20px;margin:0}dt{color:#667085}dd{margin:0}\
pre{background:#0f1420;color:#d7dce5;padding:12px;border-radius:6px;overflow:auto;max-height:420px;white-space:pre-wrap;margin:0}\
.error{background:#fee4e2;border:1px solid #fda29b;color:#7a271a;padding:10px 14px;border-radius:6px;white-space:pre-wrap}\
button{background:#1d4ed8;color:#fff;border:0;border-radius:6px;padding:9px 18px;font-size:15px;cursor:pointer}\
.readme img{max-width:100%}.readme code{background:#eef0f3;padding:0 3px;border-radius:3px}\
.readme pre code{background:none;padding:0}progress{width:100%;height:14px}\
.example{padding:6px 16px;margin:8px 0}.example p{margin:4px 0}\
.example pre{background:#f2f4f7;color:#1d2330;padding:6px 10px}\
";

/// One HTML page, sent with headers that keep it from loading anything from elsewhere.
pub struct Page {
    title: String,
    body: String,
    status: StatusCode,
}

impl Page {
    pub fn new(title: impl Into<String>, body: impl Into<String>) -> Self {
        Self { title: title.into(), body: body.into(), status: StatusCode::OK }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A page that says what went wrong (500).
    pub fn error(message: impl AsRef<str>) -> Self {
        let body = format!("<h1>Error</h1><p class=\"error\">{}</p>", esc(message.as_ref()));
        Self::new("Error", body).with_status(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{} · benchgen</title><style>{STYLE}</style></head><body>\
<header><a class=\"brand\" href=\"/\">benchgen</a><a href=\"/\">Environments</a>\
<a href=\"/runs\">Runs</a></header><main>{}</main></body></html>\n",
            esc(&self.title),
            self.body
        );
        let mut response = (self.status, html).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        // Inline style and script only; the live log's EventSource and the forms stay here.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        // Not `no-referrer`: with it, browsers send the form's `Origin` as `null`, which the
        // guard refuses.
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        response
    }
}

pub fn not_found_page() -> Page {
    Page::new("Not found", "<h1>Not found</h1><p>There is no such page here.</p>")
        .with_status(StatusCode::NOT_FOUND)
}

pub fn not_found() -> Response {
    not_found_page().into_response()
}

/// `text` as one URL path segment: every byte but unreserved ones percent-encoded.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `<table>` of `headers` and `rows`, whose cells are HTML already (escaped by the caller).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut h = String::from("<table><thead><tr>");
    for name in headers {
        h.push_str(&format!("<th>{}</th>", esc(name)));
    }
    h.push_str("</tr></thead><tbody>");
    for row in rows {
        h.push_str("<tr>");
        for cell in row {
            h.push_str(&format!("<td>{cell}</td>"));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
    h
}

/// A run's status as a coloured badge.
pub fn status_badge(status: &str) -> String {
    let class = if status.chars().all(|c| c.is_ascii_alphabetic()) { status } else { "" };
    format!("<span class=\"badge {class}\">{}</span>", esc(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_cannot_leave_its_place_in_a_path() {
        assert_eq!(segment("arc-easy"), "arc-easy");
        assert_eq!(segment("../x y/<b>"), "..%2Fx%20y%2F%3Cb%3E");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn a_badge_escapes_what_it_shows() {
        assert_eq!(status_badge("Running"), "<span class=\"badge Running\">Running</span>");
        assert!(status_badge("<i>").contains("&lt;i&gt;") && !status_badge("<i>").contains("<i>"));
    }
}
