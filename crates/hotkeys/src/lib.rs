//! Global hotkeys that switch personas while another app (the video call) has the focus.
//!
//! - [`bindings`]: which key does what: each preset's `hotkey` switches to it, two more keys go
//!   to the next and previous persona; a key given twice is reported and left unbound.
//! - [`x11`]: passive key grabs on the X root window with x11rb (pure Rust, in the default
//!   build); works on X11 desktops and for X11 apps under XWayland.
//! - [`portal`]: the xdg-desktop-portal GlobalShortcuts interface for Wayland desktops: the
//!   request (shortcut ids, descriptions, preferred triggers) is built here; talking to the
//!   portal needs the `portal` feature.
//!
//! Both listeners deliver [`HotkeyAction`]s on a channel; the caller turns them into engine
//! commands (the CLI's `run` switches the persona with a cross-fade).

pub mod bindings;
pub mod portal;
pub mod x11;

pub use bindings::{Binding, Bindings, HotkeyAction};
pub use x11::X11Hotkeys;

/// What can go wrong setting up hotkeys; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum HotkeyError {
    #[error("cannot reach the X server{display}: {reason}")]
    Connect { display: String, reason: String },
    #[error("X11 request failed: {0}")]
    X11(String),
    #[error("{0}")]
    Portal(String),
}
