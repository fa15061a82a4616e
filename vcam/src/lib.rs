//! livetalk's virtual camera: the engine's frames as a v4l2loopback device (and, with the
//! `pipewire` feature, a PipeWire camera node).
//!
//! # Using it (what `livetalk run --camera` does)
//! ```no_run
//! use livetalk_core::bus::FrameBus;
//! use livetalk_vcam::{pump::{CameraPump, Demand, PumpConfig}, DeviceSelector, SinkConfig, V4l2Sink};
//!
//! let bus = FrameBus::new(); // the engine publishes VideoFrames (any size/format, pts set) here
//! let config = SinkConfig { device: DeviceSelector::parse("livetalk"), ..SinkConfig::default() };
//! // Finds the device (label or /dev path), checks it is a v4l2loopback output, sets format,
//! // size and frame rate. Errors are `VcamError`s whose text ends with the fixing command.
//! let sink = V4l2Sink::open(&config)?;
//! let pump = CameraPump::start(sink, bus.subscribe(), PumpConfig::for_sink(&config), |demand| {
//!     // Also reflected in bus.watcher_count(): the engine may simply park on
//!     // bus.wait_for_watchers() instead of using this callback.
//!     if demand == Demand::Idle { /* nobody reads the camera: pause the generator */ }
//! })?;
//! // ... later
//! pump.stop()?;
//! # Ok::<(), livetalk_vcam::VcamError>(())
//! ```
//! - [`V4l2Sink`]: one open loopback device. `write_frame(&[u8])` takes a whole frame in the
//!   configured format; `has_readers()` says whether anyone reads (V4L2_EVENT_PRI_CLIENT_USAGE on
//!   v4l2loopback ≥ 0.13, a scan of open handles on 0.12). Keep it open for the process's life.
//! - [`pump::CameraPump`]: the thread that composes bus frames onto the backdrop
//!   ([`compose::Composer`]), places them by pts on a 30 fps clock (16 fps in: frames shown once or
//!   twice, never dropped for lack of a new one), writes every tick (2 fps while nobody reads),
//!   and reports [`pump::Demand`] changes.
//! - [`doctor::doctor_checks`]: module, options, devices and permissions, each with its fix.
//! - `pipewire::PipeWireCamera` (feature `pipewire`): the same pump feeding a PipeWire
//!   `Video/Source` node with `media.role=Camera`; a streaming link counts as a reader.
//! - [`test_pattern`]: the known frames the end-to-end tests write and check.

pub mod compose;
pub mod doctor;
pub mod error;
#[cfg(feature = "pipewire")]
pub mod pipewire;
pub mod pump;
pub mod test_pattern;
pub mod v4l2;

pub use error::{Result, VcamError};
pub use v4l2::{CameraFormat, DeviceInfo, DeviceSelector, SinkConfig, UsageSource, V4l2Sink};
