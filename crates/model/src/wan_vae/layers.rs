//! Building blocks of the Wan2.1 VAE: causal 3-D convolution with a per-conv feature cache,
//! RMS norm, residual and attention blocks, spatial/temporal resampling.
//!
//! Activations are kept frame-major, `[B, T, C, H, W]`, so that "all frames as a batch of
//! images" is a free reshape to `[B*T, C, H, W]` for candle's conv2d.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::VaeError;
use crate::same_conv::SameConv;

/// Frames of its input that each cached causal conv keeps for the next chunk.
pub(crate) const CACHE_T: usize = 2;

/// What one cached layer remembers of the previous chunk.
#[derive(Clone, Debug, Default)]
pub(crate) enum Slot {
    /// Nothing seen yet.
    #[default]
    Empty,
    /// An `upsample3d` that has seen its first chunk: the first latent frame is not doubled in
    /// time, and the next chunk's time conv is zero-padded instead of reading a cache.
    Rep,
    /// The last input frames of the previous chunk.
    Frames(Tensor),
}

/// The feature caches of one encoder or decoder pass, one slot per cached layer, handed out in
/// traversal order (the same order on every chunk).
#[derive(Clone, Debug, Default)]
pub(crate) struct FeatCache {
    slots: Vec<Slot>,
}

impl FeatCache {
    pub(crate) fn cursor(&mut self) -> CacheCursor<'_> {
        CacheCursor {
            slots: &mut self.slots,
            next: 0,
        }
    }
}

pub(crate) struct CacheCursor<'a> {
    slots: &'a mut Vec<Slot>,
    next: usize,
}

impl CacheCursor<'_> {
    pub(crate) fn next_slot(&mut self) -> &mut Slot {
        if self.next == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        self.next += 1;
        &mut self.slots[self.next - 1]
    }
}

fn num_frames(x: &Tensor) -> Result<usize> {
    x.dim(1)
}

/// The last `n` frames of `x` (all of them if it has fewer).
fn last_frames(x: &Tensor, n: usize) -> Result<Tensor> {
    let t = num_frames(x)?;
    let n = n.min(t);
    x.narrow(1, t - n, n)
}

/// Causal 3-D convolution: temporal padding only on the left (2*pad_t frames, or the cached
/// frames of the previous chunk), symmetric spatial padding. Computed as a sum over temporal
/// taps of 2-D convolutions over all output frames at once, in channels-last layout
/// ([`SameConv`]).
#[derive(Clone, Debug)]
pub(crate) struct CausalConv3d {
    /// One spatial kernel per temporal tap.
    taps: Vec<SameConv>,
    /// `[1, 1, O, 1, 1]`.
    bias: Tensor,
    stride_t: usize,
    /// Frames of left padding the causal conv needs (2 * the symmetric padding of a Conv3d).
    pad_t: usize,
    /// The weights as `[O, kt, kh, kw, C]` for cuDNN's 3-D convolution (CUDA, bf16/f16 only).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    ktrsc: Option<Tensor>,
}

impl CausalConv3d {
    /// `kernel` = (kt, kh, kw); spatial padding is kh/2 (always "same" in this VAE), temporal
    /// padding `padding_t` as given to the reference Conv3d (doubled, all on the left).
    pub(crate) fn new(
        c_in: usize,
        c_out: usize,
        kernel: (usize, usize, usize),
        stride_t: usize,
        padding_t: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (kt, kh, kw) = kernel;
        let weight = vb.get((c_out, c_in, kt, kh, kw), "weight")?;
        let bias = vb.get(c_out, "bias")?.reshape((1, 1, c_out, 1, 1))?;
        let taps = (0..kt)
            .map(|k| SameConv::new(&weight.narrow(2, k, 1)?.squeeze(2)?))
            .collect::<Result<Vec<_>>>()?;
        let ktrsc = (weight.device().is_cuda() && matches!(weight.dtype(), DType::BF16 | DType::F16))
            .then(|| weight.permute((0, 2, 3, 4, 1))?.contiguous())
            .transpose()?;
        Ok(Self {
            taps,
            bias,
            stride_t,
            pad_t: 2 * padding_t,
            ktrsc,
        })
    }

    /// `x`: `[B, T, C, H, W]`; `cache`: frames of the previous chunk to use instead of zero
    /// padding (ignored by convs without temporal padding, as in the reference).
    pub(crate) fn forward(&self, x: &Tensor, cache: Option<&Tensor>) -> Result<Tensor> {
        self.forward_layout(x, cache, false)
    }

    /// [`Self::forward`] for frames in either layout: `[B, T, C, H, W]`, or channels-last `[B,
    /// T, H, W, C]` when `channels_last` (the output is in the input's layout).
    pub(crate) fn forward_layout(&self, x: &Tensor, cache: Option<&Tensor>, channels_last: bool) -> Result<Tensor> {
        let mut left = self.pad_t;
        let mut x = x.clone();
        if let (Some(cache), true) = (cache, self.pad_t > 0) {
            let cache = last_frames(cache, self.pad_t)?;
            left -= num_frames(&cache)?;
            x = Tensor::cat(&[&cache, &x], 1)?;
        }
        let t = num_frames(&x)? + left;
        let kt = self.taps.len();
        if t < kt {
            return Err(VaeError::Input(format!(
                "causal conv needs at least {kt} frames after padding, got {t}"
            ))
            .into());
        }
        if channels_last {
            #[cfg(feature = "cuda")]
            if let Some(w) = &self.ktrsc {
                if let Some(y) = crate::cuda::conv::conv3d_ndhwc(&x, w, Some(&self.bias.flatten_all()?), left, self.stride_t)? {
                    return Ok(y);
                }
            }
            let y = self.conv_padded(&x.permute((0, 1, 4, 2, 3))?, left, t)?;
            return y.permute((0, 1, 3, 4, 2))?.contiguous();
        }
        self.conv_padded(&x, left, t)
    }

    /// The convolution of `[B, T, C, H, W]` frames (the cached ones included) after `left` zero
    /// frames, `t` frames in all.
    fn conv_padded(&self, x: &Tensor, left: usize, t: usize) -> Result<Tensor> {
        let kt = self.taps.len();
        #[cfg(feature = "cuda")]
        if let Some(w) = &self.ktrsc {
            // one cuDNN 3-D convolution (zero frames as padding, bias in the epilogue) in
            // channels-last order
            let xl = x.permute((0, 1, 3, 4, 2))?;
            if let Some(y) = crate::cuda::conv::conv3d_ndhwc(&xl, w, Some(&self.bias.flatten_all()?), left, self.stride_t)? {
                return y.permute((0, 1, 4, 2, 3))?.contiguous();
            }
        }
        let x = x.pad_with_zeros(1, left, 0)?;
        let t_out = (t - kt) / self.stride_t + 1;
        // Channels-last and spatially padded once for all taps: [B, T, Hp, Wp, C].
        let padded = self.taps[0].pad(&x.permute((0, 1, 3, 4, 2))?)?;
        let (b, _, hp, wp, c) = padded.dims5()?;
        // sum over taps k of conv2d(frames k, k+stride, ..., tap k), on the padded grid
        let mut grid: Option<Tensor> = None;
        for (k, tap) in self.taps.iter().enumerate() {
            let frames = if self.stride_t == 1 {
                padded.narrow(1, k, t_out)?
            } else {
                let idx: Vec<u32> = (0..t_out).map(|i| (k + i * self.stride_t) as u32).collect();
                let idx = Tensor::new(idx.as_slice(), x.device())?;
                padded.contiguous()?.index_select(&idx, 1)?
            };
            let y = tap.grid_product(&frames.reshape((b * t_out, hp, wp, c))?)?;
            grid = Some(match grid {
                None => y,
                Some(acc) => (acc + y)?,
            });
        }
        let Some(grid) = grid else {
            return Err(VaeError::Input("causal conv without temporal taps".into()).into());
        };
        let y = self.taps[0].crop(&grid, b * t_out, hp, wp)?;
        let (_, h, w, o) = y.dims4()?;
        y.reshape((b, t_out, h, w, o))?
            .permute((0, 1, 4, 2, 3))?
            .contiguous()?
            .broadcast_add(&self.bias)
    }

    /// Forward with the reference's per-conv cache: use the previous chunk's last frames as
    /// left context and remember this input's last CACHE_T frames (topped up with the
    /// previous chunk's last frame when this chunk is a single frame).
    pub(crate) fn forward_cached(&self, x: &Tensor, slot: &mut Slot) -> Result<Tensor> {
        self.forward_cached_layout(x, slot, false)
    }

    /// [`Self::forward_cached`] in either layout (see [`Self::forward_layout`]); the slot keeps
    /// frames in the layout it is fed.
    pub(crate) fn forward_cached_layout(&self, x: &Tensor, slot: &mut Slot, channels_last: bool) -> Result<Tensor> {
        let prev = match slot {
            Slot::Frames(p) => Some(p.clone()),
            _ => None,
        };
        let mut keep = last_frames(x, CACHE_T)?;
        if let (Some(p), true) = (&prev, num_frames(&keep)? < CACHE_T) {
            keep = Tensor::cat(&[&last_frames(p, 1)?, &keep], 1)?;
        }
        let y = self.forward_layout(x, prev.as_ref(), channels_last)?;
        *slot = Slot::Frames(keep);
        Ok(y)
    }
}

/// A plain 2-D convolution applied to every frame.
#[derive(Clone, Debug)]
pub(crate) struct FrameConv2d {
    kernel: FrameKernel,
    bias: Tensor,
    /// A 1x1 convolution's weight as a matrix `[O, C]` (shares the weight's storage).
    matrix: Option<Tensor>,
}

#[derive(Clone, Debug)]
enum FrameKernel {
    /// Stride 1 with "same" padding: the channels-last matrix product.
    Same(SameConv),
    /// Anything else (the stride-2 down-sampling conv): candle's conv2d.
    Strided {
        weight: Tensor,
        padding: usize,
        stride: usize,
    },
}

impl FrameConv2d {
    pub(crate) fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        padding: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get((c_out, c_in, k, k), "weight")?;
        let bias = vb.get(c_out, "bias")?.reshape((1, c_out, 1, 1))?;
        let matrix = (k == 1).then(|| weight.reshape((c_out, c_in))).transpose()?;
        let kernel = if stride == 1 && 2 * padding + 1 == k {
            FrameKernel::Same(SameConv::new(&weight)?)
        } else {
            FrameKernel::Strided {
                weight,
                padding,
                stride,
            }
        };
        Ok(Self { kernel, bias, matrix })
    }
}

impl FrameConv2d {
    /// A 1x1 convolution of channels-last tokens `[..., C]` -> `[..., O]`: a matrix product.
    pub(crate) fn forward_tokens(&self, x: &Tensor) -> Result<Tensor> {
        let Some(m) = &self.matrix else {
            return Err(VaeError::Input("a token projection needs a 1x1 convolution".into()).into());
        };
        x.broadcast_matmul(&m.t()?)?.broadcast_add(&self.bias.flatten_all()?)
    }

    /// The convolution of channels-last frames `[N, H, W, C]` -> `[N, H', W', O]`.
    pub(crate) fn forward_nhwc(&self, x: &Tensor) -> Result<Tensor> {
        match &self.kernel {
            FrameKernel::Same(conv) => conv.forward_nhwc(x, Some(&self.bias.flatten_all()?), None, false),
            FrameKernel::Strided { .. } => self.forward(&x.permute((0, 3, 1, 2))?)?.permute((0, 2, 3, 1))?.contiguous(),
        }
    }
}

impl Module for FrameConv2d {
    /// `x`: `[N, C, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.kernel {
            FrameKernel::Same(conv) => conv.forward_nchw(x)?,
            FrameKernel::Strided {
                weight,
                padding,
                stride,
            } => x.conv2d(weight, *padding, *stride, 1, 1)?,
        };
        y.broadcast_add(&self.bias)
    }
}

/// `F.normalize(x, dim=channels) * sqrt(C) * gamma`, computed in f32 (one fused kernel, with the
/// SiLU that follows it, for channels-last frames on CUDA in bf16).
#[derive(Clone, Debug)]
pub(crate) struct RmsNorm {
    /// `sqrt(C) * gamma` as `[1, 1, C, 1, 1]`, f32.
    scaled_gamma: Tensor,
}

impl RmsNorm {
    /// `gamma_rank`: 4 for the `[C,1,1,1]` gains of 3-D blocks, 3 for the `[C,1,1]` gain of the
    /// attention block.
    pub(crate) fn new(c: usize, gamma_rank: usize, vb: VarBuilder) -> Result<Self> {
        let gamma = match gamma_rank {
            4 => vb.get((c, 1, 1, 1), "gamma")?,
            _ => vb.get((c, 1, 1), "gamma")?,
        };
        let scaled_gamma =
            (gamma.to_dtype(DType::F32)?.reshape((1, 1, c, 1, 1))? * (c as f64).sqrt())?;
        Ok(Self { scaled_gamma })
    }
}

impl RmsNorm {
    /// The norm over the channels of `[B, T, C, H, W]` frames, or of channels-last frames `[...,
    /// C]` (one kernel, SiLU included, on CUDA in bf16); then SiLU when `silu`.
    pub(crate) fn forward_layout(&self, x: &Tensor, channels_last: bool, silu: bool) -> Result<Tensor> {
        let gain = if channels_last { self.scaled_gamma.flatten_all()? } else { self.scaled_gamma.clone() };
        #[cfg(feature = "cuda")]
        if channels_last && x.device().is_cuda() && x.dtype() == DType::BF16 && crate::cuda::fused::enabled() {
            if let Some(y) = crate::cuda::fused::row_rms_norm(x, &gain, silu)? {
                return Ok(y);
            }
        }
        let channels = if channels_last { x.rank() - 1 } else { 2 };
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let norm = x.sqr()?.sum_keepdim(channels)?.sqrt()?.maximum(1e-12)?;
        let y = x.broadcast_div(&norm)?.broadcast_mul(&gain)?.to_dtype(dtype)?;
        if silu {
            candle_nn::ops::silu(&y)
        } else {
            Ok(y)
        }
    }
}

impl Module for RmsNorm {
    /// `x`: `[B, T, C, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_layout(x, false, false)
    }
}

/// RMS norm -> SiLU -> conv -> RMS norm -> SiLU -> conv, plus a 1x1x1 shortcut when the width
/// changes. Keys: `residual.{0,2,3,6}`, `shortcut`.
#[derive(Clone, Debug)]
pub(crate) struct ResidualBlock {
    norm1: RmsNorm,
    conv1: CausalConv3d,
    norm2: RmsNorm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

impl ResidualBlock {
    pub(crate) fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let r = vb.pp("residual");
        Ok(Self {
            norm1: RmsNorm::new(c_in, 4, r.pp(0))?,
            conv1: CausalConv3d::new(c_in, c_out, (3, 3, 3), 1, 1, r.pp(2))?,
            norm2: RmsNorm::new(c_out, 4, r.pp(3))?,
            conv2: CausalConv3d::new(c_out, c_out, (3, 3, 3), 1, 1, r.pp(6))?,
            shortcut: if c_in != c_out {
                Some(CausalConv3d::new(
                    c_in,
                    c_out,
                    (1, 1, 1),
                    1,
                    0,
                    vb.pp("shortcut"),
                )?)
            } else {
                None
            },
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, cache: &mut CacheCursor) -> Result<Tensor> {
        self.forward_layout(x, cache, false)
    }

    /// [`Self::forward`] in either layout (see [`CausalConv3d::forward_layout`]).
    pub(crate) fn forward_layout(&self, x: &Tensor, cache: &mut CacheCursor, channels_last: bool) -> Result<Tensor> {
        let h = match &self.shortcut {
            Some(conv) => conv.forward_layout(x, None, channels_last)?,
            None => x.clone(),
        };
        let r = self.norm1.forward_layout(x, channels_last, true)?;
        let r = self.conv1.forward_cached_layout(&r, cache.next_slot(), channels_last)?;
        let r = self.norm2.forward_layout(&r, channels_last, true)?;
        let r = self.conv2.forward_cached_layout(&r, cache.next_slot(), channels_last)?;
        r + h
    }
}

/// Single-head self-attention over the pixels of each frame. Keys: `norm`, `to_qkv`, `proj`.
#[derive(Clone, Debug)]
pub(crate) struct AttentionBlock {
    norm: RmsNorm,
    to_qkv: FrameConv2d,
    proj: FrameConv2d,
}

impl AttentionBlock {
    pub(crate) fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: RmsNorm::new(c, 3, vb.pp("norm"))?,
            to_qkv: FrameConv2d::new(c, 3 * c, 1, 0, 1, vb.pp("to_qkv"))?,
            proj: FrameConv2d::new(c, c, 1, 0, 1, vb.pp("proj"))?,
        })
    }

    /// The block on channels-last frames `[B, T, H, W, C]`.
    pub(crate) fn forward_channels_last(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h, w, c) = x.dims5()?;
        let dtype = x.dtype();
        // [BT, HW, 3C]: q, k, v are consecutive channel blocks
        let xn = self.norm.forward_layout(x, true, false)?.reshape((b * t, h * w, c))?;
        let qkv = self.to_qkv.forward_tokens(&xn)?.to_dtype(DType::F32)?;
        let q = qkv.narrow(D::Minus1, 0, c)?.contiguous()?;
        let k = qkv.narrow(D::Minus1, c, c)?.contiguous()?;
        let v = qkv.narrow(D::Minus1, 2 * c, c)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? / (c as f64).sqrt())?;
        let attn = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?.to_dtype(dtype)?;
        let out = self.proj.forward_tokens(&attn)?.reshape((b, t, h, w, c))?;
        out + x
    }
}

impl Module for AttentionBlock {
    /// `x`: `[B, T, C, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let dtype = x.dtype();
        let xn = self.norm.forward(x)?.reshape((b * t, c, h, w))?;
        // [BT, 3C, HW] -> [BT, HW, 3C]: q, k, v are consecutive channel blocks.
        let qkv = self
            .to_qkv
            .forward(&xn)?
            .reshape((b * t, 3 * c, h * w))?
            .transpose(1, 2)?;
        let qkv = qkv.to_dtype(DType::F32)?;
        let q = qkv.narrow(D::Minus1, 0, c)?.contiguous()?;
        let k = qkv.narrow(D::Minus1, c, c)?.contiguous()?;
        let v = qkv.narrow(D::Minus1, 2 * c, c)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? / (c as f64).sqrt())?;
        let attn = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
        let attn = attn
            .to_dtype(dtype)?
            .transpose(1, 2)?
            .reshape((b * t, c, h, w))?;
        let out = self.proj.forward(&attn)?.reshape((b, t, c, h, w))?;
        out + x
    }
}

/// How a [`Resample`] changes the resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResampleMode {
    Upsample2d,
    Upsample3d,
    Downsample2d,
    Downsample3d,
}

/// Spatial x2 up/down sampling, with a causal time conv for the 3-D modes.
/// Keys: `resample.1` (the 2-D conv), `time_conv`.
#[derive(Clone, Debug)]
pub(crate) struct Resample {
    mode: ResampleMode,
    conv: FrameConv2d,
    time_conv: Option<CausalConv3d>,
}

impl Resample {
    pub(crate) fn new(c: usize, mode: ResampleMode, vb: VarBuilder) -> Result<Self> {
        use ResampleMode::*;
        let conv = match mode {
            Upsample2d | Upsample3d => FrameConv2d::new(c, c / 2, 3, 1, 1, vb.pp("resample.1"))?,
            Downsample2d | Downsample3d => FrameConv2d::new(c, c, 3, 0, 2, vb.pp("resample.1"))?,
        };
        let time_conv = match mode {
            // One frame in, two out: the 2C output channels are the two frames.
            Upsample3d => Some(CausalConv3d::new(
                c,
                2 * c,
                (3, 1, 1),
                1,
                1,
                vb.pp("time_conv"),
            )?),
            Downsample3d => Some(CausalConv3d::new(
                c,
                c,
                (3, 1, 1),
                2,
                0,
                vb.pp("time_conv"),
            )?),
            _ => None,
        };
        Ok(Self {
            mode,
            conv,
            time_conv,
        })
    }

    /// The up-sampling modes on channels-last frames `[B, T, H, W, C]` (the down-sampling ones,
    /// encoder only, through the NCDHW path).
    pub(crate) fn forward_channels_last(&self, x: &Tensor, cache: &mut CacheCursor) -> Result<Tensor> {
        let x = match (&self.time_conv, self.mode) {
            (Some(tc), ResampleMode::Upsample3d) => upsample_in_time(tc, x, cache.next_slot(), true)?,
            (_, ResampleMode::Upsample2d) => x.clone(),
            _ => return self.forward(&x.permute((0, 1, 4, 2, 3))?, cache)?.permute((0, 1, 3, 4, 2))?.contiguous(),
        };
        let (b, t, h, w, c) = x.dims5()?;
        let up = crate::same_conv::upsample_nearest_nhwc(&x.reshape((b * t, h, w, c))?, 2)?;
        let y = self.conv.forward_nhwc(&up)?;
        let (_, ho, wo, co) = y.dims4()?;
        y.reshape((b, t, ho, wo, co))
    }

    pub(crate) fn forward(&self, x: &Tensor, cache: &mut CacheCursor) -> Result<Tensor> {
        let x = match (&self.time_conv, self.mode) {
            (Some(tc), ResampleMode::Upsample3d) => upsample_in_time(tc, x, cache.next_slot(), false)?,
            _ => x.clone(),
        };
        let (b, t, c, h, w) = x.dims5()?;
        let frames = x.reshape((b * t, c, h, w))?;
        let y = match self.mode {
            ResampleMode::Upsample2d | ResampleMode::Upsample3d => self
                .conv
                .forward(&frames.upsample_nearest2d(2 * h, 2 * w)?)?,
            // ZeroPad2d((0, 1, 0, 1)): one extra row/column at the bottom/right only.
            _ => {
                let padded = frames.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?;
                self.conv.forward(&padded)?
            }
        };
        let (_, co, ho, wo) = y.dims4()?;
        let y = y.reshape((b, t, co, ho, wo))?;
        match (&self.time_conv, self.mode) {
            (Some(tc), ResampleMode::Downsample3d) => downsample_in_time(tc, &y, cache.next_slot()),
            _ => Ok(y),
        }
    }
}

/// Doubles the frame count, except on the very first chunk (the first latent frame stands for
/// one video frame); frames in either layout (see [`CausalConv3d::forward_layout`]).
fn upsample_in_time(time_conv: &CausalConv3d, x: &Tensor, slot: &mut Slot, channels_last: bool) -> Result<Tensor> {
    let prev = std::mem::take(slot);
    let (keep, cached) = match &prev {
        Slot::Empty => {
            *slot = Slot::Rep;
            return Ok(x.clone());
        }
        Slot::Rep => {
            let keep = last_frames(x, CACHE_T)?;
            let keep = if num_frames(&keep)? < CACHE_T {
                Tensor::cat(&[&keep.zeros_like()?, &keep], 1)?
            } else {
                keep
            };
            (keep, None)
        }
        Slot::Frames(p) => {
            let keep = last_frames(x, CACHE_T)?;
            let keep = if num_frames(&keep)? < CACHE_T {
                Tensor::cat(&[&last_frames(p, 1)?, &keep], 1)?
            } else {
                keep
            };
            (keep, Some(p))
        }
    };
    let y = time_conv.forward_layout(x, cached, channels_last)?;
    *slot = Slot::Frames(keep);
    if channels_last {
        // [B, T, H, W, 2C] -> [B, T, H, W, 2, C] -> [B, T, 2, H, W, C] -> [B, 2T, H, W, C]
        let (b, t, h, w, c2) = y.dims5()?;
        return y.reshape((b, t, h, w, 2, c2 / 2))?.permute((0, 1, 4, 2, 3, 5))?.reshape((b, 2 * t, h, w, c2 / 2));
    }
    // [B, T, 2C, H, W] -> [B, T, 2, C, H, W] -> [B, 2T, C, H, W]
    let (b, t, c2, h, w) = y.dims5()?;
    y.reshape((b, 2 * t, c2 / 2, h, w))
}

/// Halves the frame count with a stride-2 time conv over [last frame of previous chunk, x];
/// the first chunk passes through unchanged.
fn downsample_in_time(time_conv: &CausalConv3d, x: &Tensor, slot: &mut Slot) -> Result<Tensor> {
    match std::mem::take(slot) {
        Slot::Frames(p) => {
            let y = time_conv.forward(&Tensor::cat(&[&last_frames(&p, 1)?, x], 1)?, None)?;
            *slot = Slot::Frames(last_frames(x, 1)?);
            Ok(y)
        }
        Slot::Empty | Slot::Rep => {
            *slot = Slot::Frames(x.clone());
            Ok(x.clone())
        }
    }
}
