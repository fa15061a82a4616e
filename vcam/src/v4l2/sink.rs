//! `V4l2Sink`: one open v4l2loopback device that accepts frames through `write()`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::discover::{other_openers, Sysfs};
use super::sys::{self, fourcc};
use crate::error::{Result, VcamError};

/// Which device to write to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSelector {
    /// A device node such as `/dev/video10`.
    Path(PathBuf),
    /// A loopback device's card label, such as `livetalk`.
    Label(String),
}

impl DeviceSelector {
    /// `/dev/...` (anything with a slash) is a path; anything else is a label.
    pub fn parse(text: &str) -> Self {
        if text.contains('/') {
            DeviceSelector::Path(PathBuf::from(text))
        } else {
            DeviceSelector::Label(text.to_string())
        }
    }
}

impl std::fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSelector::Path(p) => write!(f, "{}", p.display()),
            DeviceSelector::Label(l) => write!(f, "\"{l}\""),
        }
    }
}

/// The pixel layouts the camera can carry (both BT.601 limited range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CameraFormat {
    /// Packed 4:2:2, Y0 U Y1 V: what most consumers (Chrome, Zoom) prefer.
    #[default]
    Yuyv,
    /// Planar 4:2:0: Y plane, then U (w/2 × h/2), then V.
    I420,
}

impl CameraFormat {
    pub fn fourcc(self) -> u32 {
        match self {
            CameraFormat::Yuyv => fourcc(b"YUYV"),
            CameraFormat::I420 => fourcc(b"YU12"),
        }
    }

    pub fn bytes_per_line(self, width: u32) -> u32 {
        match self {
            CameraFormat::Yuyv => width * 2,
            CameraFormat::I420 => width,
        }
    }

    pub fn frame_len(self, width: u32, height: u32) -> usize {
        let pixels = width as usize * height as usize;
        match self {
            CameraFormat::Yuyv => pixels * 2,
            CameraFormat::I420 => pixels * 3 / 2,
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "yuyv" | "yuy2" => Some(CameraFormat::Yuyv),
            "i420" | "yu12" | "yuv420p" => Some(CameraFormat::I420),
            _ => None,
        }
    }
}

impl std::fmt::Display for CameraFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CameraFormat::Yuyv => "YUYV",
            CameraFormat::I420 => "I420",
        })
    }
}

/// What to open and how to configure it. `Default` is the product default.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub device: DeviceSelector,
    pub width: u32,
    pub height: u32,
    pub format: CameraFormat,
    pub fps: u32,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            device: DeviceSelector::Label("livetalk".into()),
            width: 1280,
            height: 720,
            format: CameraFormat::Yuyv,
            fps: 30,
        }
    }
}

/// How the sink learns whether anyone is reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageSource {
    /// v4l2loopback ≥ 0.13: `V4L2_EVENT_PRI_CLIENT_USAGE` (readers that are streaming).
    ClientUsageEvents,
    /// Older modules: other processes holding the device open (scanned in /proc).
    OpenerScan,
}

/// What the device told us when it was opened.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub path: PathBuf,
    pub card: String,
    /// Module version from sysfs ("0.13.2"); `None` for 0.12.x and older, which do not publish it.
    pub module_version: Option<String>,
    pub usage_source: UsageSource,
    /// The frame interval the driver accepted, as fps (numerator/denominator flipped).
    pub fps: (u32, u32),
}

/// An open v4l2loopback output. Keep it open for the life of the process: with v4l2loopback
/// 0.12.x and `exclusive_caps=1`, a closed writer cannot be replaced without reloading the module.
pub struct V4l2Sink {
    file: File,
    info: DeviceInfo,
    config: SinkConfig,
    frame_len: usize,
    /// Last reader count from events (ClientUsageEvents only).
    event_readers: u32,
}

impl V4l2Sink {
    /// Finds, checks and configures the device (format, size, frame rate) and subscribes to reader
    /// events where the module has them.
    pub fn open(config: &SinkConfig) -> Result<Self> {
        Self::open_with(config, &Sysfs::system())
    }

    pub fn open_with(config: &SinkConfig, sysfs: &Sysfs) -> Result<Self> {
        let wanted = config.device.to_string();
        let path = resolve(&config.device, sysfs)?;
        check_size(&path, config.width, config.height)?;
        let mut file = open_node(&path, &wanted, sysfs)?;
        let fd = file.as_raw_fd();

        let mut cap: sys::Capability = sys::zeroed();
        // SAFETY: QUERYCAP takes a v4l2_capability.
        unsafe { sys::ioctl(fd, sys::VIDIOC_QUERYCAP, &mut cap) }.map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EINVAL) => {
                VcamError::NotLoopback { path: path.clone(), driver: "not a V4L2 device".into() }
            }
            _ => VcamError::io(&path, "VIDIOC_QUERYCAP", e),
        })?;
        let driver = sys::c_str(&cap.driver);
        if driver != "v4l2 loopback" {
            return Err(VcamError::NotLoopback { path, driver });
        }
        let module_version = sysfs.module_version();
        let caps = if cap.capabilities & sys::V4L2_CAP_DEVICE_CAPS != 0 {
            cap.device_caps
        } else {
            cap.capabilities
        };
        if caps & sys::V4L2_CAP_VIDEO_OUTPUT == 0 {
            // exclusive_caps=1 hides OUTPUT while a writer is active; on 0.12.x it also stays
            // hidden after the last writer closed.
            return Err(if other_openers(&path) > 0 {
                VcamError::Busy { path }
            } else {
                VcamError::WriterLockedOut {
                    path,
                    version: module_version.clone().unwrap_or_else(|| "0.12.x".into()),
                }
            });
        }

        let frame_len = config.format.frame_len(config.width, config.height);
        // A black frame right after S_FMT (made before it, to keep the gap short): from 0.13 on,
        // a reader that starts between S_FMT and the first write() gets EIO, and exclusive_caps=1
        // devices show up only once a frame exists.
        let black = black_frame(config.format, config.width, config.height);
        set_format(fd, &path, config, module_version.as_deref())?;
        file.write_all(&black).map_err(|e| VcamError::io(&path, "write", e))?;
        let fd = file.as_raw_fd();
        let fps = set_frame_rate(fd, &path, config.fps)?;
        let usage_source = subscribe_client_usage(fd, &path)?;
        let info = DeviceInfo { path, card: sys::c_str(&cap.card), module_version, usage_source, fps };
        Ok(V4l2Sink { file, info, config: config.clone(), frame_len, event_readers: 0 })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn config(&self) -> &SinkConfig {
        &self.config
    }

    /// Bytes one frame must have (`format.frame_len(width, height)`).
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Writes one whole frame in the configured format.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<()> {
        if frame.len() != self.frame_len {
            return Err(VcamError::FrameSize {
                path: self.info.path.clone(),
                format: self.config.format.to_string(),
                width: self.config.width,
                height: self.config.height,
                got: frame.len(),
                want: self.frame_len,
            });
        }
        // write_all retries EINTR; v4l2loopback takes a whole frame per write() call.
        self.file.write_all(frame).map_err(|e| VcamError::io(&self.info.path, "write", e))
    }

    /// Whether any reader is using the camera now. With events this drains them without
    /// blocking; otherwise it scans /proc (a few ms: call it a few times a second, not per frame).
    pub fn has_readers(&mut self) -> Result<bool> {
        match self.info.usage_source {
            UsageSource::ClientUsageEvents => {
                self.drain_events()?;
                Ok(self.event_readers > 0)
            }
            UsageSource::OpenerScan => Ok(other_openers(&self.info.path) > 0),
        }
    }

    fn drain_events(&mut self) -> Result<()> {
        loop {
            let mut event: sys::Event = sys::zeroed();
            // SAFETY: DQEVENT takes a v4l2_event; the fd is non-blocking so this never waits.
            match unsafe { sys::ioctl(self.file.as_raw_fd(), sys::VIDIOC_DQEVENT, &mut event) } {
                Ok(()) => {
                    if event.type_ == sys::V4L2_EVENT_PRI_CLIENT_USAGE {
                        // SAFETY: the payload of this event is `struct { __u32 count; }`.
                        let data = unsafe { event.u.data };
                        self.event_readers = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Err(e) => return Err(VcamError::io(&self.info.path, "VIDIOC_DQEVENT", e)),
            }
        }
    }
}

/// Limited-range black (Y 16, Cb/Cr 128) in `format`.
fn black_frame(format: CameraFormat, width: u32, height: u32) -> Vec<u8> {
    let luma = width as usize * height as usize;
    match format {
        CameraFormat::Yuyv => [16u8, 128].repeat(luma),
        CameraFormat::I420 => {
            let mut frame = vec![128u8; format.frame_len(width, height)];
            frame[..luma].fill(16);
            frame
        }
    }
}

fn resolve(selector: &DeviceSelector, sysfs: &Sysfs) -> Result<PathBuf> {
    let wanted = selector.to_string();
    match selector {
        DeviceSelector::Path(p) if p.exists() => Ok(p.clone()),
        _ if !sysfs.module_loaded() => Err(VcamError::ModuleNotLoaded { wanted }),
        DeviceSelector::Path(_) => {
            Err(VcamError::DeviceNotFound { wanted, found: sysfs.describe_loopback_nodes() })
        }
        DeviceSelector::Label(label) => sysfs
            .find_by_label(label)
            .map(|n| n.path)
            .ok_or_else(|| VcamError::DeviceNotFound { wanted, found: sysfs.describe_loopback_nodes() }),
    }
}

fn check_size(path: &Path, width: u32, height: u32) -> Result<()> {
    let reason = if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        "width and height must be even for 4:2:x chroma"
    } else if width < 48 || height < 32 {
        "v4l2loopback's minimum is 48x32"
    } else if width > 8192 || height > 8192 {
        "larger than 8192"
    } else {
        return Ok(());
    };
    Err(VcamError::UnsupportedSize { path: path.to_owned(), width, height, reason: reason.into() })
}

fn open_node(path: &Path, wanted: &str, sysfs: &Sysfs) -> Result<File> {
    // Non-blocking so that VIDIOC_DQEVENT returns ENOENT instead of waiting; write() on a
    // loopback device never blocks either way.
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => VcamError::PermissionDenied { path: path.to_owned() },
            Some(libc::EBUSY) => VcamError::Busy { path: path.to_owned() },
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) if !sysfs.module_loaded() => {
                VcamError::ModuleNotLoaded { wanted: wanted.to_string() }
            }
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => VcamError::DeviceNotFound {
                wanted: wanted.to_string(),
                found: sysfs.describe_loopback_nodes(),
            },
            _ => VcamError::io(path, "open", e),
        })
}

fn set_format(fd: i32, path: &Path, config: &SinkConfig, version: Option<&str>) -> Result<()> {
    let mut format: sys::Format = sys::zeroed();
    format.type_ = sys::V4L2_BUF_TYPE_VIDEO_OUTPUT;
    format.fmt.pix = sys::PixFormat {
        width: config.width,
        height: config.height,
        pixelformat: config.format.fourcc(),
        field: sys::V4L2_FIELD_NONE,
        bytesperline: config.format.bytes_per_line(config.width),
        sizeimage: config.format.frame_len(config.width, config.height) as u32,
        colorspace: sys::V4L2_COLORSPACE_SMPTE170M,
        ycbcr_enc: sys::V4L2_YCBCR_ENC_601,
        quantization: sys::V4L2_QUANTIZATION_LIM_RANGE,
        ..Default::default()
    };
    // SAFETY: S_FMT takes a v4l2_format.
    unsafe { sys::ioctl(fd, sys::VIDIOC_S_FMT, &mut format) }.map_err(|e| match e.raw_os_error() {
        Some(libc::EBUSY) => VcamError::Busy { path: path.to_owned() },
        // 0.12.x answers EINVAL when an earlier writer's session left the device locked.
        Some(libc::EINVAL) => VcamError::WriterLockedOut {
            path: path.to_owned(),
            version: version.unwrap_or("0.12.x").to_string(),
        },
        _ => VcamError::io(path, "VIDIOC_S_FMT", e),
    })?;
    // SAFETY: the driver filled the pix member for an OUTPUT buffer type.
    let got = unsafe { format.fmt.pix };
    if (got.width, got.height) != (config.width, config.height) {
        return Err(VcamError::UnsupportedSize {
            path: path.to_owned(),
            width: config.width,
            height: config.height,
            reason: format!("the device offers {}x{}", got.width, got.height),
        });
    }
    if got.pixelformat != config.format.fourcc() {
        return Err(VcamError::FormatRefused {
            path: path.to_owned(),
            format: config.format.to_string(),
            kept: String::from_utf8_lossy(&got.pixelformat.to_le_bytes()).into_owned(),
        });
    }
    Ok(())
}

/// Tells readers the frame rate (VIDIOC_S_PARM on the output); returns what the driver kept.
fn set_frame_rate(fd: i32, path: &Path, fps: u32) -> Result<(u32, u32)> {
    let mut parm: sys::StreamParm = sys::zeroed();
    parm.type_ = sys::V4L2_BUF_TYPE_VIDEO_OUTPUT;
    parm.parm.output = sys::OutputParm {
        capability: sys::V4L2_CAP_TIMEPERFRAME,
        timeperframe: sys::Fract { numerator: 1, denominator: fps.max(1) },
        ..Default::default()
    };
    // SAFETY: S_PARM takes a v4l2_streamparm.
    unsafe { sys::ioctl(fd, sys::VIDIOC_S_PARM, &mut parm) }
        .map_err(|e| VcamError::io(path, "VIDIOC_S_PARM (frame rate)", e))?;
    // SAFETY: the driver filled the output member for an OUTPUT buffer type.
    let t = unsafe { parm.parm.output.timeperframe };
    Ok((t.denominator, t.numerator.max(1)))
}

fn subscribe_client_usage(fd: i32, path: &Path) -> Result<UsageSource> {
    let mut sub = sys::EventSubscription { type_: sys::V4L2_EVENT_PRI_CLIENT_USAGE, ..Default::default() };
    // SAFETY: SUBSCRIBE_EVENT takes a v4l2_event_subscription.
    match unsafe { sys::ioctl(fd, sys::VIDIOC_SUBSCRIBE_EVENT, &mut sub) } {
        Ok(()) => Ok(UsageSource::ClientUsageEvents),
        // Modules before 0.13 reject the private event type.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTTY)) => {
            Ok(UsageSource::OpenerScan)
        }
        Err(e) => Err(VcamError::io(path, "VIDIOC_SUBSCRIBE_EVENT", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_and_fourccs() {
        assert_eq!(CameraFormat::Yuyv.frame_len(1280, 720), 1280 * 720 * 2);
        assert_eq!(CameraFormat::I420.frame_len(1280, 720), 1280 * 720 * 3 / 2);
        assert_eq!(CameraFormat::Yuyv.fourcc(), 0x5659_5559);
        assert_eq!(CameraFormat::I420.fourcc(), 0x3231_5559);
        assert_eq!(CameraFormat::parse("yuv420p"), Some(CameraFormat::I420));
        assert_eq!(CameraFormat::parse("nv12"), None);
    }

    #[test]
    fn black_frames_have_the_format_length_and_limited_range_black() {
        let yuyv = black_frame(CameraFormat::Yuyv, 64, 32);
        assert_eq!(yuyv.len(), CameraFormat::Yuyv.frame_len(64, 32));
        assert_eq!(&yuyv[..4], &[16, 128, 16, 128]);
        let i420 = black_frame(CameraFormat::I420, 64, 32);
        assert_eq!(i420.len(), CameraFormat::I420.frame_len(64, 32));
        assert_eq!((i420[0], i420[64 * 32 - 1], i420[64 * 32], i420[i420.len() - 1]), (16, 16, 128, 128));
    }

    #[test]
    fn selector_parses_paths_and_labels() {
        assert_eq!(DeviceSelector::parse("/dev/video10"), DeviceSelector::Path("/dev/video10".into()));
        assert_eq!(DeviceSelector::parse("livetalk shared"), DeviceSelector::Label("livetalk shared".into()));
    }

    fn empty_sysfs(root: &Path) -> Sysfs {
        Sysfs { sys: root.join("sys"), dev: root.join("dev") }
    }

    #[test]
    fn missing_module_names_the_modprobe_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let config = SinkConfig::default();
        let err = V4l2Sink::open_with(&config, &empty_sysfs(tmp.path())).err().unwrap();
        assert!(matches!(err, VcamError::ModuleNotLoaded { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("\"livetalk\"") && text.contains("sudo modprobe v4l2loopback"), "{text}");
    }

    #[test]
    fn odd_and_tiny_sizes_are_refused_before_touching_the_device() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("video10");
        std::fs::write(&node, b"").unwrap();
        for (w, h) in [(1281, 720), (40, 40), (16384, 720)] {
            let config = SinkConfig { device: DeviceSelector::Path(node.clone()), width: w, height: h, ..Default::default() };
            let err = V4l2Sink::open_with(&config, &empty_sysfs(tmp.path())).err().unwrap();
            assert!(matches!(err, VcamError::UnsupportedSize { .. }), "{err}");
            assert!(err.to_string().contains(&format!("{w}x{h}")));
        }
    }

    #[test]
    fn a_regular_file_is_not_a_loopback_device() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("video10");
        std::fs::write(&node, b"").unwrap();
        let config = SinkConfig { device: DeviceSelector::Path(node), ..Default::default() };
        let err = V4l2Sink::open_with(&config, &empty_sysfs(tmp.path())).err().unwrap();
        assert!(matches!(err, VcamError::NotLoopback { .. }), "{err}");
    }
}
