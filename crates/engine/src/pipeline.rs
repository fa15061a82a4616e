//! The offline LiveTalk pipeline (`CausalInferencePipeline.forward` with `return_latents`): a
//! reference picture, a voice and text embeddings in, a whole video out.
//!
//! ```text
//! image uint8 [H, W, 3] -> match_size / resize_pad / x*2-1        ref_image [1, 3, 1, th, tw]
//!   -> VAE encode                                                  ref_latent [1, 1, 16, h, w]
//!   -> conditioning y (latent repeated + mask 0 at frame 0)        img_lat [1, 17, F, h, w]
//! waveform 16 kHz -> wav2vec2 + AudioPack + audio_cond_projs       audio_emb [n, F, 1, 1, dim]
//! noise -> StreamGenerator, F / num_frame_per_block blocks          latents [1, F, 16, h, w]
//!   -> whole-sequence VAE decode -> (v*0.5+0.5).clamp(0, 1)        video [1, 4F-3, 3, th, tw]
//!   -> (v*255) truncated to uint8                                  frames [4F-3, th, tw, 3]
//! ```
//!
//! Every stage is the library's own module (image_preprocess, wan_vae, audio_features,
//! generator); this file only wires them in the reference's order.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor};
use livetalk_model::audio_features::AudioConditioner;
use livetalk_model::dit::{CausalWanModel, DitConfig};
use livetalk_model::image_preprocess::{match_size, reference_image_tensor};
use livetalk_model::wan_vae::{WanVae, WanVaeConfig};

use crate::generator::{GeneratorConfig, NoiseSource, StreamGenerator};

/// Where the pipeline's models live: configs and weights of the DiT, the Wan VAE and wav2vec2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineFiles {
    pub dit_config: PathBuf,
    pub dit_weights: PathBuf,
    pub vae_config: PathBuf,
    pub vae_weights: PathBuf,
    pub wav2vec2_config: PathBuf,
    pub wav2vec2_weights: PathBuf,
}

impl PipelineFiles {
    /// The file names of a fixture directory (`dit.config.json`, `dit.weights.safetensors`, ...).
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self {
            dit_config: dir.join("dit.config.json"),
            dit_weights: dir.join("dit.weights.safetensors"),
            vae_config: dir.join("vae.config.json"),
            vae_weights: dir.join("vae.weights.safetensors"),
            wav2vec2_config: dir.join("wav2vec2.config.json"),
            wav2vec2_weights: dir.join("wav2vec2.weights.safetensors"),
        }
    }
}

/// What one offline run needs besides the models.
#[derive(Debug, Clone)]
pub struct PipelineRequest<'a> {
    /// Reference picture, row-major RGB, `height * width * 3` bytes.
    pub image_rgb: &'a [u8],
    /// `[height, width]` of the picture.
    pub image_hw: [usize; 2],
    /// Candidate output sizes `[h, w]`; the one closest in aspect ratio is used (`match_size`).
    pub image_sizes: Vec<[usize; 2]>,
    /// 16 kHz mono samples (cut to the video's duration inside, as in the reference).
    pub waveform: &'a [f32],
    /// Text embeddings `[1, L, text_dim]`.
    pub prompt_embeds: Tensor,
    /// Latent frames to generate: a multiple of `generator.num_frame_per_block`, at least 2.
    pub num_latent_frames: usize,
    pub generator: GeneratorConfig,
}

/// Everything the reference pipeline computes on the way, in its layouts (CPU or the model's
/// device; `frames_uint8` is always on the CPU).
#[derive(Debug, Clone)]
pub struct PipelineOutput {
    /// `[1, 3, 1, th, tw]` in [-1, 1].
    pub ref_image: Tensor,
    /// `[1, 1, 16, h, w]`, normalised.
    pub ref_latent: Tensor,
    /// Conditioning `y` for all frames `[1, 17, F, h, w]`.
    pub img_lat: Tensor,
    /// `[n_audio_layers, F, 1, 1, dim]`.
    pub audio_emb: Tensor,
    /// Generated latents `[1, F, 16, h, w]` (float32).
    pub latents: Tensor,
    /// Decoded video `[1, 4F-3, 3, th, tw]` in [0, 1] (float32).
    pub video: Tensor,
    /// `[4F-3, th, tw, 3]` uint8: `(v*255)` truncated, as the reference writes the mp4.
    pub frames_uint8: Tensor,
}

/// The models of the offline pipeline.
pub struct OfflinePipeline {
    dit: Arc<CausalWanModel>,
    vae: WanVae,
    audio: AudioConditioner,
}

impl OfflinePipeline {
    pub fn new(dit: Arc<CausalWanModel>, vae: WanVae, audio: AudioConditioner) -> Self {
        Self { dit, vae, audio }
    }

    /// Loads the three models (each through its own loader, which names the failing file and
    /// tensor) in `dtype` on `device`.
    pub fn load(files: &PipelineFiles, dtype: DType, device: &Device) -> Result<Self> {
        let dit_cfg = DitConfig::from_json_file(&files.dit_config)?;
        let dit = CausalWanModel::load(&dit_cfg, &[&files.dit_weights], dtype, device)?;
        let vae_cfg = WanVaeConfig::from_file(&files.vae_config)?;
        let vae = WanVae::load(&vae_cfg, &files.vae_weights, dtype, device)?;
        let audio = AudioConditioner::load(
            &files.wav2vec2_config,
            &files.wav2vec2_weights,
            &files.dit_config,
            &files.dit_weights,
            dtype,
            device,
        )?;
        Ok(Self::new(Arc::new(dit), vae, audio))
    }

    pub fn dit(&self) -> &Arc<CausalWanModel> {
        &self.dit
    }

    pub fn vae(&self) -> &WanVae {
        &self.vae
    }

    pub fn audio(&self) -> &AudioConditioner {
        &self.audio
    }

    /// Runs the whole pipeline; `noise` supplies the initial and re-noising noise in call order.
    pub fn run(&self, req: &PipelineRequest, noise: Box<dyn NoiseSource>) -> Result<PipelineOutput> {
        let device = self.dit.device().clone();
        let nfpb = req.generator.num_frame_per_block;
        let frames = req.num_latent_frames;
        if nfpb == 0 || frames < 2 || !frames.is_multiple_of(nfpb) {
            candle_core::bail!(
                "pipeline: num_latent_frames {frames} must be at least 2 and a multiple of num_frame_per_block {nfpb}"
            );
        }

        // 1. reference picture -> [1, 3, 1, th, tw] in [-1, 1]
        let [h, w] = req.image_hw;
        let target = match_size(&req.image_sizes, h, w)
            .ok_or_else(|| candle_core::Error::Msg("pipeline: no candidate image size".into()))?;
        let ref_image = reference_image_tensor(req.image_rgb, h, w, target, &device)?;

        // 2. VAE encode -> normalised latent [1, 1, 16, h/8, w/8]
        let ref_latent = self.vae.encode(&ref_image)?.to_dtype(DType::F32)?;

        // 3. audio -> per-layer conditioning for every latent frame
        let audio_emb = self.audio.forward(req.waveform, frames)?;

        // 4. block-streaming generation
        let mut gen = StreamGenerator::new(
            self.dit.clone(),
            req.generator.clone(),
            &ref_latent,
            &req.prompt_embeds.to_device(&device)?,
            noise,
        )?;
        let img_lat = gen.conditioning(0, frames)?;
        let mut blocks = Vec::with_capacity(frames / nfpb);
        for b in 0..frames / nfpb {
            let a = audio_emb.narrow(1, b * nfpb, nfpb)?;
            blocks.push(gen.generate_block(Some(&a))?);
        }
        let latents = Tensor::cat(&blocks, 1)?;

        // 5. whole-sequence decode, [-1, 1] -> [0, 1]
        let decoded = self.vae.decode(&latents)?.to_dtype(DType::F32)?;
        let video = decoded.affine(0.5, 0.5)?.clamp(0f32, 1f32)?;
        let frames_uint8 = frames_to_uint8(&video)?;
        Ok(PipelineOutput { ref_image, ref_latent, img_lat, audio_emb, latents, video, frames_uint8 })
    }
}

/// `[1, T, 3, H, W]` float in [0, 1] -> `[T, H, W, 3]` uint8 on the CPU, `(v*255)` truncated
/// toward zero in float32 like numpy's `astype(uint8)` (values outside [0, 255] saturate).
pub fn frames_to_uint8(video: &Tensor) -> Result<Tensor> {
    let (b, t, c, h, w) = video.dims5()?;
    if b != 1 || c != 3 {
        candle_core::bail!("frames_to_uint8: expected [1, T, 3, H, W], got {:?}", video.dims());
    }
    let hwc = video
        .squeeze(0)?
        .permute([0, 2, 3, 1])?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let bytes: Vec<u8> = hwc.iter().map(|&v| (v * 255.0) as u8).collect();
    Tensor::from_vec(bytes, (t, h, w, 3), &Device::Cpu)
}
