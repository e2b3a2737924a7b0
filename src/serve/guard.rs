//! What keeps other web sites out of a server that has no authentication: a page elsewhere
//! could post the Evaluate form to `127.0.0.1` (cross-site request), or point a name of its own
//! at `127.0.0.1` to read the pages as its own origin (DNS rebinding).

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::page::Page;
use super::App;

/// Refuses requests whose `Host` is not loopback while the server listens on loopback only, and
/// requests that change something (POST) coming from another origin.
pub async fn same_origin(State(app): State<App>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !app.allow_remote && !is_loopback_host(host) {
        return refuse("this server answers only to localhost and loopback addresses");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
        let site = headers.get("sec-fetch-site").and_then(|h| h.to_str().ok());
        let foreign_origin = origin.is_some_and(|o| !same_host(o, host));
        if foreign_origin || site == Some("cross-site") {
            return refuse("a form from another site cannot start runs here");
        }
    }
    next.run(request).await
}

fn refuse(why: &str) -> Response {
    Page::error(why).with_status(StatusCode::FORBIDDEN).into_response()
}

/// `localhost`, `127.0.0.1`, `[::1]` and the like, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether the `Origin` header (`http://host:port`) names the host the request was sent to.
fn same_host(origin: &str, host: &str) -> bool {
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_from_others() {
        for host in ["127.0.0.1:8080", "localhost:1", "LOCALHOST", "[::1]:80", "127.3.4.5"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example:8080", "10.0.0.1:80", "[2001:db8::1]:80", "", "127.0.0.1.evil"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn an_origin_matches_only_its_own_host() {
        assert!(same_host("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(!same_host("http://evil.example", "127.0.0.1:8080"));
        assert!(!same_host("null", "127.0.0.1:8080"));
        assert!(!same_host("http://127.0.0.1:8081", "127.0.0.1:8080"));
    }
}
