//! Fixed-point Y'CbCr coefficients, 16 fractional bits, derived once per conversion from the
//! matrix's Kr/Kb and the range's scale. Rounding is arranged so that grey stays exactly grey
//! (chroma rows sum to zero) and white hits exactly 235 (limited) or 255 (full).

use crate::frame::{ColorMatrix, ColorRange, ColorSpec};

pub(crate) const SHIFT: u32 = 16;
const ONE: f32 = (1 << SHIFT) as f32;
const HALF: i32 = 1 << (SHIFT - 1);

fn fixed(x: f32) -> i32 {
    (x * ONE).round() as i32
}

/// (Kr, Kb) luma weights of the matrix.
fn luma_weights(matrix: ColorMatrix) -> (f32, f32) {
    match matrix {
        ColorMatrix::Bt601 => (0.299, 0.114),
        ColorMatrix::Bt709 => (0.2126, 0.0722),
    }
}

/// (luma scale, luma offset, chroma scale) from 8-bit RGB units to 8-bit code values.
fn range_scales(range: ColorRange) -> (f32, i32, f32) {
    match range {
        ColorRange::Limited => (219.0 / 255.0, 16, 224.0 / 255.0),
        ColorRange::Full => (1.0, 0, 1.0),
    }
}

/// RGB → YUV: `y = (yr·R + yg·G + yb·B + y_bias) >> 16`, likewise for U and V.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RgbToYuv {
    pub yr: i32,
    pub yg: i32,
    pub yb: i32,
    pub ur: i32,
    pub ug: i32,
    pub ub: i32,
    pub vr: i32,
    pub vg: i32,
    pub vb: i32,
    /// Luma offset plus rounding half, in fixed point.
    pub y_bias: i32,
}

impl RgbToYuv {
    pub fn new(spec: ColorSpec) -> Self {
        let (kr, kb) = luma_weights(spec.matrix);
        let (y_scale, y_offset, c_scale) = range_scales(spec.range);
        let yr = fixed(kr * y_scale);
        let yb = fixed(kb * y_scale);
        let yg = fixed(y_scale) - yr - yb;
        let cb_div = 2.0 * (1.0 - kb);
        let cr_div = 2.0 * (1.0 - kr);
        let ur = fixed(-kr / cb_div * c_scale);
        let ub = fixed(0.5 * c_scale);
        let vr = ub;
        let vb = fixed(-kb / cr_div * c_scale);
        RgbToYuv {
            yr,
            yg,
            yb,
            ur,
            ug: -(ur + ub),
            ub,
            vr,
            vg: -(vr + vb),
            vb,
            y_bias: (y_offset << SHIFT) + HALF,
        }
    }

    #[inline(always)]
    pub fn luma(&self, r: i32, g: i32, b: i32) -> u8 {
        clamp_u8((self.yr * r + self.yg * g + self.yb * b + self.y_bias) >> SHIFT)
    }

    /// Chroma of the average of `2^log2_count` pixels whose channel sums are given: averaging
    /// RGB first then converting equals averaging U and V (the map is linear) and is cheaper.
    #[inline(always)]
    pub fn chroma_of_sum(&self, r: i32, g: i32, b: i32, log2_count: u32) -> (u8, u8) {
        let shift = SHIFT + log2_count;
        let bias = (128 << shift) + (1 << (shift - 1));
        let u = (self.ur * r + self.ug * g + self.ub * b + bias) >> shift;
        let v = (self.vr * r + self.vg * g + self.vb * b + bias) >> shift;
        (clamp_u8(u), clamp_u8(v))
    }
}

/// YUV → RGB: `R = (ys·(Y − y_offset) + rv·(V − 128) + ½) >> 16`, and so on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct YuvToRgb {
    pub y_scale: i32,
    pub y_offset: i32,
    pub rv: i32,
    pub gu: i32,
    pub gv: i32,
    pub bu: i32,
}

/// The chroma part of one YUV → RGB conversion, shared by the pixels of a chroma sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChromaTerms {
    r: i32,
    g: i32,
    b: i32,
}

impl YuvToRgb {
    pub fn new(spec: ColorSpec) -> Self {
        let (kr, kb) = luma_weights(spec.matrix);
        let kg = 1.0 - kr - kb;
        let (y_scale, y_offset, c_scale) = range_scales(spec.range);
        let cr_r = 2.0 * (1.0 - kr);
        let cb_b = 2.0 * (1.0 - kb);
        YuvToRgb {
            y_scale: fixed(1.0 / y_scale),
            y_offset,
            rv: fixed(cr_r / c_scale),
            gu: fixed(-kb * cb_b / kg / c_scale),
            gv: fixed(-kr * cr_r / kg / c_scale),
            bu: fixed(cb_b / c_scale),
        }
    }

    #[inline(always)]
    pub fn chroma(&self, u: u8, v: u8) -> ChromaTerms {
        let (u, v) = (u as i32 - 128, v as i32 - 128);
        ChromaTerms {
            r: self.rv * v + HALF,
            g: self.gu * u + self.gv * v + HALF,
            b: self.bu * u + HALF,
        }
    }

    #[inline(always)]
    pub fn rgb(&self, y: u8, chroma: ChromaTerms) -> [u8; 3] {
        let luma = self.y_scale * (y as i32 - self.y_offset);
        [
            clamp_u8((luma + chroma.r) >> SHIFT),
            clamp_u8((luma + chroma.g) >> SHIFT),
            clamp_u8((luma + chroma.b) >> SHIFT),
        ]
    }
}

#[inline(always)]
pub(crate) fn clamp_u8(x: i32) -> u8 {
    x.clamp(0, 255) as u8
}
