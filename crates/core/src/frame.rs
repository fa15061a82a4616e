//! Video frames: pixel formats, their memory layout, and the frame type every stage passes on.
//!
//! Layouts are tightly packed (no row padding): stride = width × bytes per pixel for packed
//! formats, and for the planar ones the planes follow each other in the order the format's
//! fourcc defines (I420: Y, U, V; NV12: Y, interleaved UV).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// Largest width or height a frame may have; keeps every byte count far from overflow.
pub const MAX_DIMENSION: u32 = 16_384;

/// The pixel formats the pipeline produces and the camera sinks accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Packed R, G, B bytes.
    Rgb24,
    /// Packed R, G, B, A bytes.
    Rgba,
    /// Packed B, G, R, A bytes (what many GPU and compositor surfaces use).
    Bgra,
    /// Packed 4:2:2: Y0 U Y1 V for each horizontal pixel pair.
    Yuyv,
    /// Planar 4:2:0: a Y plane, then a quarter-size U plane, then a V plane.
    I420,
    /// Semi-planar 4:2:0: a Y plane, then one quarter-size plane of interleaved U, V.
    Nv12,
}

/// Every pixel format, in declaration order (handy for tests and capability lists).
pub const ALL_PIXEL_FORMATS: [PixelFormat; 6] = [
    PixelFormat::Rgb24,
    PixelFormat::Rgba,
    PixelFormat::Bgra,
    PixelFormat::Yuyv,
    PixelFormat::I420,
    PixelFormat::Nv12,
];

/// One plane of a frame's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plane {
    /// Byte offset of the plane's first row in the frame buffer.
    pub offset: usize,
    /// Bytes from one row to the next.
    pub stride: usize,
    /// Number of rows.
    pub rows: usize,
}

impl Plane {
    /// Bytes the plane occupies.
    pub fn len(&self) -> usize {
        self.stride * self.rows
    }

    /// True for a plane of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte range of this plane within the frame buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Where a format's planes lie in a frame buffer of given dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneLayout {
    planes: [Plane; 3],
    count: usize,
}

impl PlaneLayout {
    /// The planes in buffer order (1 for packed formats, 2 for NV12, 3 for I420).
    pub fn planes(&self) -> &[Plane] {
        &self.planes[..self.count]
    }

    /// Total bytes of the frame buffer.
    pub fn total_len(&self) -> usize {
        self.planes().iter().map(Plane::len).sum()
    }
}

impl PixelFormat {
    /// Lower-case name, as used on the command line and in presets.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Rgba => "rgba",
            PixelFormat::Bgra => "bgra",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::I420 => "i420",
            PixelFormat::Nv12 => "nv12",
        }
    }

    /// The V4L2 fourcc of this exact memory layout (`V4L2_PIX_FMT_*`).
    pub fn v4l2_fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Rgb24 => *b"RGB3",
            // V4L2_PIX_FMT_RGBA32: bytes R, G, B, A.
            PixelFormat::Rgba => *b"AB24",
            // V4L2_PIX_FMT_ABGR32: bytes B, G, R, A.
            PixelFormat::Bgra => *b"AR24",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::I420 => *b"YU12",
            PixelFormat::Nv12 => *b"NV12",
        }
    }

    /// True for the packed RGB family (Rgb24, Rgba, Bgra).
    pub fn is_rgb(self) -> bool {
        matches!(
            self,
            PixelFormat::Rgb24 | PixelFormat::Rgba | PixelFormat::Bgra
        )
    }

    /// True for the Y'CbCr formats (Yuyv, I420, Nv12).
    pub fn is_yuv(self) -> bool {
        !self.is_rgb()
    }

    /// Bytes per pixel of a packed format; `None` for the planar 4:2:0 ones.
    pub fn packed_bytes_per_pixel(self) -> Option<usize> {
        match self {
            PixelFormat::Rgb24 => Some(3),
            PixelFormat::Rgba | PixelFormat::Bgra => Some(4),
            PixelFormat::Yuyv => Some(2),
            PixelFormat::I420 | PixelFormat::Nv12 => None,
        }
    }

    /// Chroma subsampling as (horizontal, vertical) divisors: 4:2:0 is (2, 2), 4:2:2 is (2, 1),
    /// RGB is (1, 1). Dimensions must be multiples of these.
    pub fn chroma_subsampling(self) -> (u32, u32) {
        match self {
            PixelFormat::Rgb24 | PixelFormat::Rgba | PixelFormat::Bgra => (1, 1),
            PixelFormat::Yuyv => (2, 1),
            PixelFormat::I420 | PixelFormat::Nv12 => (2, 2),
        }
    }

    /// Checks that a `width`×`height` frame can exist in this format: non-zero, at most
    /// [`MAX_DIMENSION`], and even where the chroma subsampling needs it.
    pub fn validate_dimensions(self, width: u32, height: u32) -> Result<()> {
        let fail = |reason| {
            Err(Error::FrameDimensions {
                format: self,
                width,
                height,
                reason,
            })
        };
        if width == 0 || height == 0 {
            return fail("width and height must be non-zero");
        }
        if width > MAX_DIMENSION || height > MAX_DIMENSION {
            return fail("width and height must be at most 16384");
        }
        let (sub_x, sub_y) = self.chroma_subsampling();
        if !width.is_multiple_of(sub_x) {
            return fail("chroma subsampling needs an even width");
        }
        if !height.is_multiple_of(sub_y) {
            return fail("chroma subsampling needs an even height");
        }
        Ok(())
    }

    /// The plane layout of a `width`×`height` frame, after validating the dimensions.
    pub fn plane_layout(self, width: u32, height: u32) -> Result<PlaneLayout> {
        self.validate_dimensions(width, height)?;
        let (w, h) = (width as usize, height as usize);
        let packed = |bpp: usize| Plane {
            offset: 0,
            stride: w * bpp,
            rows: h,
        };
        let luma = packed(1);
        let layout = match self {
            PixelFormat::Rgb24 => [packed(3), Plane::default(), Plane::default()],
            PixelFormat::Rgba | PixelFormat::Bgra => {
                [packed(4), Plane::default(), Plane::default()]
            }
            PixelFormat::Yuyv => [packed(2), Plane::default(), Plane::default()],
            PixelFormat::I420 => {
                let u = Plane {
                    offset: luma.len(),
                    stride: w / 2,
                    rows: h / 2,
                };
                let v = Plane {
                    offset: u.offset + u.len(),
                    ..u
                };
                [luma, u, v]
            }
            PixelFormat::Nv12 => {
                let uv = Plane {
                    offset: luma.len(),
                    stride: w,
                    rows: h / 2,
                };
                [luma, uv, Plane::default()]
            }
        };
        let count = match self {
            PixelFormat::I420 => 3,
            PixelFormat::Nv12 => 2,
            _ => 1,
        };
        Ok(PlaneLayout {
            planes: layout,
            count,
        })
    }

    /// Bytes of a tightly packed `width`×`height` frame, after validating the dimensions.
    pub fn frame_size(self, width: u32, height: u32) -> Result<usize> {
        Ok(self.plane_layout(width, height)?.total_len())
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PixelFormat {
    type Err = Error;

    /// Parses a format name, case-insensitively; V4L2 spellings (`yuy2`, `yu12`) are accepted.
    fn from_str(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "rgb24" | "rgb" | "rgb3" => Ok(PixelFormat::Rgb24),
            "rgba" | "rgba32" => Ok(PixelFormat::Rgba),
            "bgra" | "bgra32" => Ok(PixelFormat::Bgra),
            "yuyv" | "yuy2" => Ok(PixelFormat::Yuyv),
            "i420" | "yu12" | "yuv420p" => Ok(PixelFormat::I420),
            "nv12" => Ok(PixelFormat::Nv12),
            _ => Err(Error::UnknownPixelFormat(text.to_string())),
        }
    }
}

/// The Y'CbCr matrix of a YUV frame.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ColorMatrix {
    /// ITU-R BT.601 (SD); what v4l2 and browsers assume for webcam YUV without metadata.
    #[default]
    Bt601,
    /// ITU-R BT.709 (HD).
    Bt709,
}

/// The quantisation range of a YUV frame.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ColorRange {
    /// "TV" range: Y in 16..=235, Cb/Cr in 16..=240. The default for camera output.
    #[default]
    Limited,
    /// "PC"/JPEG range: Y, Cb, Cr in 0..=255.
    Full,
}

/// How YUV bytes map to RGB: matrix and range. The default is BT.601 limited.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct ColorSpec {
    pub matrix: ColorMatrix,
    pub range: ColorRange,
}

impl ColorSpec {
    /// BT.601 limited range: what v4l2 consumers and Chrome assume for webcam YUV.
    pub const BT601_LIMITED: ColorSpec = ColorSpec {
        matrix: ColorMatrix::Bt601,
        range: ColorRange::Limited,
    };
    /// BT.709 limited range: HD video.
    pub const BT709_LIMITED: ColorSpec = ColorSpec {
        matrix: ColorMatrix::Bt709,
        range: ColorRange::Limited,
    };

    pub const fn new(matrix: ColorMatrix, range: ColorRange) -> Self {
        ColorSpec { matrix, range }
    }
}

/// One video frame: tightly packed pixels in `format`, stamped with the pts of the audio that
/// drove it (the audio timeline is the master clock).
///
/// Fields are public for cheap access; the constructors check that `data` matches the
/// dimensions, and [`VideoFrame::validate`] re-checks a frame built by hand.
#[derive(Clone, PartialEq, Eq)]
pub struct VideoFrame {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub data: Vec<u8>,
    pub pts: Duration,
}

impl fmt::Debug for VideoFrame {
    // The pixel bytes would drown every log line; show their count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .field("data_len", &self.data.len())
            .field("pts", &self.pts)
            .finish()
    }
}

impl VideoFrame {
    /// Wraps `data` as a frame, checking the dimensions and the buffer length.
    pub fn new(
        width: u32,
        height: u32,
        format: PixelFormat,
        data: Vec<u8>,
        pts: Duration,
    ) -> Result<Self> {
        let frame = VideoFrame {
            width,
            height,
            format,
            data,
            pts,
        };
        frame.validate()?;
        Ok(frame)
    }

    /// A frame of all-zero bytes (black for RGB, not for YUV: use [`VideoFrame::solid`]).
    pub fn zeroed(width: u32, height: u32, format: PixelFormat, pts: Duration) -> Result<Self> {
        let size = format.frame_size(width, height)?;
        Ok(VideoFrame {
            width,
            height,
            format,
            data: vec![0; size],
            pts,
        })
    }

    /// A frame filled with one RGB colour, encoded for YUV formats in BT.601 limited range.
    pub fn solid(
        width: u32,
        height: u32,
        format: PixelFormat,
        rgb: [u8; 3],
        pts: Duration,
    ) -> Result<Self> {
        Self::solid_with(width, height, format, rgb, ColorSpec::default(), pts)
    }

    /// A frame filled with one RGB colour, encoded for YUV formats with `spec`.
    pub fn solid_with(
        width: u32,
        height: u32,
        format: PixelFormat,
        rgb: [u8; 3],
        spec: ColorSpec,
        pts: Duration,
    ) -> Result<Self> {
        let layout = format.plane_layout(width, height)?;
        let mut data = vec![0u8; layout.total_len()];
        let [r, g, b] = rgb;
        let (y, u, v) = crate::convert::rgb_pixel_to_yuv(rgb, spec);
        match format {
            PixelFormat::Rgb24 => fill_pattern(&mut data, &[r, g, b]),
            PixelFormat::Rgba => fill_pattern(&mut data, &[r, g, b, 255]),
            PixelFormat::Bgra => fill_pattern(&mut data, &[b, g, r, 255]),
            PixelFormat::Yuyv => fill_pattern(&mut data, &[y, u, y, v]),
            PixelFormat::I420 => {
                let [luma, cb, cr] = [layout.planes[0], layout.planes[1], layout.planes[2]];
                data[luma.range()].fill(y);
                data[cb.range()].fill(u);
                data[cr.range()].fill(v);
            }
            PixelFormat::Nv12 => {
                let [luma, uv] = [layout.planes[0], layout.planes[1]];
                data[luma.range()].fill(y);
                fill_pattern(&mut data[uv.range()], &[u, v]);
            }
        }
        Ok(VideoFrame {
            width,
            height,
            format,
            data,
            pts,
        })
    }

    /// Checks dimensions and buffer length; for frames whose public fields were edited.
    pub fn validate(&self) -> Result<()> {
        let expected = self.format.frame_size(self.width, self.height)?;
        if self.data.len() != expected {
            return Err(Error::FrameDataSize {
                format: self.format,
                width: self.width,
                height: self.height,
                expected,
                actual: self.data.len(),
            });
        }
        Ok(())
    }

    /// The frame's plane layout.
    pub fn plane_layout(&self) -> Result<PlaneLayout> {
        self.format.plane_layout(self.width, self.height)
    }

    /// The bytes of plane `index` (0 = the only plane of packed formats, or Y), if it exists.
    pub fn plane(&self, index: usize) -> Option<&[u8]> {
        let layout = self.plane_layout().ok()?;
        let plane = layout.planes().get(index)?;
        self.data.get(plane.range())
    }

    /// Converts into another format (a copy when the format is the same); see [`crate::convert`].
    pub fn convert(&self, format: PixelFormat, spec: ColorSpec) -> Result<VideoFrame> {
        crate::convert::convert_frame(self, format, spec)
    }

    /// The frame with another pts (frames are shared as `Arc`s, so re-stamping copies).
    pub fn with_pts(mut self, pts: Duration) -> Self {
        self.pts = pts;
        self
    }
}

/// Repeats `pattern` over `data` (whose length is a multiple of the pattern's).
fn fill_pattern(data: &mut [u8], pattern: &[u8]) {
    for chunk in data.chunks_exact_mut(pattern.len()) {
        chunk.copy_from_slice(pattern);
    }
}
