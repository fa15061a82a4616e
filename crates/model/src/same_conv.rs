//! Stride-1 "same" 2-D convolution as one matrix product in channels-last layout (used by the
//! Wan VAE and TAEHV).
//!
//! candle's conv2d (im2col in NCHW, then a GEMM; or cuDNN in NCHW) ran a 3x3, 96-channel
//! convolution of four 512x512 bf16 frames in 17 ms (8 ms with cuDNN) on an H100, which made a
//! full-size VAE decode take ~0.7 s per latent. Here the picture is zero-padded and flattened
//! to `[N*Hp*Wp, C]` rows; output pixel `p` of the padded grid reads rows `p + dy*Wp + dx`, so
//! every tap is the same matrix shifted by a constant number of rows. The taps are laid side by
//! side (`[rows, k*k*C]`, coalesced copies) and multiplied once with the `[k*k*C, O]` weights;
//! the pixels of the padding border are computed and dropped.
//!
//! On CUDA (bf16/f16) [`SameConv::forward_nhwc`] runs cuDNN's convolution with the bias,
//! residual and ReLU fused ([`crate::cuda::conv`]); the matrix product above stays the CPU path
//! and the reference the CUDA path is tested against.

use candle_core::{Result, Tensor, D};

/// One conv kernel as a `[kh*kw*C, O]` matrix (rows ordered tap-major, then input channel).
#[derive(Clone, Debug)]
pub(crate) struct SameConv {
    matrix: Tensor,
    /// `[O, kh, kw, C]` for cuDNN (CUDA devices only).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    krsc: Option<Tensor>,
    kh: usize,
    kw: usize,
}

impl SameConv {
    /// From a PyTorch `[O, C, kh, kw]` kernel (odd kh, kw: "same" padding kh/2, kw/2).
    pub(crate) fn new(weight: &Tensor) -> Result<Self> {
        let (o, c, kh, kw) = weight.dims4()?;
        let matrix = weight
            .permute((2, 3, 1, 0))?
            .reshape((kh * kw * c, o))?
            .contiguous()?;
        let krsc = match weight.device() {
            candle_core::Device::Cuda(_) => Some(weight.permute((0, 2, 3, 1))?.contiguous()?),
            _ => None,
        };
        Ok(Self { matrix, krsc, kh, kw })
    }

    /// `relu?(conv(x) + bias? + residual?)` for channels-last `x: [N, H, W, C]` -> `[N, H, W,
    /// O]`; `bias: [O]`, `residual: [N, H, W, O]`.
    pub(crate) fn forward_nhwc(&self, x: &Tensor, bias: Option<&Tensor>, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(krsc) = &self.krsc {
            if let Some(y) = crate::cuda::conv::conv2d_nhwc(x, krsc, bias, residual, relu)? {
                return Ok(y);
            }
        }
        let padded = self.pad(x)?;
        let (n, hp, wp, _) = padded.dims4()?;
        let mut y = self.crop(&self.grid_product(&padded)?, n, hp, wp)?;
        if let Some(b) = bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(r) = residual {
            y = (y + r)?;
        }
        if relu {
            y = y.relu()?;
        }
        Ok(y)
    }

    /// Pads `x: [..., H, W, C]` for this kernel: `[..., H + kh-1, W + kw-1, C]`.
    pub(crate) fn pad(&self, x: &Tensor) -> Result<Tensor> {
        let (ph, pw) = (self.kh / 2, self.kw / 2);
        x.pad_with_zeros(D::Minus(3), ph, ph)?
            .pad_with_zeros(D::Minus2, pw, pw)
    }

    /// `padded: [N, Hp, Wp, C]` (from [`SameConv::pad`]) -> the output over the padded grid,
    /// `[N*Hp*Wp - border, O]`; [`SameConv::crop`] turns it into pixels.
    pub(crate) fn grid_product(&self, padded: &Tensor) -> Result<Tensor> {
        let (n, hp, wp, c) = padded.dims4()?;
        let flat = padded.reshape((n * hp * wp, c))?;
        if self.kh * self.kw == 1 {
            return flat.matmul(&self.matrix);
        }
        let rows = self.grid_rows(n, hp, wp);
        let taps = (0..self.kh)
            .flat_map(|dy| (0..self.kw).map(move |dx| dy * wp + dx))
            .map(|shift| flat.narrow(0, shift, rows))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&taps, 1)?.matmul(&self.matrix)
    }

    /// Rows of [`SameConv::grid_product`]: the grid positions whose taps all stay inside.
    fn grid_rows(&self, n: usize, hp: usize, wp: usize) -> usize {
        n * hp * wp - ((self.kh - 1) * wp + (self.kw - 1))
    }

    /// The `[N, H, W, O]` pixels of a grid product over `[N, Hp, Wp, _]`.
    pub(crate) fn crop(&self, grid: &Tensor, n: usize, hp: usize, wp: usize) -> Result<Tensor> {
        let o = grid.dim(1)?;
        let missing = n * hp * wp - grid.dim(0)?;
        let (h, w) = (hp + 1 - self.kh, wp + 1 - self.kw);
        grid.pad_with_zeros(0, 0, missing)?
            .reshape((n, hp, wp, o))?
            .narrow(1, 0, h)?
            .narrow(2, 0, w)
    }

    /// Convolution of NCHW frames `[N, C, H, W]` -> `[N, O, H, W]` (no bias).
    pub(crate) fn forward_nchw(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward_nhwc(&x.permute((0, 2, 3, 1))?, None, None, false)?;
        y.permute((0, 3, 1, 2))?.contiguous()
    }
}


/// Nearest-neighbour upscaling of channels-last frames `[B, H, W, C]` by `f` in H and W.
pub(crate) fn upsample_nearest_nhwc(x: &Tensor, f: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        // one pass with 16-byte vectors (the broadcast copy below moves ~4x slower)
        if let Some(y) = crate::cuda::fused::upsample_nearest_nhwc(x, f)? {
            return Ok(y);
        }
    }
    let (b, h, w, c) = x.dims4()?;
    x.reshape((b, h, 1, w, 1, c))?
        .broadcast_as((b, h, f, w, f, c))?
        .reshape((b, h * f, w * f, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candle_conv2d() -> Result<()> {
        let dev = Device::Cpu;
        for (k, h, w) in [(3, 5, 7), (1, 4, 3), (3, 1, 1)] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev)?;
            let weight = Tensor::randn(0f32, 1.0, (4, 3, k, k), &dev)?;
            let want = x.conv2d(&weight, k / 2, 1, 1, 1)?;
            let got = SameConv::new(&weight)?.forward_nchw(&x)?;
            assert_eq!(got.dims(), want.dims());
            let d = (got - &want)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(d < 1e-5, "k={k} {h}x{w}: max diff {d}");
        }
        Ok(())
    }
}
