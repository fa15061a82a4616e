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

pub mod api;
pub mod audio;
pub mod client;
pub mod messages;
pub mod server;

pub use server::{default_socket_path, read_token_file, serve, ControlError, ControlOptions, ControlServer};
