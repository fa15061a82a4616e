//! Core types shared by every part of livetalk: video frames and their pixel-format
//! conversions, audio chunks, the audio-driven media clock, the latest-frame bus, persona
//! presets, and the error type.

pub mod audio;
pub mod bus;
pub mod clock;
pub mod convert;
pub mod error;
pub mod frame;
pub mod look;
pub mod persona;

pub use audio::{AudioChunk, ENGINE_SAMPLE_RATE};
pub use bus::{FrameBus, FrameSubscriber};
pub use clock::{AudioClock, FrameClock, FramePicker, ENGINE_FPS};
pub use error::{Error, Result};
pub use frame::{ColorMatrix, ColorRange, ColorSpec, PixelFormat, VideoFrame};
pub use look::AvatarLook;
pub use persona::{Persona, PersonaLibrary};
