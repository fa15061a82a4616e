//! Pixel format conversions between every pair of [`PixelFormat`]s.
//!
//! # Conventions
//! - RGB is 8-bit sRGB-encoded R'G'B' (no linearisation: like every camera pipeline, the matrix
//!   is applied to gamma-encoded values).
//! - YUV is Y'CbCr with the matrix and range of a [`ColorSpec`]. The default, and what the camera
//!   sinks must use, is **BT.601 limited range** (Y 16..=235, Cb/Cr 16..=240): v4l2 consumers and
//!   Chrome assume it for webcam YUYV/NV12/I420 that carry no colorimetry. BT.709 and full range
//!   are available for consumers that ask for them.
//! - Chroma siting: 4:2:0 chroma is the rounded mean of each 2×2 block, 4:2:2 chroma the mean of
//!   each horizontal pair. Going back up, a chroma sample is repeated over the pixels it covers
//!   (nearest neighbour: cheap, and the round trip of block-constant colour is exact).
//! - YUV ↔ YUV conversions move samples only; they never change matrix or range.
//! - Alpha is not carried: RGBA/BGRA outputs are opaque (A = 255) and input alpha is ignored.
//! - Dimensions must be non-zero, even in width for YUYV and even in both for I420/NV12; other
//!   sizes are rejected with [`Error::FrameDimensions`].
//!
//! # Speed
//! These run on the real-time path (1280×720 at 30 fps into the camera): each conversion is one
//! pass over the pixels with integer fixed-point arithmetic (16 fractional bits), no allocation
//! besides the output frame (none with [`convert_into`] or [`convert_buffer`]), and no floats
//! per pixel. The loops are compiled for AVX2 and AVX-512 too and picked at run time ([`Isa`]).
//!
//! ```
//! use std::time::Duration;
//! use livetalk_core::frame::{ColorSpec, PixelFormat, VideoFrame};
//!
//! let rgb = VideoFrame::solid(1280, 720, PixelFormat::Rgb24, [255, 0, 0], Duration::ZERO)?;
//! // Once per stream: a camera frame whose buffer is reused for every conversion.
//! let mut camera = VideoFrame::zeroed(1280, 720, PixelFormat::Yuyv, Duration::ZERO)?;
//! livetalk_core::convert::convert_into(&rgb, &mut camera, ColorSpec::BT601_LIMITED)?;
//! assert_eq!(&camera.data[..4], &[81, 90, 81, 240]); // BT.601 limited red: Y 81, Cb 90, Cr 240
//! # Ok::<(), livetalk_core::Error>(())
//! ```

mod coeffs;
mod isa;
mod layout;
mod repack;
mod rgb_to_yuv;
mod yuv_to_rgb;

use crate::error::{Error, Result};
use crate::frame::{ColorSpec, PixelFormat, VideoFrame};
use coeffs::{RgbToYuv, YuvToRgb};
use layout::Chroma420;

pub use isa::Isa;

/// The fastest instruction set of this CPU, detected once.
fn best_isa() -> Isa {
    static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *BEST.get_or_init(Isa::best)
}

/// The shape of a format as the conversion loops see it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rgb {
    Rgb24,
    Rgba,
    Bgra,
}

#[derive(Clone, Copy)]
enum Shape {
    Rgb(Rgb),
    Yuyv,
    Yuv420(Chroma420),
}

fn shape(format: PixelFormat, width: usize, height: usize) -> Shape {
    match format {
        PixelFormat::Rgb24 => Shape::Rgb(Rgb::Rgb24),
        PixelFormat::Rgba => Shape::Rgb(Rgb::Rgba),
        PixelFormat::Bgra => Shape::Rgb(Rgb::Bgra),
        PixelFormat::Yuyv => Shape::Yuyv,
        PixelFormat::I420 => Shape::Yuv420(Chroma420::i420(width, height)),
        PixelFormat::Nv12 => Shape::Yuv420(Chroma420::nv12(width)),
    }
}

/// Runs `$body` with `$L` naming the byte-order type of the RGB format `$rgb`.
macro_rules! with_rgb_layout {
    ($rgb:expr, $L:ident => $body:expr) => {
        match $rgb {
            Rgb::Rgb24 => {
                type $L = layout::Rgb24;
                $body
            }
            Rgb::Rgba => {
                type $L = layout::Rgba;
                $body
            }
            Rgb::Bgra => {
                type $L = layout::Bgra;
                $body
            }
        }
    };
}

/// Converts the `width`×`height` image in `src` (laid out as `src_format`) into `dst` (laid out
/// as `dst_format`). Both buffers must have exactly the size of their format.
pub fn convert_buffer(
    src: &[u8],
    src_format: PixelFormat,
    dst: &mut [u8],
    dst_format: PixelFormat,
    width: u32,
    height: u32,
    spec: ColorSpec,
) -> Result<()> {
    let isa = best_isa();
    convert_buffer_on(isa, src, src_format, dst, dst_format, width, height, spec)
}

/// [`convert_buffer`] with the loops of a given instruction set (the baseline if the CPU lacks
/// it): for tests and benchmarks that compare the variants.
#[allow(clippy::too_many_arguments)]
pub fn convert_buffer_on(
    isa: Isa,
    src: &[u8],
    src_format: PixelFormat,
    dst: &mut [u8],
    dst_format: PixelFormat,
    width: u32,
    height: u32,
    spec: ColorSpec,
) -> Result<()> {
    check_len(src_format, width, height, src.len())?;
    check_len(dst_format, width, height, dst.len())?;
    if src_format == dst_format {
        dst.copy_from_slice(src);
        return Ok(());
    }
    let job = Job {
        src,
        src_format,
        dst,
        dst_format,
        width: width as usize,
        height: height as usize,
        spec,
    };
    isa::run(isa, job);
    Ok(())
}

/// One checked conversion: buffers of the right sizes, dimensions the formats can hold.
pub(crate) struct Job<'a> {
    src: &'a [u8],
    src_format: PixelFormat,
    dst: &'a mut [u8],
    dst_format: PixelFormat,
    width: usize,
    height: usize,
    spec: ColorSpec,
}

/// The conversion loops for every pair of formats, specialised by the byte orders.
#[inline(always)] // compiled into each instruction-set variant, see `isa`
fn convert_job(job: Job<'_>) {
    let Job {
        src,
        src_format,
        dst,
        dst_format,
        width: w,
        height: h,
        spec,
    } = job;
    match (shape(src_format, w, h), shape(dst_format, w, h)) {
        (Shape::Rgb(s), Shape::Rgb(d)) => with_rgb_layout!(s, S => with_rgb_layout!(d, D =>
            repack::rgb_to_rgb::<S, D>(src, dst))),
        (Shape::Rgb(s), Shape::Yuyv) => with_rgb_layout!(s, S =>
            rgb_to_yuv::rgb_to_yuyv::<S>(src, &RgbToYuv::new(spec), dst)),
        (Shape::Rgb(s), Shape::Yuv420(chroma)) => with_rgb_layout!(s, S =>
            rgb_to_yuv::rgb_to_yuv420::<S>(src, w, h, &RgbToYuv::new(spec), dst, chroma)),
        (Shape::Yuyv, Shape::Rgb(d)) => with_rgb_layout!(d, D =>
            yuv_to_rgb::yuyv_to_rgb::<D>(src, &YuvToRgb::new(spec), dst)),
        (Shape::Yuv420(chroma), Shape::Rgb(d)) => with_rgb_layout!(d, D =>
            yuv_to_rgb::yuv420_to_rgb::<D>(src, w, h, chroma, &YuvToRgb::new(spec), dst)),
        (Shape::Yuyv, Shape::Yuyv) => dst.copy_from_slice(src),
        (Shape::Yuyv, Shape::Yuv420(chroma)) => repack::yuyv_to_yuv420(src, w, h, dst, chroma),
        (Shape::Yuv420(chroma), Shape::Yuyv) => repack::yuv420_to_yuyv(src, w, h, chroma, dst),
        (Shape::Yuv420(from), Shape::Yuv420(to)) => {
            repack::yuv420_to_yuv420(src, from, w, h, dst, to)
        }
    }
}

/// Converts `src` into a new frame of `format` with the same dimensions and pts.
pub fn convert_frame(src: &VideoFrame, format: PixelFormat, spec: ColorSpec) -> Result<VideoFrame> {
    let mut dst = VideoFrame {
        width: src.width,
        height: src.height,
        format,
        data: Vec::new(),
        pts: src.pts,
    };
    convert_into(src, &mut dst, spec)?;
    Ok(dst)
}

/// Converts `src` into `dst`, keeping `dst`'s format and reusing its buffer (resized if needed):
/// the allocation-free form for a sink that converts every frame. Width and height must match;
/// the pts is copied.
pub fn convert_into(src: &VideoFrame, dst: &mut VideoFrame, spec: ColorSpec) -> Result<()> {
    if (src.width, src.height) != (dst.width, dst.height) {
        return Err(Error::ConversionSizeMismatch {
            src_width: src.width,
            src_height: src.height,
            dst_width: dst.width,
            dst_height: dst.height,
        });
    }
    let size = dst.format.frame_size(dst.width, dst.height)?;
    dst.data.resize(size, 0);
    dst.pts = src.pts;
    convert_buffer(
        &src.data,
        src.format,
        &mut dst.data,
        dst.format,
        src.width,
        src.height,
        spec,
    )
}

/// One RGB colour as (Y, U, V) bytes, with exactly the arithmetic of the frame conversions.
pub fn rgb_pixel_to_yuv(rgb: [u8; 3], spec: ColorSpec) -> (u8, u8, u8) {
    let k = RgbToYuv::new(spec);
    let [r, g, b] = rgb.map(i32::from);
    let (u, v) = k.chroma_of_sum(r, g, b, 0);
    (k.luma(r, g, b), u, v)
}

/// One (Y, U, V) sample as an RGB colour, with exactly the arithmetic of the frame conversions.
pub fn yuv_pixel_to_rgb(y: u8, u: u8, v: u8, spec: ColorSpec) -> [u8; 3] {
    let k = YuvToRgb::new(spec);
    k.rgb(y, k.chroma(u, v))
}

fn check_len(format: PixelFormat, width: u32, height: u32, actual: usize) -> Result<()> {
    let expected = format.frame_size(width, height)?;
    if actual != expected {
        return Err(Error::FrameDataSize {
            format,
            width,
            height,
            expected,
            actual,
        });
    }
    Ok(())
}
