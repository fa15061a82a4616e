//! The Wan2.1 video VAE (causal 3-D conv autoencoder, x8 space / x4 time), as used by LiveTalk
//! through `WanVAEWrapper`: pixels in [-1, 1] <-> normalised latents `(mu - mean) / std`.
//!
//! Time is causal: the encoder reads frames in chunks 1, 4, 4, ... and the decoder one latent
//! frame at a time, each conv carrying the last frames of the previous chunk in a feature
//! cache. The first latent frame stands for one video frame, every later one for four, so
//! `F` latents decode to `4F - 3` frames. [`VaeStreamDecoder`] exposes the cached decode one
//! latent at a time; it is the same computation as [`WanVae::decode`].
//!
//! Layouts follow the wrapper: pixels in `[B, 3, F, H, W]`, latents `[B, F, 16, h, w]`, video
//! out `[B, T, 3, H, W]`. Weight names are those of `Wan2.1_VAE.pth` (no prefix).

mod coder;
mod layers;

use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use coder::{Decoder3d, Encoder3d};
use layers::{CausalConv3d, FeatCache};

/// Bad VAE configuration or input.
#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    #[error("Wan VAE config {path}: {reason}")]
    ConfigFile { path: String, reason: String },
    #[error("Wan VAE config field `{field}`: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("Wan VAE input: {0}")]
    Input(String),
}

impl From<VaeError> for candle_core::Error {
    fn from(e: VaeError) -> Self {
        candle_core::Error::wrap(e)
    }
}

fn default_dim() -> usize {
    96
}
fn default_z_dim() -> usize {
    16
}
fn default_dim_mult() -> Vec<usize> {
    vec![1, 2, 4, 4]
}
fn default_num_res_blocks() -> usize {
    2
}
fn default_temperal_downsample() -> Vec<bool> {
    vec![false, true, true]
}
fn default_latents_mean() -> Vec<f32> {
    vec![
        -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715,
        0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
    ]
}
fn default_latents_std() -> Vec<f32> {
    vec![
        2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652,
        1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
    ]
}

/// Architecture and latent statistics. Every field defaults to the real Wan2.1 VAE
/// (`dim` 96), so `{}` is the published model; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WanVaeConfig {
    #[serde(default = "default_dim")]
    pub dim: usize,
    #[serde(default = "default_z_dim")]
    pub z_dim: usize,
    #[serde(default = "default_dim_mult")]
    pub dim_mult: Vec<usize>,
    #[serde(default = "default_num_res_blocks")]
    pub num_res_blocks: usize,
    /// Resolutions (1, 1/2, 1/4, ...) that get an attention block after each residual block.
    #[serde(default)]
    pub attn_scales: Vec<f64>,
    /// Per encoder level (all but the last): whether it also halves time. (Sic: the reference's
    /// spelling, kept so the JSON matches.)
    #[serde(default = "default_temperal_downsample")]
    pub temperal_downsample: Vec<bool>,
    #[serde(default = "default_latents_mean")]
    pub latents_mean: Vec<f32>,
    #[serde(default = "default_latents_std")]
    pub latents_std: Vec<f32>,
}

impl Default for WanVaeConfig {
    fn default() -> Self {
        Self::wan21()
    }
}

impl WanVaeConfig {
    /// The published Wan2.1 VAE (`Wan2.1_VAE.pth`).
    pub fn wan21() -> Self {
        Self {
            dim: default_dim(),
            z_dim: default_z_dim(),
            dim_mult: default_dim_mult(),
            num_res_blocks: default_num_res_blocks(),
            attn_scales: Vec::new(),
            temperal_downsample: default_temperal_downsample(),
            latents_mean: default_latents_mean(),
            latents_std: default_latents_std(),
        }
    }

    /// Reads and validates a JSON config (e.g. `fixtures/vae.config.json`).
    pub fn from_file(path: impl AsRef<Path>) -> std::result::Result<Self, VaeError> {
        let path = path.as_ref();
        let err = |reason: String| VaeError::ConfigFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that the fields describe a buildable model.
    pub fn validate(&self) -> std::result::Result<(), VaeError> {
        let bad = |field, reason: String| Err(VaeError::InvalidConfig { field, reason });
        if self.dim == 0 {
            return bad("dim", "must be > 0".into());
        }
        if self.z_dim == 0 {
            return bad("z_dim", "must be > 0".into());
        }
        if self.dim_mult.len() < 2 || self.dim_mult.contains(&0) {
            return bad(
                "dim_mult",
                format!("needs >= 2 non-zero entries, got {:?}", self.dim_mult),
            );
        }
        if self.temperal_downsample.len() != self.dim_mult.len() - 1 {
            return bad(
                "temperal_downsample",
                format!(
                    "needs {} entries (one per down-sampling), got {}",
                    self.dim_mult.len() - 1,
                    self.temperal_downsample.len()
                ),
            );
        }
        if self.latents_mean.len() != self.z_dim {
            return bad(
                "latents_mean",
                format!(
                    "needs {} values, got {}",
                    self.z_dim,
                    self.latents_mean.len()
                ),
            );
        }
        if self.latents_std.len() != self.z_dim {
            return bad(
                "latents_std",
                format!(
                    "needs {} values, got {}",
                    self.z_dim,
                    self.latents_std.len()
                ),
            );
        }
        if self
            .latents_std
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return bad("latents_std", "values must be finite and > 0".into());
        }
        Ok(())
    }

    /// Video frames per latent frame after the first one (2 per temporal up-sampling).
    pub fn time_factor(&self) -> usize {
        1 << self.temperal_downsample.iter().filter(|t| **t).count()
    }

    /// Pixels per latent pixel along each spatial axis.
    pub fn space_factor(&self) -> usize {
        1 << (self.dim_mult.len() - 1)
    }
}

/// Latent normalisation `(mu - mean) * (1/std)` and its inverse, as the wrapper computes them.
#[derive(Clone, Debug)]
struct LatentStats {
    /// `[1, 1, z, 1, 1]`.
    mean: Tensor,
    /// `[1, 1, z, 1, 1]`, `1/std` rounded to the working dtype like the reference's `scale[1]`.
    inv_std: Tensor,
}

impl LatentStats {
    fn new(cfg: &WanVaeConfig, dtype: DType, device: &Device) -> Result<Self> {
        let z = cfg.z_dim;
        let mean = Tensor::new(cfg.latents_mean.as_slice(), device)?.reshape((1, 1, z, 1, 1))?;
        let std = Tensor::new(cfg.latents_std.as_slice(), device)?.reshape((1, 1, z, 1, 1))?;
        Ok(Self {
            mean: mean.to_dtype(dtype)?,
            inv_std: std.recip()?.to_dtype(dtype)?,
        })
    }

    fn normalise(&self, mu: &Tensor) -> Result<Tensor> {
        mu.broadcast_sub(&self.mean)?.broadcast_mul(&self.inv_std)
    }

    fn unnormalise(&self, z: &Tensor) -> Result<Tensor> {
        z.broadcast_div(&self.inv_std)?.broadcast_add(&self.mean)
    }
}

/// The decoding half: everything [`VaeStreamDecoder`] needs.
#[derive(Clone, Debug)]
struct DecoderPart {
    stats: LatentStats,
    conv2: CausalConv3d,
    decoder: Decoder3d,
    z_dim: usize,
    dtype: DType,
}

/// The Wan2.1 VAE.
#[derive(Clone, Debug)]
pub struct WanVae {
    cfg: WanVaeConfig,
    encoder: Encoder3d,
    /// 1x1x1 conv from the encoder output to (mu, log_var).
    conv1: CausalConv3d,
    dec: DecoderPart,
}

impl WanVae {
    /// Builds the model from `vb` at the checkpoint root (keys `encoder.*`, `conv1.*`,
    /// `conv2.*`, `decoder.*`). Computation runs in `vb.dtype()`.
    pub fn new(cfg: &WanVaeConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let z = cfg.z_dim;
        let dtype = vb.dtype();
        Ok(Self {
            cfg: cfg.clone(),
            encoder: Encoder3d::new(cfg, vb.pp("encoder"))?,
            conv1: CausalConv3d::new(2 * z, 2 * z, (1, 1, 1), 1, 0, vb.pp("conv1"))?,
            dec: DecoderPart {
                stats: LatentStats::new(cfg, dtype, vb.device())?,
                conv2: CausalConv3d::new(z, z, (1, 1, 1), 1, 0, vb.pp("conv2"))?,
                decoder: Decoder3d::new(cfg, vb.pp("decoder"))?,
                z_dim: z,
                dtype,
            },
        })
    }

    /// Loads a checkpoint file (`.pth` like the published `Wan2.1_VAE.pth`, or `.safetensors` with
    /// the same key names); errors name the file and the tensor.
    pub fn load(
        cfg: &WanVaeConfig,
        path: impl AsRef<Path>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        crate::layouts::load_checked(
            path.as_ref(),
            |_| crate::layouts::wan_vae(cfg),
            |ck| Self::new(cfg, ck.var_builder(dtype, device)),
        )
    }

    pub fn config(&self) -> &WanVaeConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dec.dtype
    }

    /// `encode_to_latent`: pixels `[B, 3, F, H, W]` in [-1, 1] with `F = 1 + 4k` ->
    /// normalised latents `[B, 1 + k, z_dim, H/8, W/8]` (the mean of the posterior).
    pub fn encode(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, c, f, h, w) = pixels.dims5().map_err(|_| {
            VaeError::Input(format!(
                "encode expects [B,3,F,H,W], got {:?}",
                pixels.dims()
            ))
        })?;
        let (tf, sf) = (self.cfg.time_factor(), self.cfg.space_factor());
        if c != 3 || f == 0 || (f - 1) % tf != 0 || h % sf != 0 || w % sf != 0 || h == 0 || w == 0 {
            return Err(VaeError::Input(format!(
                "encode expects [B,3,1+{tf}k,H,W] with H, W multiples of {sf}, got {:?}",
                pixels.dims()
            ))
            .into());
        }
        // [B, 3, F, H, W] -> frame-major [B, F, 3, H, W]
        let x = pixels
            .to_dtype(self.dtype())?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()?;
        let mut cache = FeatCache::default();
        let mut chunks = vec![self
            .encoder
            .forward(&x.narrow(1, 0, 1)?, &mut cache.cursor())?];
        for start in (1..f).step_by(tf) {
            chunks.push(
                self.encoder
                    .forward(&x.narrow(1, start, tf)?, &mut cache.cursor())?,
            );
        }
        let out = Tensor::cat(&chunks, 1)?;
        let mu = self
            .conv1
            .forward(&out, None)?
            .narrow(2, 0, self.cfg.z_dim)?;
        self.dec.stats.normalise(&mu)
    }

    /// `decode_to_pixel`: normalised latents `[B, F, z_dim, h, w]` -> video
    /// `[B, 1 + 4(F-1), 3, 8h, 8w]` clamped to [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.stream_decoder().push(latents)
    }

    /// A decoder that takes latent frames as they come and returns their video frames at once
    /// (1 for the first latent frame, 4 for each later one).
    pub fn stream_decoder(&self) -> VaeStreamDecoder {
        VaeStreamDecoder {
            dec: self.dec.clone(),
            cache: FeatCache::default(),
            latents_seen: 0,
            channels_last: None,
        }
    }
}

/// Cached, one-latent-at-a-time decoding; the concatenated output of any sequence of pushes
/// equals [`WanVae::decode`] of the concatenated latents.
#[derive(Clone, Debug)]
pub struct VaeStreamDecoder {
    dec: DecoderPart,
    cache: FeatCache,
    latents_seen: usize,
    /// Frames channels-last between the decoder's layers (`None`: on CUDA in bf16).
    channels_last: Option<bool>,
}

impl VaeStreamDecoder {
    /// Decodes the next latent frames `[B, F, z_dim, h, w]` (usually F = 1) into
    /// `[B, n, 3, 8h, 8w]` frames in [-1, 1], where n = 4F, or 4F - 3 on the first push.
    pub fn push(&mut self, latents: &Tensor) -> Result<Tensor> {
        let z = self.dec.z_dim;
        let f = match latents.dims() {
            [_, f, c, h, w] if *c == z && *f > 0 && *h > 0 && *w > 0 => *f,
            d => {
                return Err(
                    VaeError::Input(format!("decode expects [B,F,{z},h,w], got {d:?}")).into(),
                )
            }
        };
        let z = self
            .dec
            .stats
            .unnormalise(&latents.to_dtype(self.dec.dtype)?)?;
        let x = self.dec.conv2.forward(&z, None)?;
        let mut frames = Vec::with_capacity(f);
        let channels_last = self.channels_last.unwrap_or_else(|| coder::channels_last_decode(&x));
        for i in 0..f {
            let out = self
                .dec
                .decoder
                .forward(&x.narrow(1, i, 1)?, &mut self.cache.cursor(), channels_last)?;
            frames.push(out.clamp(-1f32, 1f32)?);
        }
        self.latents_seen += f;
        Tensor::cat(&frames, 1)
    }

    /// Keeps frames channels-last between the decoder's layers (`true`) or channels-first
    /// (`false`) instead of choosing by device: the same numbers either way, the layout the fast
    /// CUDA kernels read is channels-last.
    pub fn with_channels_last(mut self, on: bool) -> Self {
        self.channels_last = Some(on);
        self
    }

    /// Latent frames decoded so far.
    pub fn latents_seen(&self) -> usize {
        self.latents_seen
    }

    /// Forgets the stream: the next push is a first latent frame again.
    pub fn reset(&mut self) {
        self.cache = FeatCache::default();
        self.latents_seen = 0;
    }
}
