//! Per-block decoding of clean latents into RGB frames as soon as a block is generated:
//! TAEHV's streaming decoder (the default: tiny, with a memory of one step per block) or the Wan
//! VAE's cached causal decoder (exact, heavier). Both give 1 frame for the stream's first latent
//! frame and 4 for every later one, so block 0 yields 9 frames and every later block 12.

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};
use livetalk_model::taehv::{TaehvDecoder, TaehvStreamDecoder};
use livetalk_model::wan_vae::{VaeStreamDecoder, WanVae};

/// Which decoder turns latents into pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecoderKind {
    /// TAEHV (taew2_1): fast, approximate.
    #[default]
    Taehv,
    /// The Wan2.1 VAE decoder with its feature cache: what the reference decodes with.
    WanVae,
}

impl std::str::FromStr for DecoderKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "taehv" | "taew2_1" => Ok(DecoderKind::Taehv),
            "vae" | "wan-vae" => Ok(DecoderKind::WanVae),
            other => Err(format!("unknown decoder `{other}` (taehv or vae)")),
        }
    }
}

impl std::fmt::Display for DecoderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecoderKind::Taehv => "TAEHV",
            DecoderKind::WanVae => "Wan VAE",
        })
    }
}

/// RGB frames of one block: `frames` images of `height x width x 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbFrames {
    pub width: usize,
    pub height: usize,
    pub frames: Vec<Vec<u8>>,
}

enum Inner {
    Taehv(Box<TaehvStreamDecoder>),
    Vae(Box<VaeStreamDecoder>),
}

/// A streaming decoder for one stream (reset it for a new stream).
pub struct BlockDecoder {
    inner: Inner,
}

impl BlockDecoder {
    pub fn taehv(model: &Arc<TaehvDecoder>) -> Self {
        BlockDecoder { inner: Inner::Taehv(Box::new(model.stream_decoder())) }
    }

    pub fn wan_vae(model: &Arc<WanVae>) -> Self {
        BlockDecoder { inner: Inner::Vae(Box::new(model.stream_decoder())) }
    }

    pub fn kind(&self) -> DecoderKind {
        match self.inner {
            Inner::Taehv(_) => DecoderKind::Taehv,
            Inner::Vae(_) => DecoderKind::WanVae,
        }
    }

    pub fn reset(&mut self) {
        match &mut self.inner {
            Inner::Taehv(d) => d.reset(),
            Inner::Vae(d) => d.reset(),
        }
    }

    /// Decodes the next block's latents `[1, F, C, h, w]` into its frames (`[0, 1]` pixels
    /// as bytes, `(v*255)` truncated like the reference's writer).
    pub fn decode(&mut self, latents: &Tensor) -> Result<RgbFrames> {
        to_rgb(&self.decode_video(latents)?)
    }

    /// Decodes the next latents `[1, F, C, h, w]` into video `[1, T, 3, H, W]` in [0, 1], left
    /// on the device (no sync: the benchmark times decoding without the host copy).
    pub fn decode_video(&mut self, latents: &Tensor) -> Result<Tensor> {
        match &mut self.inner {
            Inner::Taehv(d) => d.push(latents),
            Inner::Vae(d) => d.push(latents)?.affine(0.5, 0.5)?.clamp(0f32, 1f32),
        }
    }
}

/// `[1, T, 3, H, W]` in [0, 1] -> T packed RGB images (the pipeline's uint8 conversion);
/// non-finite values are an error.
pub fn to_rgb(video: &Tensor) -> Result<RgbFrames> {
    let sum = video.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    if !sum.is_finite() {
        candle_core::bail!("decoder: non-finite pixel values");
    }
    let bytes = crate::pipeline::frames_to_uint8(video)?; // [T, H, W, 3]
    let (_, h, w, _) = bytes.dims4()?;
    let frames = bytes.flatten_all()?.to_vec1::<u8>()?.chunks_exact(h * w * 3).map(<[u8]>::to_vec).collect();
    Ok(RgbFrames { width: w, height: h, frames })
}
