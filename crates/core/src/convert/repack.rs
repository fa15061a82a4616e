//! Conversions that need no colour matrix: reordering packed RGB bytes, and moving YUV samples
//! between the 4:2:2 and 4:2:0 layouts (chroma averaged vertically going down to 4:2:0,
//! repeated going up to 4:2:2).

use super::layout::{Chroma420, RgbLayout};

/// Packed RGB → packed RGB (alpha becomes opaque; it carries nothing through YUV either).
#[inline(always)] // compiled into each instruction-set variant, see `isa`
pub(crate) fn rgb_to_rgb<S: RgbLayout, D: RgbLayout>(src: &[u8], dst: &mut [u8]) {
    for (px_in, px_out) in src
        .chunks_exact(S::BYTES)
        .zip(dst.chunks_exact_mut(D::BYTES))
    {
        D::write(px_out, [px_in[S::R], px_in[S::G], px_in[S::B]]);
    }
}

/// I420 ↔ NV12: the Y plane is copied, the chroma samples move.
#[inline(always)] // compiled into each instruction-set variant, see `isa`
pub(crate) fn yuv420_to_yuv420(
    src: &[u8],
    src_chroma: Chroma420,
    width: usize,
    height: usize,
    dst: &mut [u8],
    dst_chroma: Chroma420,
) {
    let luma_len = width * height;
    let (src_luma, src_c) = src.split_at(luma_len);
    let (dst_luma, dst_c) = dst.split_at_mut(luma_len);
    dst_luma.copy_from_slice(src_luma);
    for cy in 0..height / 2 {
        for cx in 0..width / 2 {
            let (su, sv) = src_chroma.index(cx, cy);
            let (du, dv) = dst_chroma.index(cx, cy);
            dst_c[du] = src_c[su];
            dst_c[dv] = src_c[sv];
        }
    }
}

/// YUYV → I420/NV12: chroma of each row pair averaged (rounding half up).
#[inline(always)] // compiled into each instruction-set variant, see `isa`
pub(crate) fn yuyv_to_yuv420(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut [u8],
    chroma: Chroma420,
) {
    let (luma, chroma_buf) = dst.split_at_mut(width * height);
    let row_pairs = src
        .chunks_exact(4 * width)
        .zip(luma.chunks_exact_mut(2 * width));
    for (cy, (src_rows, luma_rows)) in row_pairs.enumerate() {
        let (top, bottom) = src_rows.split_at(2 * width);
        let (luma_top, luma_bottom) = luma_rows.split_at_mut(width);
        let pairs = top.chunks_exact(4).zip(bottom.chunks_exact(4)).zip(
            luma_top
                .chunks_exact_mut(2)
                .zip(luma_bottom.chunks_exact_mut(2)),
        );
        for (cx, ((t, b), (y_top, y_bottom))) in pairs.enumerate() {
            y_top.copy_from_slice(&[t[0], t[2]]);
            y_bottom.copy_from_slice(&[b[0], b[2]]);
            let (ui, vi) = chroma.index(cx, cy);
            chroma_buf[ui] = average(t[1], b[1]);
            chroma_buf[vi] = average(t[3], b[3]);
        }
    }
}

/// I420/NV12 → YUYV: each chroma row serves the two luma rows it covers.
#[inline(always)] // compiled into each instruction-set variant, see `isa`
pub(crate) fn yuv420_to_yuyv(
    src: &[u8],
    width: usize,
    height: usize,
    chroma: Chroma420,
    dst: &mut [u8],
) {
    let (luma, chroma_buf) = src.split_at(width * height);
    let rows = luma
        .chunks_exact(width)
        .zip(dst.chunks_exact_mut(2 * width));
    for (row, (luma_row, out_row)) in rows.enumerate() {
        let pairs = luma_row.chunks_exact(2).zip(out_row.chunks_exact_mut(4));
        for (cx, (y, out)) in pairs.enumerate() {
            let (ui, vi) = chroma.index(cx, row / 2);
            out.copy_from_slice(&[y[0], chroma_buf[ui], y[1], chroma_buf[vi]]);
        }
    }
}

#[inline(always)]
fn average(a: u8, b: u8) -> u8 {
    (a as u16 + b as u16).div_ceil(2) as u8
}
