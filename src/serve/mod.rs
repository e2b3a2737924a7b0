//! `benchgen serve`: the benchmark platform's pages, local. Environments (Overview, Phases,
//! Leaderboard, Evaluations, Evaluate) and run pages (fields, live log, Score Breakdown, Files).
//!
//! Every page is read from the runs directory and the environments on each request, never from
//! what this server remembers, so a run started with `benchgen eval` in a terminal shows up and
//! streams its log exactly as one started here. URLs name runs by their integer id and files by
//! [`RunFile`](crate::run::RunFile)'s names only; no string from a URL is joined onto a path.

mod envs;
mod error;
mod evaluate;
mod files;
mod guard;
mod launch;
mod live;
mod markdown;
mod page;
mod runs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::env::EnvSources;
use crate::model::spec::SourceOptions;

pub use error::ServeError;
pub use launch::Launcher;

/// What the server shows and how it starts runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    /// Binding an address other than loopback: the pages have no authentication.
    pub allow_remote: bool,
    pub runs_dir: PathBuf,
    /// The model picker's sources (as `models list`): the registry, the hub cache.
    pub sources: SourceOptions,
    pub env_sources: EnvSources,
    /// Where Trained checkpoints are listed from (`model::listing::trained_dir`).
    pub trained_dir: PathBuf,
    pub launcher: Launcher,
}

/// Serves until the process ends. `on_listening` is called once the socket is bound, with its
/// address (the port chosen when `config.addr` asked for port 0).
pub fn serve(mut config: Config, on_listening: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    if !config.addr.ip().is_loopback() && !config.allow_remote {
        return Err(ServeError::RemoteRefused { addr: config.addr });
    }
    // The eval processes run with this server's working folder; an absolute runs folder keeps
    // their files where the pages look whatever they resolve against.
    config.runs_dir = std::path::absolute(&config.runs_dir)
        .map_err(|source| ServeError::Io { what: "the runs folder".into(), source })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ServeError::Io { what: "the async runtime".into(), source })?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind { addr: config.addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr: config.addr, source })?;
        on_listening(bound);
        axum::serve(listener, router(Arc::new(config)))
            .await
            .map_err(|source| ServeError::Io { what: "serving".into(), source })
    })
}

type App = Arc<Config>;

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(envs::list))
        .route("/envs/{name}", get(envs::overview))
        .route("/envs/{name}/evaluate", get(evaluate::tab).post(evaluate::start))
        .route("/envs/{name}/{tab}", get(envs::tab))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::page))
        .route("/runs/{id}/log", get(live::log))
        .route("/runs/{id}/finetune", get(runs::finetune))
        .route("/runs/{id}/files/{*name}", get(files::download))
        .fallback(|| async { page::not_found() })
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard::same_origin))
        .with_state(app)
}

/// Runs `render` (file reads, listing folders, loading an environment's data) off the async
/// workers.
async fn blocking(render: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(render)
        .await
        .unwrap_or_else(|e| page::Page::error(format!("the page failed: {e}")).into_response())
}
