//! The v4l2loopback camera: device discovery, the raw ioctls, and the frame sink.

pub mod discover;
pub mod sink;
mod sys;

pub use discover::{other_openers, Sysfs, VideoNode};
pub use sink::{CameraFormat, DeviceInfo, DeviceSelector, SinkConfig, UsageSource, V4l2Sink};
