//! Reference-image preprocessing of the LiveTalk pipeline: an RGB picture becomes the
//! `[1, 3, 1, th, tw]` tensor in [-1, 1] that the VAE encodes into the identity latent.
//!
//! Steps, as in the reference (`ToTensor` -> `resize_pad` -> `x*2-1`):
//! 1. uint8 -> f32 in [0, 1] (`x / 255`);
//! 2. scale = max(th/h, tw/w), resize to (int(h*scale), int(w*scale)) with torchvision's
//!    antialiased bilinear filter (a triangle filter stretched by the scale when shrinking);
//! 3. centred zero padding, or cropping where the resized picture is larger than the target;
//! 4. x*2 - 1.
//!
//! The resampler mirrors PyTorch's CPU `_upsample_bilinear2d_aa` for float tensors (weights
//! in f32, width pass first, then height) so the result matches to float rounding.

use candle_core::{Device, Tensor};

/// Bad picture or target size.
#[derive(Debug, thiserror::Error)]
pub enum ImagePreprocessError {
    #[error("reference image: {width}x{height} RGB needs {expected} bytes, got {actual}")]
    DataSize {
        width: usize,
        height: usize,
        expected: usize,
        actual: usize,
    },
    #[error("reference image: {0}")]
    Size(String),
}

impl From<ImagePreprocessError> for candle_core::Error {
    fn from(e: ImagePreprocessError) -> Self {
        candle_core::Error::wrap(e)
    }
}

type Result<T> = std::result::Result<T, ImagePreprocessError>;

/// `match_size`: the candidate `[th, tw]` whose aspect ratio is closest to `h/w` (on a tie in
/// ratio and in size difference, the later candidate). `None` when there are no candidates.
pub fn match_size(candidates: &[[usize; 2]], height: usize, width: usize) -> Option<[usize; 2]> {
    let mut best_ratio = 9999.0;
    let mut best_size = 9999.0;
    let mut selected = None;
    for &[th, tw] in candidates {
        let ratio = (th as f64 / tw as f64 - height as f64 / width as f64).abs();
        let size = (th.max(tw) as f64 - width.max(height) as f64).abs();
        if ratio < best_ratio {
            best_ratio = ratio;
            best_size = size;
            selected = Some([th, tw]);
        }
        if ratio == best_ratio && size == best_size {
            selected = Some([th, tw]);
        }
    }
    selected
}

/// The size the picture is resized to before the centred pad/crop: scale = max(th/h, tw/w).
pub fn scaled_size(height: usize, width: usize, target: [usize; 2]) -> [usize; 2] {
    let scale = (target[0] as f64 / height as f64).max(target[1] as f64 / width as f64);
    [
        (height as f64 * scale) as usize,
        (width as f64 * scale) as usize,
    ]
}

/// Preprocesses an RGB picture (`rgb`: `height * width * 3` bytes, row-major HWC) into a
/// channel-first `[3, th, tw]` image in [-1, 1].
pub fn preprocess_reference_image(
    rgb: &[u8],
    height: usize,
    width: usize,
    target: [usize; 2],
) -> Result<Vec<f32>> {
    let expected = height * width * 3;
    if rgb.len() != expected {
        return Err(ImagePreprocessError::DataSize {
            width,
            height,
            expected,
            actual: rgb.len(),
        });
    }
    if height == 0 || width == 0 {
        return Err(ImagePreprocessError::Size(format!(
            "empty picture {width}x{height}"
        )));
    }
    let [th, tw] = target;
    let [sh, sw] = scaled_size(height, width, target);
    if th == 0 || tw == 0 || sh == 0 || sw == 0 {
        return Err(ImagePreprocessError::Size(format!(
            "cannot fit a {width}x{height} picture into {tw}x{th}"
        )));
    }
    // ToTensor: HWC uint8 -> CHW f32 in [0, 1].
    let mut chw = vec![0f32; expected];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * height * width + i] = px[c] as f32 / 255.0;
        }
    }
    let resized = resize_antialiased(&chw, 3, [height, width], [sh, sw]);
    Ok(pad_crop_centred(&resized, 3, [sh, sw], target)
        .into_iter()
        .map(|v| v * 2.0 - 1.0)
        .collect())
}

/// [`preprocess_reference_image`] as the pipeline's `[1, 3, 1, th, tw]` f32 tensor.
pub fn reference_image_tensor(
    rgb: &[u8],
    height: usize,
    width: usize,
    target: [usize; 2],
    device: &Device,
) -> candle_core::Result<Tensor> {
    let data = preprocess_reference_image(rgb, height, width, target)?;
    Tensor::from_vec(data, (1, 3, 1, target[0], target[1]), device)
}

/// Centred zero padding (`top = (th - sh) // 2`, floor division, the rest at the bottom; same
/// for left/right); a negative padding crops.
fn pad_crop_centred(
    img: &[f32],
    channels: usize,
    size: [usize; 2],
    target: [usize; 2],
) -> Vec<f32> {
    let [sh, sw] = size;
    let [th, tw] = target;
    let top = (th as i64 - sh as i64).div_euclid(2);
    let left = (tw as i64 - sw as i64).div_euclid(2);
    let mut out = vec![0f32; channels * th * tw];
    for c in 0..channels {
        for y in 0..th {
            let sy = y as i64 - top;
            if sy < 0 || sy >= sh as i64 {
                continue;
            }
            for x in 0..tw {
                let sx = x as i64 - left;
                if sx >= 0 && sx < sw as i64 {
                    out[(c * th + y) * tw + x] = img[(c * sh + sy as usize) * sw + sx as usize];
                }
            }
        }
    }
    out
}

/// Antialiased bilinear resize of a `[channels, h, w]` f32 image (torchvision `Resize` on a
/// float tensor, `antialias=True`): width first, then height; an axis whose size does not
/// change is left alone.
pub fn resize_antialiased(
    img: &[f32],
    channels: usize,
    size: [usize; 2],
    out: [usize; 2],
) -> Vec<f32> {
    let [h, w] = size;
    let [oh, ow] = out;
    let mut cur = img.to_vec();
    if ow != w {
        let taps = AxisTaps::new(w, ow);
        let mut next = vec![0f32; channels * h * ow];
        for row in 0..channels * h {
            let src = &cur[row * w..(row + 1) * w];
            for (x, dst) in next[row * ow..(row + 1) * ow].iter_mut().enumerate() {
                *dst = taps.apply(x, |j| src[j]);
            }
        }
        cur = next;
    }
    if oh != h {
        let taps = AxisTaps::new(h, oh);
        let mut next = vec![0f32; channels * oh * ow];
        for c in 0..channels {
            let plane = &cur[c * h * ow..(c + 1) * h * ow];
            for y in 0..oh {
                for x in 0..ow {
                    next[(c * oh + y) * ow + x] = taps.apply(y, |j| plane[j * ow + x]);
                }
            }
        }
        cur = next;
    }
    cur
}

/// Per output index along one axis: the first input index and the normalised filter weights.
struct AxisTaps {
    first: Vec<usize>,
    weights: Vec<Vec<f32>>,
}

impl AxisTaps {
    /// PyTorch's `_compute_indices_min_size_weights_aa` for the bilinear (triangle) filter,
    /// with its float/double mix: f32 scale, center and weights, f64 offsets.
    fn new(in_size: usize, out_size: usize) -> Self {
        let triangle = |x: f32| {
            let x = x.abs();
            if x < 1.0 {
                1.0 - x
            } else {
                0.0
            }
        };
        let scale = in_size as f32 / out_size as f32;
        // Shrinking stretches the filter over `scale` input pixels on each side.
        let (support, invscale) = if scale >= 1.0 {
            (scale, 1.0 / scale)
        } else {
            (1.0f32, 1.0f32)
        };
        let mut first = Vec::with_capacity(out_size);
        let mut weights = Vec::with_capacity(out_size);
        for i in 0..out_size {
            let center = (scale as f64 * (i as f64 + 0.5)) as f32;
            let lo = (((center - support) as f64 + 0.5) as i64).max(0);
            let hi = (((center + support) as f64 + 0.5) as i64).min(in_size as i64);
            let mut w: Vec<f32> = (lo..hi.max(lo))
                .map(|j| triangle((((j as f32 - center) as f64 + 0.5) * invscale as f64) as f32))
                .collect();
            let total: f32 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            first.push(lo as usize);
            weights.push(w);
        }
        Self { first, weights }
    }

    /// `sum_j w_j * src(first + j)`, accumulated in order from the first tap.
    fn apply(&self, i: usize, src: impl Fn(usize) -> f32) -> f32 {
        let first = self.first[i];
        self.weights[i]
            .iter()
            .enumerate()
            .fold(0.0, |acc, (j, w)| acc + src(first + j) * w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_size_prefers_closest_ratio() {
        let sizes = [[400, 720], [720, 720], [720, 400]];
        assert_eq!(match_size(&sizes, 1472, 1104), Some([720, 720]));
        assert_eq!(match_size(&sizes, 1080, 1920), Some([400, 720]));
        assert_eq!(match_size(&[], 10, 10), None);
    }

    #[test]
    fn same_size_is_identity_and_pad_crop_is_centred() {
        let img: Vec<f32> = (0..2 * 3 * 4).map(|v| v as f32 / 24.0).collect();
        assert_eq!(resize_antialiased(&img, 2, [3, 4], [3, 4]), img);
        // 3x4 into 4x2: one zero row on top is 0 rows (floor(1/2)), 1 at the bottom; crop one
        // column on each side.
        let out = pad_crop_centred(&img, 1, [3, 4], [4, 2]);
        assert_eq!(
            out,
            vec![img[1], img[2], img[5], img[6], img[9], img[10], 0.0, 0.0]
        );
    }

    #[test]
    fn constant_picture_stays_constant() {
        let rgb = vec![200u8; 7 * 5 * 3];
        let out = preprocess_reference_image(&rgb, 7, 5, [4, 4]).unwrap();
        let want = 200.0 / 255.0 * 2.0 - 1.0;
        assert!(out.iter().all(|v| (v - want).abs() < 1e-6), "{out:?}");
    }

    #[test]
    fn rejects_wrong_byte_count() {
        let err = preprocess_reference_image(&[0u8; 10], 2, 2, [4, 4]).unwrap_err();
        assert!(err.to_string().contains("needs 12 bytes, got 10"), "{err}");
    }
}
