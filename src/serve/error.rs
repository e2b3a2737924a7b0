//! Why the server could not start or stop serving; what goes wrong with one request is shown on
//! its page instead.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "{addr} is not a loopback address: the pages have no authentication, so anyone who can \
         reach it could start runs; pass --allow-remote to serve it anyway"
    )]
    RemoteRefused { addr: SocketAddr },

    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why an evaluation asked for on the Evaluate tab did not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// The eval process ended before it made a run: its own message (what `benchgen eval`
    /// prints on the terminal).
    #[error("{message}")]
    Refused { message: String },
}
