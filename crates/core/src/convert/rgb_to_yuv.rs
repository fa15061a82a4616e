//! Packed RGB → YUV: luma per pixel, chroma from the channel sums of each 2×2 block (4:2:0,
//! one pair of rows at a time) or horizontal pair (4:2:2).

use super::coeffs::RgbToYuv;
use super::layout::{Chroma420, RgbLayout};

/// RGB → I420/NV12. `dst` is the whole frame buffer; dimensions are even and checked.
#[inline(always)] // compiled into each instruction-set variant, see `isa`
pub(crate) fn rgb_to_yuv420<L: RgbLayout>(
    src: &[u8],
    width: usize,
    height: usize,
    k: &RgbToYuv,
    dst: &mut [u8],
    chroma: Chroma420,
) {
    let (luma, chroma_buf) = dst.split_at_mut(width * height);
    // Luma over the whole frame, then chroma from each pair of rows: two simple loops that the
    // compiler vectorises (one fused loop over 2×2 blocks stays scalar); the second read of
    // the source mostly comes from cache.
    for (px, y) in src.chunks_exact(L::BYTES).zip(luma.iter_mut()) {
        let (r, g, b) = L::read(px);
        *y = k.luma(r, g, b);
    }
    if chroma.interleaved() {
        chroma_of_blocks::<L, true>(src, width, height, k, chroma_buf, chroma);
    } else {
        chroma_of_blocks::<L, false>(src, width, height, k, chroma_buf, chroma);
    }
}

/// The chroma rows of RGB → 4:2:0, for one compile-time chroma layout.
#[inline(always)]
fn chroma_of_blocks<L: RgbLayout, const NV12: bool>(
    src: &[u8],
    width: usize,
    height: usize,
    k: &RgbToYuv,
    chroma_buf: &mut [u8],
    chroma: Chroma420,
) {
    let src_stride = width * L::BYTES;
    for (cy, src_rows) in src
        .chunks_exact(2 * src_stride)
        .take(height / 2)
        .enumerate()
    {
        let (top, bottom) = src_rows.split_at(src_stride);
        let pairs = top
            .chunks_exact(2 * L::BYTES)
            .zip(bottom.chunks_exact(2 * L::BYTES));
        let samples = pairs.map(|(top_px, bottom_px)| {
            let (r0, g0, b0) = L::read(top_px);
            let (r1, g1, b1) = L::read(&top_px[L::BYTES..]);
            let (r2, g2, b2) = L::read(bottom_px);
            let (r3, g3, b3) = L::read(&bottom_px[L::BYTES..]);
            k.chroma_of_sum(r0 + r1 + r2 + r3, g0 + g1 + g2 + g3, b0 + b1 + b2 + b3, 2)
        });
        chroma
            .row_mut::<NV12>(chroma_buf, cy, width / 2)
            .store(samples);
    }
}

/// RGB → YUYV. The width is even and checked.
#[inline(always)] // compiled into each instruction-set variant, see `isa`
pub(crate) fn rgb_to_yuyv<L: RgbLayout>(src: &[u8], k: &RgbToYuv, dst: &mut [u8]) {
    for (px, out) in src.chunks_exact(2 * L::BYTES).zip(dst.chunks_exact_mut(4)) {
        let (r0, g0, b0) = L::read(px);
        let (r1, g1, b1) = L::read(&px[L::BYTES..]);
        let (u, v) = k.chroma_of_sum(r0 + r1, g0 + g1, b0 + b1, 1);
        out[0] = k.luma(r0, g0, b0);
        out[1] = u;
        out[2] = k.luma(r1, g1, b1);
        out[3] = v;
    }
}
