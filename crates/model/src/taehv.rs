//! TAEHV decoder (madebyollin's tiny autoencoder for Hunyuan/Wan video), configured as TAEW2.1:
//! a cheap drop-in for the Wan VAE decoder that maps normalised Wan latents straight to frames.
//!
//! The decoder is a stack of 2-D blocks applied to every time step, plus
//! - MemBlocks, which also see their own input at the previous time step (zeros at t = 0),
//! - TGrow blocks, which turn each time step into `stride` time steps (channel block k of a
//!   1x1 conv becomes step k).
//!
//! Time upscaling is 4 (TGrow strides 1, 2, 2), and the first 3 output frames are startup
//! frames, so T latents decode to 4T - 3 frames, like the Wan VAE. Frames are `[N, T, 3, H, W]`
//! in [0, 1]; latents `[N, T, 16, h, w]`. Weight names are those of `taew2_1` (`decoder.*`).

use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::same_conv::SameConv;

/// Bad TAEHV configuration, weights or input.
#[derive(Debug, thiserror::Error)]
pub enum TaehvError {
    #[error("TAEHV config {path}: {reason}")]
    ConfigFile { path: String, reason: String },
    #[error("TAEHV config field `{field}`: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("TAEHV tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },
    #[error("TAEHV input: {0}")]
    Input(String),
}

impl From<TaehvError> for candle_core::Error {
    fn from(e: TaehvError) -> Self {
        candle_core::Error::wrap(e)
    }
}

fn default_latent_channels() -> usize {
    16
}
fn default_patch_size() -> usize {
    1
}
fn default_time_upscale() -> Vec<bool> {
    vec![false, true, true]
}
fn default_space_upscale() -> Vec<bool> {
    vec![true, true, true]
}
fn default_widths() -> Vec<usize> {
    vec![256, 128, 64, 64]
}

/// Decoder architecture. Every field defaults to TAEW2.1, so `{}` is the published decoder.
/// `t_upscale` / `frames_to_trim` follow from `decoder_time_upscale`; when given they are
/// checked. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaehvConfig {
    #[serde(default = "default_latent_channels")]
    pub latent_channels: usize,
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    /// Per stage: whether its TGrow doubles time (2 entries mean `[false, a, b]`).
    #[serde(default = "default_time_upscale")]
    pub decoder_time_upscale: Vec<bool>,
    /// Per stage: whether it doubles height and width.
    #[serde(default = "default_space_upscale")]
    pub decoder_space_upscale: Vec<bool>,
    /// Channel widths of the three stages and of the output conv.
    #[serde(default = "default_widths")]
    pub decoder_widths: Vec<usize>,
    #[serde(default)]
    pub t_upscale: Option<usize>,
    #[serde(default)]
    pub frames_to_trim: Option<usize>,
}

impl Default for TaehvConfig {
    fn default() -> Self {
        Self::taew2_1()
    }
}

impl TaehvConfig {
    /// The published TAEW2.1 decoder.
    pub fn taew2_1() -> Self {
        Self {
            latent_channels: default_latent_channels(),
            patch_size: default_patch_size(),
            decoder_time_upscale: default_time_upscale(),
            decoder_space_upscale: default_space_upscale(),
            decoder_widths: default_widths(),
            t_upscale: None,
            frames_to_trim: None,
        }
    }

    /// Reads and validates a JSON config (e.g. `fixtures/taehv.config.json`).
    pub fn from_file(path: impl AsRef<Path>) -> std::result::Result<Self, TaehvError> {
        let path = path.as_ref();
        let err = |reason: String| TaehvError::ConfigFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The three per-stage time flags (a 2-entry list gets the reference's leading `false`).
    fn time_upscale(&self) -> Vec<bool> {
        match self.decoder_time_upscale.len() {
            2 => std::iter::once(false)
                .chain(self.decoder_time_upscale.iter().copied())
                .collect(),
            _ => self.decoder_time_upscale.clone(),
        }
    }

    /// Frames per latent.
    pub fn time_factor(&self) -> usize {
        1 << self.time_upscale().iter().filter(|t| **t).count()
    }

    /// Startup frames dropped at the start of a stream.
    pub fn startup_frames(&self) -> usize {
        self.time_factor() - 1
    }

    /// Pixels per latent pixel along each spatial axis.
    pub fn space_factor(&self) -> usize {
        self.patch_size << self.decoder_space_upscale.iter().filter(|s| **s).count()
    }

    /// Checks that the fields describe a buildable decoder.
    pub fn validate(&self) -> std::result::Result<(), TaehvError> {
        let bad = |field, reason: String| Err(TaehvError::InvalidConfig { field, reason });
        if self.latent_channels == 0 {
            return bad("latent_channels", "must be > 0".into());
        }
        if self.patch_size == 0 {
            return bad("patch_size", "must be > 0".into());
        }
        if self.decoder_widths.len() != 4 || self.decoder_widths.contains(&0) {
            return bad(
                "decoder_widths",
                format!("needs 4 non-zero widths, got {:?}", self.decoder_widths),
            );
        }
        if self.time_upscale().len() != 3 {
            return bad(
                "decoder_time_upscale",
                format!("needs 2 or 3 flags, got {:?}", self.decoder_time_upscale),
            );
        }
        if self.decoder_space_upscale.len() != 3 {
            return bad(
                "decoder_space_upscale",
                format!("needs 3 flags, got {:?}", self.decoder_space_upscale),
            );
        }
        if let Some(t) = self.t_upscale.filter(|t| *t != self.time_factor()) {
            return bad(
                "t_upscale",
                format!(
                    "{t} disagrees with decoder_time_upscale ({})",
                    self.time_factor()
                ),
            );
        }
        if let Some(t) = self.frames_to_trim.filter(|t| *t != self.startup_frames()) {
            return bad(
                "frames_to_trim",
                format!(
                    "{t} disagrees with t_upscale - 1 ({})",
                    self.startup_frames()
                ),
            );
        }
        Ok(())
    }
}

/// 3x3 convolution with padding 1 (keys `weight`, optional `bias`) on channels-last frames
/// ([`SameConv`]: cuDNN with a fused epilogue on CUDA, one matrix product elsewhere).
#[derive(Clone, Debug)]
struct Conv3x3 {
    conv: SameConv,
    /// `[O]`.
    bias: Option<Tensor>,
}

impl Conv3x3 {
    /// `relu?(conv(x) + bias + residual?)` for `x: [N, H, W, C]`.
    fn forward(&self, x: &Tensor, residual: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        self.conv.forward_nhwc(x, self.bias.as_ref(), residual, relu)
    }
}

fn conv3x3(c_in: usize, c_out: usize, bias: bool, vb: VarBuilder) -> Result<Conv3x3> {
    let weight = vb.get((c_out, c_in, 3, 3), "weight")?;
    let bias = match bias {
        true => Some(vb.get(c_out, "bias")?),
        false => None,
    };
    Ok(Conv3x3 {
        conv: SameConv::new(&weight)?,
        bias,
    })
}

/// `relu(conv(relu(conv(relu(conv([x, past]))))) + x)` (keys `conv.{0,2,4}`).
#[derive(Clone, Debug)]
struct MemBlock {
    convs: [Conv3x3; 3],
}

impl MemBlock {
    fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("conv");
        Ok(Self {
            convs: [
                conv3x3(2 * c, c, true, vb.pp(0))?,
                conv3x3(c, c, true, vb.pp(2))?,
                conv3x3(c, c, true, vb.pp(4))?,
            ],
        })
    }

    /// `x`, `past`: `[N*T, H, W, C]`.
    fn forward(&self, x: &Tensor, past: &Tensor) -> Result<Tensor> {
        let h = self.convs[0].forward(&Tensor::cat(&[x, past], 3)?, None, true)?;
        let h = self.convs[1].forward(&h, None, true)?;
        self.convs[2].forward(&h, Some(x), true)
    }
}

/// 1x1 conv `C -> C*stride`; output channel block k becomes time step k.
#[derive(Clone, Debug)]
struct TGrow {
    /// `[C, C*stride]`: channels-last pixels times this matrix.
    matrix: Tensor,
    stride: usize,
}

impl TGrow {
    /// Real checkpoints may hold more output rows than `C*stride` (a TGrow trained with a larger
    /// stride); as in the reference loader, the LAST `C*stride` rows are the ones used.
    fn new(c: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let name = "conv.weight";
        let full = vb.get_unchecked(name)?.to_dtype(vb.dtype())?;
        let rows = c * stride;
        let weight = match full.dims() {
            [r, ci, 1, 1] if *ci == c && *r >= rows => full.narrow(0, r - rows, rows)?,
            d => {
                return Err(TaehvError::Tensor {
                    name: format!("{}.{name}", vb.prefix()),
                    reason: format!("expected [>= {rows}, {c}, 1, 1], got {d:?}"),
                }
                .into())
            }
        };
        Ok(Self {
            matrix: weight.reshape((rows, c))?.t()?.contiguous()?,
            stride,
        })
    }
}

/// One entry of the `decoder` sequence (the key index is its position).
#[derive(Clone, Debug)]
enum Block {
    /// `tanh(x / 3) * 3`: soft clamp of the latents.
    SoftClamp,
    Conv(Conv3x3),
    Relu,
    Mem(MemBlock),
    /// Nearest-neighbour x2 (or x1 when the stage does not upscale space).
    Upsample(usize),
    TGrow(TGrow),
}

/// Per-MemBlock input of the previous time step: the decoder's whole streaming state.
#[derive(Clone, Debug, Default)]
struct Memory {
    past: Vec<Option<Tensor>>,
}

/// The TAEHV decoder.
#[derive(Clone, Debug)]
pub struct TaehvDecoder {
    cfg: TaehvConfig,
    blocks: Vec<Block>,
    dtype: DType,
}

impl TaehvDecoder {
    /// Builds the decoder from `vb` at the checkpoint root (keys `decoder.*`; `encoder.*` is
    /// ignored). Computation runs in `vb.dtype()`.
    pub fn new(cfg: &TaehvConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let vb = vb.pp("decoder");
        let w = &cfg.decoder_widths;
        let time = cfg.time_upscale();
        let mut blocks = vec![
            Block::SoftClamp,
            Block::Conv(conv3x3(cfg.latent_channels, w[0], true, vb.pp(1))?),
            Block::Relu,
        ];
        for stage in 0..3 {
            let c = w[stage];
            for _ in 0..3 {
                blocks.push(Block::Mem(MemBlock::new(c, vb.pp(blocks.len()))?));
            }
            blocks.push(Block::Upsample(if cfg.decoder_space_upscale[stage] {
                2
            } else {
                1
            }));
            let stride = if time[stage] { 2 } else { 1 };
            blocks.push(Block::TGrow(TGrow::new(c, stride, vb.pp(blocks.len()))?));
            blocks.push(Block::Conv(conv3x3(
                c,
                w[stage + 1],
                false,
                vb.pp(blocks.len()),
            )?));
        }
        blocks.push(Block::Relu);
        let c_out = 3 * cfg.patch_size * cfg.patch_size;
        blocks.push(Block::Conv(conv3x3(
            w[3],
            c_out,
            true,
            vb.pp(blocks.len()),
        )?));
        Ok(Self {
            cfg: cfg.clone(),
            blocks,
            dtype: vb.dtype(),
        })
    }

    /// Loads a checkpoint file (`.pth` like the published `taew2_1.pth`, or `.safetensors` with
    /// the same key names); errors name the file and the tensor.
    pub fn load(
        cfg: &TaehvConfig,
        path: impl AsRef<Path>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        crate::layouts::load_checked(
            path.as_ref(),
            |ck| crate::layouts::taehv(cfg, ck),
            |ck| Self::new(cfg, ck.var_builder(dtype, device)),
        )
    }

    pub fn config(&self) -> &TaehvConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `decode_video(parallel=True)`: latents `[N, T, C, h, w]` -> frames
    /// `[N, 4T - 3, 3, 8h, 8w]` in [0, 1], all time steps of each block at once.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.check_latents(latents)?;
        let raw = self.run(latents, &mut Memory::default())?;
        let trim = self.cfg.startup_frames();
        let t = raw.dim(1)?;
        raw.narrow(1, trim, t - trim)?.clamp(0f32, 1f32)
    }

    /// `decode_video(parallel=False)`: the streaming decoder fed one latent at a time.
    pub fn decode_sequential(&self, latents: &Tensor) -> Result<Tensor> {
        self.check_latents(latents)?;
        let mut stream = self.stream_decoder();
        let frames = (0..latents.dim(1)?)
            .map(|i| stream.push(&latents.narrow(1, i, 1)?))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&frames, 1)
    }

    /// A decoder that takes latents as they come (see [`TaehvStreamDecoder`]).
    pub fn stream_decoder(&self) -> TaehvStreamDecoder {
        TaehvStreamDecoder {
            model: self.clone(),
            memory: Memory::default(),
            frames_out: 0,
        }
    }

    fn check_latents(&self, latents: &Tensor) -> Result<()> {
        let c = self.cfg.latent_channels;
        match latents.dims() {
            [n, t, ch, h, w] if *ch == c && *n > 0 && *t > 0 && *h > 0 && *w > 0 => Ok(()),
            d => {
                Err(TaehvError::Input(format!("expected latents [N,T,{c},h,w], got {d:?}")).into())
            }
        }
    }

    /// Runs all blocks on `x: [N, T, C, h, w]`, continuing from `memory` (the previous time
    /// step of each MemBlock, zeros when absent); returns the raw, untrimmed, unclamped frames
    /// `[N, T*t_upscale, 3, H, W]`. Inside, frames are channels-last `[N*T, H, W, C]`: what
    /// cuDNN's fast convolutions want, and TGrow becomes a plain matrix product.
    fn run(&self, x: &Tensor, memory: &mut Memory) -> Result<Tensor> {
        let (n, mut t, c, h, w) = x.dims5()?;
        memory.past.resize(self.blocks.len(), None);
        let mut x = x
            .to_dtype(self.dtype)?
            .reshape((n * t, c, h, w))?
            .permute((0, 2, 3, 1))?
            .contiguous()?;
        let mut blocks = self.blocks.iter().zip(memory.past.iter_mut()).peekable();
        while let Some((block, past)) = blocks.next() {
            x = match block {
                Block::SoftClamp => ((x / 3.0)?.tanh()? * 3.0)?,
                Block::Conv(conv) => {
                    // A ReLU right after the convolution runs in its epilogue.
                    let relu = matches!(blocks.peek(), Some((Block::Relu, _)));
                    if relu {
                        blocks.next();
                    }
                    conv.forward(&x, None, relu)?
                }
                Block::Relu => x.relu()?,
                Block::Upsample(1) => x,
                Block::Upsample(f) => crate::same_conv::upsample_nearest_nhwc(&x, *f)?,
                Block::Mem(mem) => {
                    let (_, h, w, c) = x.dims4()?;
                    let steps = x.reshape((n, t, h, w, c))?;
                    let before = match past.take() {
                        Some(p) => p,
                        None => Tensor::zeros((n, 1, h, w, c), x.dtype(), x.device())?,
                    };
                    // The input one time step back: [before, x_0, ..., x_{T-2}].
                    let shifted = match t {
                        1 => before,
                        _ => Tensor::cat(&[&before, &steps.narrow(1, 0, t - 1)?], 1)?,
                    };
                    *past = Some(steps.narrow(1, t - 1, 1)?);
                    mem.forward(&x, &shifted.reshape((n * t, h, w, c))?)?
                }
                Block::TGrow(g) => {
                    let (nt, h, w, c) = x.dims4()?;
                    let y = x.reshape((nt * h * w, c))?.matmul(&g.matrix)?;
                    t *= g.stride;
                    y.reshape((nt, h, w, g.stride, c))?
                        .permute((0, 3, 1, 2, 4))?
                        .reshape((n * t, h, w, c))?
                }
            };
        }
        let x = x.permute((0, 3, 1, 2))?;
        let (_, c, h, w) = x.dims4()?;
        pixel_shuffle(&x, self.cfg.patch_size)?.reshape((
            n,
            t,
            c / self.cfg.patch_size.pow(2),
            h * self.cfg.patch_size,
            w * self.cfg.patch_size,
        ))
    }
}

/// `[B, C*p*p, H, W] -> [B, C, H*p, W*p]` (identity for p = 1).
fn pixel_shuffle(x: &Tensor, p: usize) -> Result<Tensor> {
    if p == 1 {
        return Ok(x.clone());
    }
    let (b, cpp, h, w) = x.dims4()?;
    let c = cpp / (p * p);
    x.reshape((b, c, p, p, h, w))?
        .permute((0, 1, 4, 2, 5, 3))?
        .reshape((b, c, h * p, w * p))
}

/// Latent-by-latent decoding (`StreamingTAEHV.decode`): each push returns the frames its
/// latents complete, 1 for the very first latent (the startup frames are dropped) and 4 for
/// each later one, in [0, 1].
#[derive(Clone, Debug)]
pub struct TaehvStreamDecoder {
    model: TaehvDecoder,
    memory: Memory,
    /// Raw decoder frames produced so far, startup frames included.
    frames_out: usize,
}

impl TaehvStreamDecoder {
    /// Decodes the next latents `[N, T, C, h, w]` (usually T = 1) into `[N, k, 3, H, W]`.
    pub fn push(&mut self, latents: &Tensor) -> Result<Tensor> {
        self.model.check_latents(latents)?;
        let raw = self.model.run(latents, &mut self.memory)?;
        let t = raw.dim(1)?;
        let skip = self
            .model
            .cfg
            .startup_frames()
            .saturating_sub(self.frames_out)
            .min(t);
        self.frames_out += t;
        raw.narrow(1, skip, t - skip)?.clamp(0f32, 1f32)
    }

    /// Forgets the stream: the next push starts a new video.
    pub fn reset(&mut self) {
        self.memory = Memory::default();
        self.frames_out = 0;
    }
}
