//! Bilinear scaling of BGRA frames to the source's output size (when it is not the engine's).

/// Scales `src` (`sw`×`sh` BGRA) into `out` at `dw`×`dh`.
pub fn scale_bgra(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32, out: &mut Vec<u8>) {
    out.resize(dw as usize * dh as usize * 4, 0);
    if sw == 0 || sh == 0 || src.len() < sw as usize * sh as usize * 4 {
        out.fill(0);
        return;
    }
    // Source coordinate of each destination column: index and weight of the right neighbour.
    let columns: Vec<(usize, usize, u32)> = (0..dw).map(|x| sample_point(x, dw, sw)).collect();
    let stride = sw as usize * 4;
    for (y, row) in out.chunks_exact_mut(dw as usize * 4).enumerate() {
        let (y0, y1, wy) = sample_point(y as u32, dh, sh);
        let (top, bottom) = (&src[y0 * stride..][..stride], &src[y1 * stride..][..stride]);
        for (px, &(x0, x1, wx)) in row.chunks_exact_mut(4).zip(&columns) {
            for c in 0..4 {
                let t = lerp(top[x0 * 4 + c], top[x1 * 4 + c], wx);
                let b = lerp(bottom[x0 * 4 + c], bottom[x1 * 4 + c], wx);
                px[c] = ((t * (256 - wy) + b * wy + 128) >> 8) as u8;
            }
        }
    }
}

/// (left index, right index, right weight in 1/256) of destination `i` of `dst` over `src`.
fn sample_point(i: u32, dst: u32, src: u32) -> (usize, usize, u32) {
    let pos = ((i as f32 + 0.5) * src as f32 / dst as f32 - 0.5).max(0.0);
    let left = (pos as u32).min(src - 1);
    let right = (left + 1).min(src - 1);
    (left as usize, right as usize, ((pos - left as f32) * 256.0) as u32)
}

fn lerp(a: u8, b: u8, w: u32) -> u32 {
    (a as u32 * (256 - w) + b as u32 * w + 128) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solid_frame_stays_solid_at_any_size() {
        let src: Vec<u8> = [10u8, 20, 30, 255].repeat(8 * 6);
        let mut out = Vec::new();
        for (w, h) in [(4, 3), (16, 12), (7, 5), (8, 6)] {
            scale_bgra(&src, 8, 6, w, h, &mut out);
            assert_eq!(out.len(), (w * h * 4) as usize);
            assert!(out.chunks_exact(4).all(|p| p == [10, 20, 30, 255]), "{w}x{h}");
        }
    }

    #[test]
    fn halves_keep_their_side() {
        // Left half black, right half white: halving keeps that split.
        let src: Vec<u8> = (0..4 * 8).flat_map(|i| if i % 8 < 4 { [0u8, 0, 0, 255] } else { [255, 255, 255, 255] }).collect();
        let mut out = Vec::new();
        scale_bgra(&src, 8, 4, 4, 2, &mut out);
        assert_eq!(&out[..4], &[0, 0, 0, 255]);
        assert_eq!(&out[12..16], &[255, 255, 255, 255]);
    }
}
