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

    /// True for NV12's interleaved U, V pairs.
    pub fn interleaved(&self) -> bool {
        self.step == 2
    }

    /// Chroma row `cy` of `chroma` (the buffer after the Y plane), `samples` U/V pairs long.
    /// `NV12` must equal [`Chroma420::interleaved`]: a compile-time layout lets the compiler
    /// vectorise the loops over the row (a run-time choice per row defeats it).
    #[inline(always)]
    pub fn row<'a, const NV12: bool>(
        &self,
        chroma: &'a [u8],
        cy: usize,
        samples: usize,
    ) -> ChromaRow<&'a [u8]> {
        let at = cy * self.stride;
        if NV12 {
            ChromaRow::Interleaved(&chroma[self.u + at..][..2 * samples])
        } else {
            ChromaRow::Planar(
                &chroma[self.u + at..][..samples],
                &chroma[self.v + at..][..samples],
            )
        }
    }

    /// Chroma row `cy` of `chroma` for writing; `NV12` as for [`Chroma420::row`].
    #[inline(always)]
    pub fn row_mut<'a, const NV12: bool>(
        &self,
        chroma: &'a mut [u8],
        cy: usize,
        samples: usize,
    ) -> ChromaRow<&'a mut [u8]> {
        let at = cy * self.stride;
        if NV12 {
            ChromaRow::Interleaved(&mut chroma[self.u + at..][..2 * samples])
        } else {
            // I420: V lies after U, so one split gives both rows.
            let (u_part, v_part) = chroma.split_at_mut(self.v);
            ChromaRow::Planar(
                &mut u_part[self.u + at..][..samples],
                &mut v_part[at..][..samples],
            )
        }
    }
}

/// One row of 4:2:0 chroma: separate U and V rows (I420) or one row of U, V pairs (NV12).
/// Matching once per row keeps the per-pixel loops free of index arithmetic, so the compiler
/// can vectorise them.
pub(crate) enum ChromaRow<S> {
    Planar(S, S),
    Interleaved(S),
}

impl ChromaRow<&[u8]> {
    /// Calls `f` with each item of `items` and the U, V sample beside it.
    #[inline(always)]
    pub fn zip_each<I: Iterator>(self, items: I, mut f: impl FnMut(I::Item, u8, u8)) {
        match self {
            ChromaRow::Planar(u, v) => {
                for (item, (&u, &v)) in items.zip(u.iter().zip(v)) {
                    f(item, u, v);
                }
            }
            ChromaRow::Interleaved(uv) => {
                for (item, pair) in items.zip(uv.chunks_exact(2)) {
                    f(item, pair[0], pair[1]);
                }
            }
        }
    }
}

impl ChromaRow<&mut [u8]> {
    /// Stores the U, V pairs that `samples` yields, in order.
    #[inline(always)]
    pub fn store(self, samples: impl Iterator<Item = (u8, u8)>) {
        match self {
            ChromaRow::Planar(u_row, v_row) => {
                for ((u, v), (du, dv)) in samples.zip(u_row.iter_mut().zip(v_row)) {
                    *du = u;
                    *dv = v;
                }
            }
            ChromaRow::Interleaved(uv) => {
                for ((u, v), pair) in samples.zip(uv.chunks_exact_mut(2)) {
                    pair[0] = u;
                    pair[1] = v;
                }
            }
        }
    }
}
