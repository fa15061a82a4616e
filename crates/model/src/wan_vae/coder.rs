//! The Wan2.1 VAE encoder (x8 space, x4 time down) and decoder (the mirror image), both
//! processing one temporal chunk at a time through per-layer feature caches.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{
    AttentionBlock, CacheCursor, CausalConv3d, Resample, ResampleMode, ResidualBlock, RmsNorm,
};
use super::WanVaeConfig;

/// One entry of `downsamples` / `upsamples` (the key index is the position in the list).
#[derive(Clone, Debug)]
enum Stage {
    Residual(ResidualBlock),
    Attention(AttentionBlock),
    Resample(Resample),
}

impl Stage {
    fn forward(&self, x: &Tensor, cache: &mut CacheCursor) -> Result<Tensor> {
        match self {
            Stage::Residual(b) => b.forward(x, cache),
            Stage::Attention(a) => a.forward(x),
            Stage::Resample(r) => r.forward(x, cache),
        }
    }

    /// On channels-last frames `[B, T, H, W, C]`.
    fn forward_channels_last(&self, x: &Tensor, cache: &mut CacheCursor) -> Result<Tensor> {
        match self {
            Stage::Residual(b) => b.forward_layout(x, cache, true),
            Stage::Attention(a) => a.forward_channels_last(x),
            Stage::Resample(r) => r.forward_channels_last(x, cache),
        }
    }
}

/// Appends `n` residual blocks (`c_in -> c_out`, then `c_out -> c_out`), each followed by an
/// attention block at the configured resolutions; keys are the running list index.
fn push_blocks(
    stages: &mut Vec<Stage>,
    vb: &VarBuilder,
    c_in: usize,
    c_out: usize,
    n: usize,
    with_attention: bool,
) -> Result<()> {
    let mut c_in = c_in;
    for _ in 0..n {
        let block = ResidualBlock::new(c_in, c_out, vb.pp(stages.len()))?;
        stages.push(Stage::Residual(block));
        if with_attention {
            stages.push(Stage::Attention(AttentionBlock::new(
                c_out,
                vb.pp(stages.len()),
            )?));
        }
        c_in = c_out;
    }
    Ok(())
}

/// residual -> attention -> residual at the lowest resolution (`middle.{0,1,2}`).
#[derive(Clone, Debug)]
struct Middle {
    res1: ResidualBlock,
    attn: AttentionBlock,
    res2: ResidualBlock,
}

impl Middle {
    fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            res1: ResidualBlock::new(c, c, vb.pp(0))?,
            attn: AttentionBlock::new(c, vb.pp(1))?,
            res2: ResidualBlock::new(c, c, vb.pp(2))?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut CacheCursor) -> Result<Tensor> {
        let x = self.res1.forward(x, cache)?;
        let x = self.attn.forward(&x)?;
        self.res2.forward(&x, cache)
    }

    fn forward_channels_last(&self, x: &Tensor, cache: &mut CacheCursor) -> Result<Tensor> {
        let x = self.res1.forward_layout(x, cache, true)?;
        let x = self.attn.forward_channels_last(&x)?;
        self.res2.forward_layout(&x, cache, true)
    }
}

/// RMS norm -> SiLU -> causal conv (`head.{0,2}`).
#[derive(Clone, Debug)]
struct Head {
    norm: RmsNorm,
    conv: CausalConv3d,
}

impl Head {
    fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: RmsNorm::new(c_in, 4, vb.pp(0))?,
            conv: CausalConv3d::new(c_in, c_out, (3, 3, 3), 1, 1, vb.pp(2))?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut CacheCursor) -> Result<Tensor> {
        let x = self.norm.forward_layout(x, false, true)?;
        self.conv.forward_cached(&x, cache.next_slot())
    }

    fn forward_channels_last(&self, x: &Tensor, cache: &mut CacheCursor) -> Result<Tensor> {
        let x = self.norm.forward_layout(x, true, true)?;
        self.conv.forward_cached_layout(&x, cache.next_slot(), true)
    }
}

/// Pixels `[B, T, 3, H, W]` -> `[B, T', 2*z_dim, H/8, W/8]` (mu and log-variance).
#[derive(Clone, Debug)]
pub(crate) struct Encoder3d {
    conv1: CausalConv3d,
    downsamples: Vec<Stage>,
    middle: Middle,
    head: Head,
}

impl Encoder3d {
    pub(crate) fn new(cfg: &WanVaeConfig, vb: VarBuilder) -> Result<Self> {
        let dims: Vec<usize> = std::iter::once(1)
            .chain(cfg.dim_mult.iter().copied())
            .map(|m| cfg.dim * m)
            .collect();
        let conv1 = CausalConv3d::new(3, dims[0], (3, 3, 3), 1, 1, vb.pp("conv1"))?;
        let vbd = vb.pp("downsamples");
        let mut downsamples = Vec::new();
        let mut scale = 1.0;
        let levels = cfg.dim_mult.len();
        for (i, pair) in dims.windows(2).enumerate() {
            let with_attention = cfg.attn_scales.contains(&scale);
            let (c_in, c_out) = (pair[0], pair[1]);
            push_blocks(
                &mut downsamples,
                &vbd,
                c_in,
                c_out,
                cfg.num_res_blocks,
                with_attention,
            )?;
            if i != levels - 1 {
                let mode = if cfg.temperal_downsample[i] {
                    ResampleMode::Downsample3d
                } else {
                    ResampleMode::Downsample2d
                };
                let vb = vbd.pp(downsamples.len());
                downsamples.push(Stage::Resample(Resample::new(c_out, mode, vb)?));
                scale /= 2.0;
            }
        }
        let c = dims[levels];
        Ok(Self {
            conv1,
            downsamples,
            middle: Middle::new(c, vb.pp("middle"))?,
            head: Head::new(c, 2 * cfg.z_dim, vb.pp("head"))?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, cache: &mut CacheCursor) -> Result<Tensor> {
        let mut x = self.conv1.forward_cached(x, cache.next_slot())?;
        for stage in &self.downsamples {
            x = stage.forward(&x, cache)?;
        }
        let x = self.middle.forward(&x, cache)?;
        self.head.forward(&x, cache)
    }
}

/// Latents `[B, T, z_dim, h, w]` (un-normalised, after `conv2`) -> pixels `[B, T', 3, 8h, 8w]`.
#[derive(Clone, Debug)]
pub(crate) struct Decoder3d {
    conv1: CausalConv3d,
    middle: Middle,
    upsamples: Vec<Stage>,
    head: Head,
}

impl Decoder3d {
    pub(crate) fn new(cfg: &WanVaeConfig, vb: VarBuilder) -> Result<Self> {
        let levels = cfg.dim_mult.len();
        let dims: Vec<usize> = std::iter::once(cfg.dim_mult[levels - 1])
            .chain(cfg.dim_mult.iter().rev().copied())
            .map(|m| cfg.dim * m)
            .collect();
        let conv1 = CausalConv3d::new(cfg.z_dim, dims[0], (3, 3, 3), 1, 1, vb.pp("conv1"))?;
        let middle = Middle::new(dims[0], vb.pp("middle"))?;
        let vbu = vb.pp("upsamples");
        let mut upsamples = Vec::new();
        let mut scale = 1.0 / 2f64.powi(levels as i32 - 2);
        for (i, pair) in dims.windows(2).enumerate() {
            // Every up-sampling conv halves the width, so later levels start at half.
            let (c_in, c_out) = (if i == 0 { pair[0] } else { pair[0] / 2 }, pair[1]);
            let with_attention = cfg.attn_scales.contains(&scale);
            push_blocks(
                &mut upsamples,
                &vbu,
                c_in,
                c_out,
                cfg.num_res_blocks + 1,
                with_attention,
            )?;
            if i != levels - 1 {
                // The decoder mirrors the encoder: its time upsampling list is reversed.
                let mode = if cfg.temperal_downsample[levels - 2 - i] {
                    ResampleMode::Upsample3d
                } else {
                    ResampleMode::Upsample2d
                };
                let vb = vbu.pp(upsamples.len());
                upsamples.push(Stage::Resample(Resample::new(c_out, mode, vb)?));
                scale *= 2.0;
            }
        }
        Ok(Self {
            conv1,
            middle,
            upsamples,
            head: Head::new(dims[levels], 3, vb.pp("head"))?,
        })
    }

    /// `channels_last`: keep frames `[B, T, H, W, C]` between layers.
    pub(crate) fn forward(&self, x: &Tensor, cache: &mut CacheCursor, channels_last: bool) -> Result<Tensor> {
        if channels_last {
            // frames stay [B, T, H, W, C] between layers: no permutes around each cuDNN conv
            let x = x.permute((0, 1, 3, 4, 2))?.contiguous()?;
            let x = self.conv1.forward_cached_layout(&x, cache.next_slot(), true)?;
            let mut x = self.middle.forward_channels_last(&x, cache)?;
            for stage in &self.upsamples {
                x = stage.forward_channels_last(&x, cache)?;
            }
            let y = self.head.forward_channels_last(&x, cache)?;
            return y.permute((0, 1, 4, 2, 3))?.contiguous();
        }
        let x = self.conv1.forward_cached(x, cache.next_slot())?;
        let mut x = self.middle.forward(&x, cache)?;
        for stage in &self.upsamples {
            x = stage.forward(&x, cache)?;
        }
        self.head.forward(&x, cache)
    }
}

/// Whether the decoder runs channels-last: on CUDA in bf16, where the convolutions and norms
/// read that layout directly (`LIVETALK_FUSED=0` or `LIVETALK_CONV=portable` keep NCDHW).
pub(crate) fn channels_last_decode(x: &Tensor) -> bool {
    #[cfg(feature = "cuda")]
    {
        x.device().is_cuda()
            && x.dtype() == candle_core::DType::BF16
            && crate::cuda::fused::enabled()
            && !crate::cuda::conv::forced_portable()
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = x;
        false
    }
}
