//! The `webcam` field of a "me" persona: which real camera to show instead of an avatar.

use std::fmt;
use std::str::FromStr;

/// A capture device: the system's first camera, an index, or a `/dev/video*` node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Webcam {
    /// `"default"`: the first camera found.
    Default,
    /// `"2"`: the camera with this index (`/dev/video2` on Linux).
    Index(u32),
    /// `"/dev/video2"` or `"/dev/v4l/by-id/…"`.
    Device(String),
}

impl Webcam {
    /// The camera index when the device is `/dev/videoN` or an index.
    pub fn index(&self) -> Option<u32> {
        match self {
            Webcam::Default => None,
            Webcam::Index(index) => Some(*index),
            Webcam::Device(path) => path.strip_prefix("/dev/video")?.parse().ok(),
        }
    }
}

impl FromStr for Webcam {
    type Err = String;

    /// Device nodes only: a preset must not name an arbitrary file for livetalk to open.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("default") {
            return Ok(Webcam::Default);
        }
        if let Ok(index) = text.parse::<u32>() {
            return Ok(Webcam::Index(index));
        }
        let is_device = (text.starts_with("/dev/video") || text.starts_with("/dev/v4l/"))
            && !text.split('/').any(|part| part == "..");
        if is_device {
            Ok(Webcam::Device(text.to_string()))
        } else {
            Err(format!(
                "`{text}` is not a camera: use \"default\", an index like \"0\", or a device like \
                 \"/dev/video0\""
            ))
        }
    }
}

impl fmt::Display for Webcam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Webcam::Default => f.write_str("default"),
            Webcam::Index(index) => write!(f, "{index}"),
            Webcam::Device(path) => f.write_str(path),
        }
    }
}
