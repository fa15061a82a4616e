//! livetalk's virtual camera (API documented once the pump lands).

pub mod compose;
pub mod error;
pub mod v4l2;

pub use error::{Result, VcamError};
pub use v4l2::{CameraFormat, DeviceInfo, DeviceSelector, SinkConfig, UsageSource, V4l2Sink};
