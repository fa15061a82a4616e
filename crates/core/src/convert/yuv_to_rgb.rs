//! YUV → packed RGB in one pass: the chroma terms are computed once per chroma sample and
//! shared by the 4 (4:2:0) or 2 (4:2:2) pixels it covers.

use super::coeffs::YuvToRgb;
use super::layout::{Chroma420, RgbLayout};

/// I420/NV12 → RGB. `src` is the whole frame buffer; dimensions are even and checked.
#[inline(always)] // compiled into each instruction-set variant, see `isa`
pub(crate) fn yuv420_to_rgb<L: RgbLayout>(
    src: &[u8],
    width: usize,
    height: usize,
    chroma: Chroma420,
    k: &YuvToRgb,
    dst: &mut [u8],
) {
    if chroma.interleaved() {
        yuv420_layout_to_rgb::<L, true>(src, width, height, chroma, k, dst);
    } else {
        yuv420_layout_to_rgb::<L, false>(src, width, height, chroma, k, dst);
    }
}

/// I420/NV12 → RGB for one compile-time chroma layout.
#[inline(always)]
fn yuv420_layout_to_rgb<L: RgbLayout, const NV12: bool>(
    src: &[u8],
    width: usize,
    height: usize,
    chroma: Chroma420,
    k: &YuvToRgb,
    dst: &mut [u8],
) {
    let dst_stride = width * L::BYTES;
    let (luma, chroma_buf) = src.split_at(width * height);
    let row_pairs = luma
        .chunks_exact(2 * width)
        .zip(dst.chunks_exact_mut(2 * dst_stride))
        .take(height / 2);
    for (cy, (luma_rows, dst_rows)) in row_pairs.enumerate() {
        let (luma_top, luma_bottom) = luma_rows.split_at(width);
        let (top, bottom) = dst_rows.split_at_mut(dst_stride);
        let blocks = luma_top
            .chunks_exact(2)
            .zip(luma_bottom.chunks_exact(2))
            .zip(
                top.chunks_exact_mut(2 * L::BYTES)
                    .zip(bottom.chunks_exact_mut(2 * L::BYTES)),
            );
        let row = chroma.row::<NV12>(chroma_buf, cy, width / 2);
        row.zip_each(blocks, |((y_top, y_bottom), (top_px, bottom_px)), u, v| {
            let terms = k.chroma(u, v);
            let (top0, top1) = top_px.split_at_mut(L::BYTES);
            let (bottom0, bottom1) = bottom_px.split_at_mut(L::BYTES);
            L::write(top0, k.rgb(y_top[0], terms));
            L::write(top1, k.rgb(y_top[1], terms));
            L::write(bottom0, k.rgb(y_bottom[0], terms));
            L::write(bottom1, k.rgb(y_bottom[1], terms));
        });
    }
}

/// YUYV → RGB. The width is even and checked.
#[inline(always)] // compiled into each instruction-set variant, see `isa`
pub(crate) fn yuyv_to_rgb<L: RgbLayout>(src: &[u8], k: &YuvToRgb, dst: &mut [u8]) {
    for (yuyv, px) in src.chunks_exact(4).zip(dst.chunks_exact_mut(2 * L::BYTES)) {
        let terms = k.chroma(yuyv[1], yuyv[3]);
        let (px0, px1) = px.split_at_mut(L::BYTES);
        L::write(px0, k.rgb(yuyv[0], terms));
        L::write(px1, k.rgb(yuyv[2], terms));
    }
}
