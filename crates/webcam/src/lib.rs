//! The user's real webcam in livetalk: a "me" persona (`webcam = "/dev/video0"` in its preset)
//! shows the camera instead of an avatar, so one hotkey flips the same virtual camera between
//! the user and the avatar.
//!
//! - [`capture`]: a capture thread that keeps the newest webcam picture ([`Capture`]); the
//!   device side is nokhwa's V4L2 backend (cargo feature `nokhwa`, which needs libclang to
//!   build). Without the feature, opening a webcam is a clear error.
//! - [`decode`]: the webcam's buffers (YUYV, NV12, MJPEG, grey, RGB/BGR) as [`VideoFrame`]s.
//! - [`engine`]: [`WebcamEngine`] passes the picture through behind the `AvatarEngine` trait
//!   (fitted onto the persona's backdrop at its size, RGBA like the CPU avatar, so the service
//!   cross-fades between them), and [`PersonaRouter`] wraps the avatar engine so a switch to a
//!   webcam persona and back is an ordinary persona switch (prepared while the other streams,
//!   cross-faded, never a black frame).
//!
//! [`VideoFrame`]: livetalk_core::VideoFrame

pub mod capture;
pub mod decode;
pub mod engine;

pub use capture::{Capture, CaptureFeed, WebcamError};
pub use engine::{PersonaRouter, WebcamEngine, WebcamOpener};
