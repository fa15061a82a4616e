//! Where the API listens: a Unix socket (mode 0600, in a 0700 folder; by default
//! `$XDG_RUNTIME_DIR/livetalk/control.sock`) and, as an option, loopback TCP where every request
//! must carry `Authorization: Bearer TOKEN`.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use livetalk_core::PersonaLibrary;
use livetalk_engine::service::EngineControl;

use crate::api::{router, ApiError, ApiState};
use crate::default_socket_path;

/// Where to listen.
#[derive(Debug, Clone, Default)]
pub struct ControlOptions {
    /// The Unix socket; `None`: [`default_socket_path`].
    pub socket: Option<PathBuf>,
    /// Also listen on this loopback TCP address (needs `token`).
    pub tcp: Option<SocketAddr>,
    /// The bearer token TCP requests must carry.
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlError {
    let what = what.into();
    move |source| ControlError::Io { what, source }
}

/// Reads a token file: the first line, trimmed; at least 16 characters.
pub fn read_token_file(path: &Path) -> Result<String, ControlError> {
    let text = std::fs::read_to_string(path).map_err(io(format!("reading the token file {}", path.display())))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16 {
        return Err(ControlError::Setup(format!(
            "the token in {} is {} characters; use at least 16 (e.g. `head -c 24 /dev/urandom | base64 > {}`)",
            path.display(),
            token.len(),
            path.display()
        )));
    }
    Ok(token)
}

/// A running control server; dropping it (or [`ControlServer::stop`]) stops it and removes the
/// socket file.
pub struct ControlServer {
    socket: PathBuf,
    tcp: Option<SocketAddr>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The TCP address actually bound (port 0 picks one).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// Binds the socket(s) now (so errors come back here) and serves on a thread of its own.
pub fn serve(control: EngineControl, library: PersonaLibrary, options: ControlOptions) -> Result<ControlServer, ControlError> {
    let socket = options.socket.clone().unwrap_or_else(default_socket_path);
    let unix = bind_unix(&socket)?;
    let tcp = match options.tcp {
        Some(addr) => {
            if !addr.ip().is_loopback() {
                return Err(ControlError::Setup(format!(
                    "the control API listens on loopback only: {addr} is not a loopback address (use 127.0.0.1:PORT)"
                )));
            }
            let token = options.token.clone().ok_or_else(|| {
                ControlError::Setup("TCP control needs a token (--token-file FILE)".into())
            })?;
            let listener = std::net::TcpListener::bind(addr).map_err(io(format!("listening on {addr}")))?;
            listener.set_nonblocking(true).map_err(io("setting up the TCP listener"))?;
            Some((listener, token))
        }
        None => None,
    };
    let tcp_addr = match &tcp {
        Some((l, _)) => Some(l.local_addr().map_err(io("reading the TCP address"))?),
        None => None,
    };
    let state = ApiState { control, library: Arc::new(library) };
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("livetalk-ctl")
        .enable_io()
        .enable_time()
        .build()
        .map_err(io("starting the control API runtime"))?;
    let thread = std::thread::Builder::new()
        .name("livetalk-control".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                match tokio::net::UnixListener::from_std(unix) {
                    Ok(listener) => {
                        tasks.push(tokio::spawn(serve_until(listener, router(state.clone()), shutdown_rx.clone(), "Unix socket")));
                    }
                    Err(e) => tracing::error!("control API: cannot use the Unix socket: {e}"),
                }
                if let Some((listener, token)) = tcp {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let app = router(state.clone()).layer(middleware::from_fn_with_state(Arc::new(token), require_token));
                            tasks.push(tokio::spawn(serve_until(listener, app, shutdown_rx.clone(), "TCP")));
                        }
                        Err(e) => tracing::error!("control API: cannot use the TCP listener: {e}"),
                    }
                }
                let mut rx = shutdown_rx;
                let _ = rx.wait_for(|s| *s).await;
                // Open event streams do not end by themselves: give them a moment, then drop.
                for task in tasks {
                    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), task).await;
                }
            });
            runtime.shutdown_background();
        })
        .map_err(io("starting the control API thread"))?;
    Ok(ControlServer { socket, tcp: tcp_addr, shutdown: Some(shutdown_tx), thread: Some(thread) })
}

/// Serves `app` on `listener` until the shutdown flag is raised.
async fn serve_until<L>(listener: L, app: axum::Router, mut shutdown: tokio::sync::watch::Receiver<bool>, what: &'static str)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!("control API ({what}) stopped: {e}");
    }
}

/// Creates the folder (0700, ours), clears a stale socket, binds, and sets the socket to 0600.
fn bind_unix(path: &Path) -> Result<std::os::unix::net::UnixListener, ControlError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(format!("creating {}", dir.display())))?;
    }
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let meta = std::fs::metadata(dir).map_err(io(format!("reading {}", dir.display())))?;
    if uid.is_some_and(|uid| meta.uid() != uid) {
        return Err(ControlError::Setup(format!(
            "{} belongs to another user: choose another socket folder (XDG_RUNTIME_DIR)",
            dir.display()
        )));
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ControlError::Setup(format!(
                "another livetalk already listens on {} (stop it, or run this one with --no-control)",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(io(format!("removing the stale socket {}", path.display())))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io(format!("listening on {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("making {} private", path.display())))?;
    listener.set_nonblocking(true).map_err(io("setting up the Unix socket"))?;
    Ok(listener)
}

/// TCP requests must carry `Authorization: Bearer TOKEN` (compared in constant time).
async fn require_token(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "wrong token in the Authorization header").into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "TCP requests need `Authorization: Bearer TOKEN` (the token from --token-file)",
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
