//! livetalk's frame transport to consumers in other processes (the OBS plugin).
//!
//! `livetalk run` serves a Unix socket (`$XDG_RUNTIME_DIR/livetalk/frames.sock`, mode 0600).
//! A client that connects gets one hello line and, with it, a memfd: a shared-memory ring of
//! BGRA frame slots and mono f32 audio blocks, each stamped with the engine's pts (the audio
//! timeline position), so the consumer can give video and audio the same timestamps. All clients
//! read the same ring; the engine writes each frame once, whatever their number.
//!
//! ```text
//! engine ─ FrameBus ─┐                       ┌─ ShareClient (OBS source 1)
//!                    ├─ FramePump ─ memfd ring┤
//! timeline tap ──────┘    (seqlocks)          └─ ShareClient (OBS source 2)
//!          socket: hello + fd, then "watching 0|1" lines from each client
//! ```
//!
//! Readers never block the writer (seqlocked slots; torn copies are retried, never returned)
//! and the writer never waits for readers. A dead engine is seen at once as a closed socket,
//! a stuck one as a stale heartbeat.
//!
//! ```no_run
//! use std::time::Duration;
//! use livetalk_share::{FrameRead, ShareClient};
//!
//! let mut client = ShareClient::connect(&livetalk_share::default_socket_path(), Duration::from_secs(1))?;
//! client.set_watching(true)?;
//! let mut bgra = Vec::new();
//! if let FrameRead::Frame(meta) = client.reader().read_frame(&mut bgra) {
//!     println!("{}x{} at {:?}", meta.width, meta.height, meta.pts);
//! }
//! # Ok::<(), livetalk_share::ShareError>(())
//! ```

mod client;
mod layout;
mod ring;
mod server;

use std::path::PathBuf;

pub use client::{Health, ShareClient};
pub use layout::RingConfig;
pub use ring::{AudioPiece, FrameMeta, FrameRead, ShareReader, ShareWriter};
pub use server::{ShareOptions, ShareServer};

/// The first bytes a client receives (the memfd rides along with them).
pub(crate) const HELLO: &str = "livetalk-share 1\n";

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("no livetalk shares frames at {path}: {source} (is `livetalk run` running?)")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Setup(String),
    #[error("frame share protocol: {0}")]
    Protocol(String),
    #[error("shared memory layout: {0}")]
    Layout(String),
    #[error("a {width}x{height} frame does not fit the ring's {capacity}-byte slots")]
    FrameTooLarge { width: u32, height: u32, capacity: u64 },
    #[error("converting a frame for the share: {0}")]
    Frame(String),
}

/// The socket `livetalk run` serves frames on by default: next to the control socket,
/// `$XDG_RUNTIME_DIR/livetalk/frames.sock`, or `/tmp/livetalk-UID/frames.sock` without a
/// runtime folder.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("livetalk/frames.sock"),
        None => PathBuf::from(format!("/tmp/livetalk-{}/frames.sock", rustix::process::getuid().as_raw())),
    }
}
