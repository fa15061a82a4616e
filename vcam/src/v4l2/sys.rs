//! The few V4L2 structures and ioctls a loopback writer needs, laid out as in
//! `<linux/videodev2.h>` (x86_64 / aarch64 ABI; sizes are checked at compile time).
//!
//! Written by hand rather than through the `v4l` crate: that crate generates its bindings with
//! bindgen (libclang at build time) and covers neither event subscription nor the `write()` path,
//! which are the two things a loopback writer relies on.

use std::os::fd::RawFd;

pub const V4L2_BUF_TYPE_VIDEO_OUTPUT: u32 = 2;
pub const V4L2_FIELD_NONE: u32 = 1;
pub const V4L2_COLORSPACE_SMPTE170M: u32 = 1;
pub const V4L2_QUANTIZATION_LIM_RANGE: u32 = 2;
pub const V4L2_YCBCR_ENC_601: u32 = 1;

pub const V4L2_CAP_VIDEO_OUTPUT: u32 = 0x0000_0002;
pub const V4L2_CAP_DEVICE_CAPS: u32 = 0x8000_0000;
pub const V4L2_CAP_TIMEPERFRAME: u32 = 0x1000;

/// v4l2loopback ≥ 0.13: sent to subscribers whenever a reader starts or stops streaming.
/// `V4L2_EVENT_PRIVATE_START + 0x08E00000 + 1` in v4l2loopback.h; payload `{ __u32 count; }`.
pub const V4L2_EVENT_PRI_CLIENT_USAGE: u32 = 0x0800_0000 + 0x08E0_0000 + 1;

pub const fn fourcc(code: &[u8; 4]) -> u32 {
    (code[0] as u32) | (code[1] as u32) << 8 | (code[2] as u32) << 16 | (code[3] as u32) << 24
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct PixFormat {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
    pub colorspace: u32,
    pub priv_: u32,
    pub flags: u32,
    pub ycbcr_enc: u32,
    pub quantization: u32,
    pub xfer_func: u32,
}

/// `struct v4l2_format`: the union is 200 bytes and 8-aligned (it holds pointers).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Format {
    pub type_: u32,
    pub fmt: FormatUnion,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union FormatUnion {
    pub pix: PixFormat,
    pub raw: [u64; 25],
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Fract {
    pub numerator: u32,
    pub denominator: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct OutputParm {
    pub capability: u32,
    pub outputmode: u32,
    pub timeperframe: Fract,
    pub extendedmode: u32,
    pub writebuffers: u32,
    pub reserved: [u32; 4],
}

/// `struct v4l2_streamparm`: the union is 200 raw bytes, 4-aligned.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StreamParm {
    pub type_: u32,
    pub parm: StreamParmUnion,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union StreamParmUnion {
    pub output: OutputParm,
    pub raw: [u8; 200],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct EventSubscription {
    pub type_: u32,
    pub id: u32,
    pub flags: u32,
    pub reserved: [u32; 5],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event {
    pub type_: u32,
    pub u: EventUnion,
    pub pending: u32,
    pub sequence: u32,
    pub timestamp: libc::timespec,
    pub id: u32,
    pub reserved: [u32; 8],
}

/// The event payload union: 64 bytes, 8-aligned (`struct v4l2_event_ctrl` holds an `__s64`).
#[repr(C)]
#[derive(Clone, Copy)]
pub union EventUnion {
    pub data: [u8; 64],
    pub align: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<Capability>() == 104);
const _: () = assert!(std::mem::size_of::<PixFormat>() == 48);
const _: () = assert!(std::mem::size_of::<Format>() == 208);
const _: () = assert!(std::mem::size_of::<OutputParm>() == 40);
const _: () = assert!(std::mem::size_of::<StreamParm>() == 204);
const _: () = assert!(std::mem::size_of::<EventSubscription>() == 32);
const _: () = assert!(std::mem::size_of::<Event>() == 136);

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const fn ioc<T>(dir: u64, nr: u64) -> u64 {
    (dir << 30) | ((std::mem::size_of::<T>() as u64) << 16) | ((b'V' as u64) << 8) | nr
}
pub const VIDIOC_QUERYCAP: u64 = ioc::<Capability>(IOC_READ, 0);
pub const VIDIOC_S_FMT: u64 = ioc::<Format>(IOC_READ | IOC_WRITE, 5);
pub const VIDIOC_S_PARM: u64 = ioc::<StreamParm>(IOC_READ | IOC_WRITE, 22);
pub const VIDIOC_DQEVENT: u64 = ioc::<Event>(IOC_READ, 89);
pub const VIDIOC_SUBSCRIBE_EVENT: u64 = ioc::<EventSubscription>(IOC_WRITE, 90);

const _: () = assert!(VIDIOC_QUERYCAP == 0x8068_5600);
const _: () = assert!(VIDIOC_S_FMT == 0xC0D0_5605);
const _: () = assert!(VIDIOC_S_PARM == 0xC0CC_5616);
const _: () = assert!(VIDIOC_DQEVENT == 0x8088_5659);
const _: () = assert!(VIDIOC_SUBSCRIBE_EVENT == 0x4020_565A);

/// Runs one ioctl, retrying on EINTR.
///
/// # Safety
/// `arg` must be the structure type that `request` expects.
pub unsafe fn ioctl<T: Pod>(fd: RawFd, request: u64, arg: &mut T) -> std::io::Result<()> {
    loop {
        // The request parameter type differs between libc flavours (c_ulong vs c_int).
        if libc::ioctl(fd, request as _, arg as *mut T) >= 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Structures made only of integers (and unions of them), for which all-zero bytes are valid.
///
/// # Safety
/// Implement only for such plain-old-data types.
pub unsafe trait Pod: Copy {}
unsafe impl Pod for Capability {}
unsafe impl Pod for Format {}
unsafe impl Pod for StreamParm {}
unsafe impl Pod for EventSubscription {}
unsafe impl Pod for Event {}

/// A zeroed value of a plain-old-data V4L2 structure.
pub fn zeroed<T: Pod>() -> T {
    // SAFETY: Pod guarantees all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// A NUL-padded C string field as text.
pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
