//! livetalk's local control API: HTTP + WebSocket on a Unix socket (mode 0600), or loopback TCP
//! with a bearer token. `livetalk run` serves it; `livetalk ctl` and `livetalk say` use it
//! through [`client`]. The routes are described in `docs/openapi.yaml`.
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `GET /v1/status` | | the engine status |
//! | `GET /v1/personas` | | `{current, personas: [...]}` |
//! | `POST /v1/persona` | `{"name": "kai"}` | `{ok, detail}` |
//! | `POST /v1/say` | `{"text": "hello"}` | `{ok, detail}` |
//! | `POST /v1/audio` | `audio/L16;rate=16000` or `audio/wav` | `{pts, samples, duration}` |
//! | `POST /v1/mute` | `{"muted": true}` | `{ok, detail}` |
//! | `POST /v1/pause`, `/v1/resume` | none | `{ok, detail}` |
//! | `GET /v1/events` | WebSocket | `hello`, then engine events as JSON text messages |

//! Without the default feature `server` only the client and the messages are built (no engine,
//! no tokio): what the OBS plugin links.

#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod audio;
pub mod client;
pub mod messages;
#[cfg(feature = "server")]
pub mod server;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

#[cfg(feature = "server")]
pub use server::{read_token_file, serve, ControlError, ControlOptions, ControlServer};

/// The folder the socket lives in when nothing else is said: `$XDG_RUNTIME_DIR/livetalk`, or
/// `/tmp/livetalk-UID` without a runtime folder.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("livetalk/control.sock"),
        None => {
            let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
            PathBuf::from(format!("/tmp/livetalk-{uid}/control.sock"))
        }
    }
}

