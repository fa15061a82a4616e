//! The livetalk OBS plugin: a "livetalk avatar" source whose video and voice come from a
//! running `livetalk run` in its own process, in sync.
//!
//! ```text
//! livetalk run ── frames.sock + memfd ring ──> link thread ──> obs_source_output_video/audio
//!      └──────── control.sock (HTTP) <──────── remote thread <── properties, hotkeys, say box,
//!                                                                an OBS audio source (driver)
//! ```
//!
//! - [`link`]: connects to the engine's frame share (livetalk-share), reconnects by itself, and
//!   outputs each frame and audio block with timestamps from one mapping ([`clock`]), or the
//!   idle [`placeholder`] while no engine feeds it. OBS's threads never wait on it.
//! - [`remote`]: the control API client (livetalk-control): persona list, switch, next and
//!   previous, say, pushed audio; starts an engine when asked to.
//! - `obs` (feature `obs`): the OBS module itself: source registration, properties, hotkeys, the
//!   audio capture of another OBS source. Everything else builds and is tested without OBS.

pub mod clock;
pub mod link;
pub mod placeholder;
pub mod remote;
pub mod resample;
pub mod scale;

#[cfg(feature = "obs")]
mod obs;
