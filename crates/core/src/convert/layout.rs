//! Compile-time descriptions of the packed RGB byte orders and a run-time one of the two 4:2:0
//! chroma layouts, so each conversion loop is written once and specialised per format.

/// Byte order of a packed RGB format.
pub(crate) trait RgbLayout {
    const BYTES: usize;
    const R: usize;
    const G: usize;
    const B: usize;

    #[inline(always)]
    fn read(px: &[u8]) -> (i32, i32, i32) {
        (px[Self::R] as i32, px[Self::G] as i32, px[Self::B] as i32)
    }

    /// Writes a pixel; 4-byte layouts keep alpha at byte 3 and get it opaque.
    #[inline(always)]
    fn write(px: &mut [u8], [r, g, b]: [u8; 3]) {
        px[Self::R] = r;
        px[Self::G] = g;
        px[Self::B] = b;
        if Self::BYTES == 4 {
            px[3] = 255;
        }
    }
}

pub(crate) struct Rgb24;
pub(crate) struct Rgba;
pub(crate) struct Bgra;

impl RgbLayout for Rgb24 {
    const BYTES: usize = 3;
    const R: usize = 0;
    const G: usize = 1;
    const B: usize = 2;
}

impl RgbLayout for Rgba {
    const BYTES: usize = 4;
    const R: usize = 0;
    const G: usize = 1;
    const B: usize = 2;
}

impl RgbLayout for Bgra {
    const BYTES: usize = 4;
    const R: usize = 2;
    const G: usize = 1;
    const B: usize = 0;
}

/// Where the U and V samples of a 4:2:0 frame lie, relative to the end of the Y plane:
/// sample (cx, cy) of U is at `u + cy·stride + cx·step`, likewise V.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chroma420 {
    pub u: usize,
    pub v: usize,
    pub stride: usize,
    pub step: usize,
}

impl Chroma420 {
    /// I420: a U plane of (width/2)×(height/2), then a V plane.
    pub fn i420(width: usize, height: usize) -> Self {
        let (chroma_w, chroma_h) = (width / 2, height / 2);
        Chroma420 {
            u: 0,
            v: chroma_w * chroma_h,
            stride: chroma_w,
            step: 1,
        }
    }

    /// NV12: one plane of interleaved U, V pairs, `width` bytes a row.
    pub fn nv12(width: usize) -> Self {
        Chroma420 {
            u: 0,
            v: 1,
            stride: width,
            step: 2,
        }
    }

    #[inline(always)]
    pub fn index(&self, cx: usize, cy: usize) -> (usize, usize) {
        let at = cy * self.stride + cx * self.step;
        (self.u + at, self.v + at)
    }
}
