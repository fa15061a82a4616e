//! Camera errors. Every message names the device and ends with the command that fixes it.

use std::path::PathBuf;

/// The module options livetalk recommends (packaging/modprobe.d/livetalk.conf), as one command.
pub const MODPROBE_FIX: &str = "sudo modprobe v4l2loopback devices=2 video_nr=10,11 \
'card_label=\"livetalk,livetalk shared\"' exclusive_caps=1,0 \
(or install packaging/modprobe.d/livetalk.conf to /etc/modprobe.d/ and run: sudo modprobe v4l2loopback)";

/// The fix for a device node the user may not open.
pub const GROUP_FIX: &str = "sudo usermod -aG video $USER, then log out and back in";

#[derive(Debug, thiserror::Error)]
pub enum VcamError {
    #[error(
        "camera {wanted}: the v4l2loopback kernel module is not loaded. Fix: {MODPROBE_FIX}. \
         If modprobe says the module is missing: sudo apt install v4l2loopback-dkms"
    )]
    ModuleNotLoaded { wanted: String },

    #[error(
        "camera {wanted}: no v4l2loopback device has that label or path (found: {found}). \
         Fix: pass one of the devices found, or reload the module with the label: \
         sudo modprobe -r v4l2loopback && {MODPROBE_FIX}"
    )]
    DeviceNotFound { wanted: String, found: String },

    #[error("camera {path:?}: permission denied. Fix: {GROUP_FIX}")]
    PermissionDenied { path: PathBuf },

    #[error(
        "camera {path:?} is busy: another program is already writing to it. Fix: stop that \
         program (see: fuser -v {path:?}) or use the other livetalk device (exclusive_caps=0 one)"
    )]
    Busy { path: PathBuf },

    #[error(
        "camera {path:?} is not a v4l2loopback device (driver {driver:?}). Fix: pick a loopback \
         device: grep . /sys/devices/virtual/video4linux/*/name"
    )]
    NotLoopback { path: PathBuf, driver: String },

    #[error(
        "camera {path:?} no longer accepts a writer: v4l2loopback {version} with exclusive_caps=1 \
         locks the device after a writer closes (fixed in 0.13). Fix: sudo modprobe -r \
         v4l2loopback && sudo modprobe v4l2loopback (or upgrade v4l2loopback-dkms to 0.13 or later)"
    )]
    WriterLockedOut { path: PathBuf, version: String },

    #[error(
        "camera {path:?}: size {width}x{height} is not supported ({reason}). Fix: use an even \
         width and height, at least 48x32 and at most the module's max_width x max_height \
         (default 8192x8192), e.g. --camera-size 1280x720"
    )]
    UnsupportedSize { path: PathBuf, width: u32, height: u32, reason: String },

    #[error(
        "camera {path:?} refused pixel format {format} (it kept {kept}). Fix: reload the module so \
         no old format is kept: sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback"
    )]
    FormatRefused { path: PathBuf, format: String, kept: String },

    #[error("camera {path:?}: frame has {got} bytes but {format} {width}x{height} needs {want}")]
    FrameSize { path: PathBuf, format: String, width: u32, height: u32, got: usize, want: usize },

    #[error("PipeWire camera: {0}")]
    PipeWire(String),

    #[error("camera frame: {0}")]
    Compose(String),

    #[error("camera {path:?}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl VcamError {
    pub(crate) fn io(path: &std::path::Path, op: &'static str, source: std::io::Error) -> Self {
        VcamError::Io { path: path.to_owned(), op, source }
    }
}

pub type Result<T, E = VcamError> = std::result::Result<T, E>;
