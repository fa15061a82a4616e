//! LiveTalk's audio conditioning: 16 kHz waveform -> one audio embedding per latent frame and
//! per audio-injection layer of the DiT.
//!
//! ```text
//! waveform ─trim─> normalise ─> wav2vec2 CNN (50 Hz) ─linear interp─> 4F-3 video frames
//!   ─> feature projection + transformer ─> cat[last, h_0..h_L] per video frame
//!   ─> first frame x3 in front (4F frames) ─> AudioPack (4 frames -> 1 token, Linear + LN)
//!   ─> audio_cond_projs[j] (one Linear per injection layer) ─> [n_proj, F, 1, 1, dim]
//! ```
//!
//! Every step is a public function or method so that a streaming engine can run the same
//! pipeline per block over a sliding window: [`AudioConditioner::frame_features`] turns any
//! span of normalised samples into per-video-frame features, and
//! [`AudioConditioner::embed_frame_features`] turns 4k consecutive frame features into k latent
//! frames' embeddings. [`AudioConditioner::forward`] is the whole-clip path of the reference.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use crate::wav2vec2::{
    read_json_config, AudioModelError, Wav2Vec2Config, Wav2Vec2Model, Wav2Vec2Output,
};

/// Sample rate wav2vec2 expects.
pub const SAMPLE_RATE: usize = 16_000;
/// Video frame rate of the generated avatar.
pub const VIDEO_FPS: usize = 16;

fn invalid_input(reason: String) -> candle_core::Error {
    AudioModelError::InvalidInput {
        model: "audio conditioning",
        reason,
    }
    .into()
}

/// Video frames produced by `num_latent_frames` latent frames (the first latent frame gives one
/// video frame, every later one four): 4F-3.
pub fn video_frames(num_latent_frames: usize) -> usize {
    (4 * num_latent_frames).saturating_sub(3)
}

/// Samples the reference keeps for `num_latent_frames`: int(video_duration * 16000) with
/// video_duration = (4F-4)/16 s.
pub fn trimmed_num_samples(num_latent_frames: usize) -> usize {
    let video_duration = (4 * num_latent_frames).saturating_sub(4) as f64 / VIDEO_FPS as f64;
    (video_duration * SAMPLE_RATE as f64) as usize
}

/// The per-utterance normalisation of transformers' `Wav2Vec2FeatureExtractor`
/// (`do_normalize`): (x - mean) / sqrt(var + 1e-7) in float32 (statistics accumulated in f64).
pub fn normalize_waveform(samples: &[f32]) -> Vec<f32> {
    if samples.is_empty() {
        return Vec::new();
    }
    let n = samples.len() as f64;
    let mean = (samples.iter().map(|&x| x as f64).sum::<f64>() / n) as f32;
    let var = (samples
        .iter()
        .map(|&x| ((x - mean) as f64).powi(2))
        .sum::<f64>()
        / n) as f32;
    let std = (var + 1e-7f32).sqrt();
    samples.iter().map(|&x| (x - mean) / std).collect()
}

/// Source indices and weights of `F.interpolate(mode="linear", align_corners=True)` from `n_in`
/// to `n_out` frames: output i = x[i0]*(1-lambda) + x[i1]*lambda. Positions are computed in
/// float32 exactly like PyTorch's CPU kernel (scale = f32(n_in-1)/f32(n_out-1), pos = scale*i);
/// float64 positions would move results by up to ~4e-5.
pub fn linear_interpolation_taps(n_in: usize, n_out: usize) -> Vec<(u32, u32, f32)> {
    let scale = if n_out > 1 {
        (n_in.saturating_sub(1)) as f32 / (n_out - 1) as f32
    } else {
        0.0
    };
    (0..n_out)
        .map(|i| {
            let pos = scale * i as f32;
            let i0 = (pos.floor() as usize).min(n_in.saturating_sub(1));
            let lambda = (pos - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 + 1 < n_in { i0 + 1 } else { i0 };
            (i0 as u32, i1 as u32, lambda)
        })
        .collect()
}

/// Linear interpolation (align_corners=True) of `x` along `dim` to `n_out` entries, computed in
/// float32 and returned in `x`'s dtype.
pub fn interpolate_linear(x: &Tensor, dim: usize, n_out: usize) -> Result<Tensor> {
    let n_in = x.dim(dim)?;
    if n_in == 0 || n_out == 0 {
        return Err(invalid_input(format!(
            "cannot interpolate {n_in} frames to {n_out}"
        )));
    }
    let taps = linear_interpolation_taps(n_in, n_out);
    let dev = x.device();
    let i0 = Tensor::from_iter(taps.iter().map(|t| t.0), dev)?;
    let i1 = Tensor::from_iter(taps.iter().map(|t| t.1), dev)?;
    let mut wshape = vec![1; x.rank()];
    wshape[dim] = n_out;
    let w1 = Tensor::from_iter(taps.iter().map(|t| t.2), dev)?.reshape(wshape.as_slice())?;
    let w0 = Tensor::from_iter(taps.iter().map(|t| 1.0 - t.2), dev)?.reshape(wshape)?;
    let xf = x.to_dtype(DType::F32)?;
    let y = (xf.index_select(&i0, dim)?.broadcast_mul(&w0)?
        + xf.index_select(&i1, dim)?.broadcast_mul(&w1)?)?;
    y.to_dtype(x.dtype())
}

/// LiveTalk's per-frame audio feature: cat[last_hidden_state, hidden_states[0], ..., hidden_states[L]]
/// on the channel axis -> [B, T, (L+2)*hidden] (the last state appears twice, as in the reference).
pub fn concat_hidden_states(out: &Wav2Vec2Output) -> Result<Tensor> {
    let mut parts = Vec::with_capacity(out.hidden_states.len() + 1);
    parts.push(out.last_hidden_state());
    parts.extend(out.hidden_states.iter());
    Tensor::cat(&parts, 2)
}

/// Puts `n` copies of the first frame of `x` [B, T, C] in front -> [B, T+n, C] (so that 4F-3
/// video frames fill F groups of 4).
pub fn prepend_first_frame(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 0 {
        return Ok(x.clone());
    }
    let (b, _, c) = x.dims3()?;
    let first = x.narrow(1, 0, 1)?.broadcast_as((b, n, c))?;
    Tensor::cat(&[&first, x], 1)
}

fn default_patch() -> [usize; 3] {
    [4, 1, 1]
}
fn default_pack_eps() -> f64 {
    1e-5
}

/// The audio part of the DiT configuration (read from the same JSON as the DiT; other fields
/// are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AudioProjConfig {
    /// DiT width: the output size of every `audio_cond_projs[j]`.
    pub dim: usize,
    /// DiT depth; without `num_audio_cond_projs` there are `num_layers/2 - 1` projections.
    pub num_layers: usize,
    /// AudioPack output size.
    pub audio_hidden_size: usize,
    /// Per-frame feature size (L+2)*hidden; checked against wav2vec2 when present.
    #[serde(default)]
    pub audio_input_dim: Option<usize>,
    #[serde(default = "default_patch")]
    pub audio_pack_patch: [usize; 3],
    #[serde(default = "default_pack_eps")]
    pub audio_pack_layernorm_eps: f64,
    #[serde(default)]
    pub num_audio_cond_projs: Option<usize>,
}

impl AudioProjConfig {
    /// Reads the audio fields of a DiT config JSON (`dit.config.json`).
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        read_json_config(path.as_ref(), Self::validate)
    }

    /// Number of `audio_cond_projs` (one per DiT block that receives audio).
    pub fn num_cond_projs(&self) -> usize {
        self.num_audio_cond_projs
            .unwrap_or((self.num_layers / 2).saturating_sub(1))
    }

    /// Video frames grouped into one latent-frame token (4).
    pub fn frames_per_token(&self) -> usize {
        self.audio_pack_patch[0]
    }

    pub fn validate(&self) -> std::result::Result<(), AudioModelError> {
        let bad = |field, reason: String| {
            Err(AudioModelError::InvalidConfig {
                model: "DiT audio",
                field,
                reason,
            })
        };
        if self.dim == 0 || self.audio_hidden_size == 0 {
            return bad(
                "audio_hidden_size",
                "dim and audio_hidden_size must be > 0".into(),
            );
        }
        let [t, h, w] = self.audio_pack_patch;
        if t == 0 || h != 1 || w != 1 {
            return bad(
                "audio_pack_patch",
                format!("{:?}: expected [t>0, 1, 1]", self.audio_pack_patch),
            );
        }
        if self.num_cond_projs() == 0 {
            return bad(
                "num_audio_cond_projs",
                format!("no audio projections for num_layers {}", self.num_layers),
            );
        }
        Ok(())
    }
}

/// AudioPack with patch (t, 1, 1): t consecutive frame features, concatenated frame-major, ->
/// Linear -> LayerNorm: one token per latent frame.
#[derive(Debug, Clone)]
pub struct AudioPack {
    proj: Linear,
    norm_out: LayerNorm,
    frames_per_token: usize,
}

impl AudioPack {
    /// `vb` points at `audio_proj` in the DiT checkpoint.
    pub fn new(in_channels: usize, cfg: &AudioProjConfig, vb: VarBuilder) -> Result<Self> {
        let t = cfg.frames_per_token();
        Ok(Self {
            proj: candle_nn::linear(in_channels * t, cfg.audio_hidden_size, vb.pp("proj"))?,
            norm_out: candle_nn::layer_norm(
                cfg.audio_hidden_size,
                cfg.audio_pack_layernorm_eps,
                vb.pp("norm_out"),
            )?,
            frames_per_token: t,
        })
    }
}

impl Module for AudioPack {
    /// [B, t*k, C] frame features -> [B, k, audio_hidden_size]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let t = self.frames_per_token;
        if !n.is_multiple_of(t) {
            return Err(invalid_input(format!(
                "AudioPack needs a multiple of {t} frames, got {n}"
            )));
        }
        // Row-major [B, k, t, C] -> [B, k, t*C] is exactly the (t h w c) order of the reference.
        let packed = x.contiguous()?.reshape((b, n / t, t * c))?;
        self.norm_out.forward(&self.proj.forward(&packed)?)
    }
}

/// Every intermediate of the whole-clip pipeline (the fixture's checkpoints).
#[derive(Debug, Clone)]
pub struct AudioTrace {
    /// Normalised trimmed waveform [1, samples].
    pub input_values: Tensor,
    /// CNN output [1, conv_dim, T50].
    pub conv_features: Tensor,
    /// Interpolated to video frames [1, 4F-3, conv_dim].
    pub conv_features_interp: Tensor,
    /// wav2vec2 encoder output at video rate (feature projection + all hidden states).
    pub encoder: Wav2Vec2Output,
    /// AudioPack input, time-major [1, 4F, (L+2)*hidden] (the reference stores it as [1, C, 4F, 1, 1]).
    pub audio_proj_input: Tensor,
    /// AudioPack output [1, F, audio_hidden_size].
    pub audio_proj_output: Tensor,
    /// What the DiT receives: [n_cond_projs, F, 1, 1, dim].
    pub audio_emb: Tensor,
}

/// wav2vec2 + AudioPack + per-layer projections: waveform -> the DiT's `audio_emb`.
#[derive(Debug, Clone)]
pub struct AudioConditioner {
    wav2vec2: Wav2Vec2Model,
    audio_proj: AudioPack,
    audio_cond_projs: Vec<Linear>,
    feature_dim: usize,
    frames_per_token: usize,
    dtype: DType,
    device: Device,
}

/// wav2vec2 run at the video frame rate, with its intermediates.
#[derive(Debug, Clone)]
pub struct VideoRateFeatures {
    /// CNN output [B, conv_dim, T50].
    pub conv_features: Tensor,
    /// Interpolated to video frames [B, frames, conv_dim].
    pub conv_features_interp: Tensor,
    pub encoder: Wav2Vec2Output,
    /// cat[last, h_0..h_L] per video frame [B, frames, (L+2)*hidden].
    pub frame_features: Tensor,
}

impl AudioConditioner {
    /// `vb_w2v`: root of a `Wav2Vec2ForCTC` checkpoint (weights under `wav2vec2.`);
    /// `vb_dit`: root of the LiveTalk DiT checkpoint (`audio_proj.*`, `audio_cond_projs.*`).
    pub fn new(
        w2v_cfg: &Wav2Vec2Config,
        audio_cfg: &AudioProjConfig,
        vb_w2v: VarBuilder,
        vb_dit: VarBuilder,
    ) -> Result<Self> {
        let wav2vec2 = Wav2Vec2Model::from_ctc_checkpoint(w2v_cfg, vb_w2v)?;
        Self::from_parts(wav2vec2, audio_cfg, vb_dit)
    }

    /// Adds the DiT's audio projections (`vb_dit` at the DiT checkpoint's root) to a loaded wav2vec2.
    pub fn from_parts(
        wav2vec2: Wav2Vec2Model,
        audio_cfg: &AudioProjConfig,
        vb_dit: VarBuilder,
    ) -> Result<Self> {
        audio_cfg.validate()?;
        let w2v_cfg = wav2vec2.config();
        let feature_dim = (w2v_cfg.num_hidden_layers + 2) * w2v_cfg.hidden_size;
        if let Some(d) = audio_cfg.audio_input_dim {
            if d != feature_dim {
                return Err(AudioModelError::InvalidConfig {
                    model: "DiT audio",
                    field: "audio_input_dim",
                    reason: format!(
                        "{d} != (num_hidden_layers+2)*hidden_size = {feature_dim} of the wav2vec2 config"
                    ),
                }
                .into());
            }
        }
        let audio_proj = AudioPack::new(feature_dim, audio_cfg, vb_dit.pp("audio_proj"))?;
        let audio_cond_projs = (0..audio_cfg.num_cond_projs())
            .map(|j| {
                candle_nn::linear(
                    audio_cfg.audio_hidden_size,
                    audio_cfg.dim,
                    vb_dit.pp("audio_cond_projs").pp(j),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            wav2vec2,
            audio_proj,
            audio_cond_projs,
            feature_dim,
            frames_per_token: audio_cfg.frames_per_token(),
            dtype: vb_dit.dtype(),
            device: vb_dit.device().clone(),
        })
    }

    /// Loads from files: wav2vec2 `config.json` + `model.safetensors`, DiT config JSON + DiT
    /// safetensors. Errors name the file that failed.
    pub fn load(
        w2v_config: impl AsRef<Path>,
        w2v_weights: impl AsRef<Path>,
        dit_config: impl AsRef<Path>,
        dit_weights: impl AsRef<Path>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let w2v_cfg = Wav2Vec2Config::from_json_file(&w2v_config)?;
        let audio_cfg = AudioProjConfig::from_json_file(&dit_config)?;
        let (w2v_weights, dit_weights) = (w2v_weights.as_ref(), dit_weights.as_ref());
        // Checked against the published wav2vec2 layout; the DiT file is checked by the DiT's loader.
        let wav2vec2 = crate::layouts::load_checked(w2v_weights, |_| crate::layouts::wav2vec2(&w2v_cfg), |ck| {
            Wav2Vec2Model::from_ctc_checkpoint(&w2v_cfg, ck.var_builder(dtype, device))
        })
        .map_err(|e| e.context(format!("loading wav2vec2 from {}", w2v_weights.display())))?;
        let vb_dit = crate::checkpoint::Checkpoint::open(dit_weights)
            .map_err(candle_core::Error::wrap)?
            .var_builder(dtype, device);
        Self::from_parts(wav2vec2, &audio_cfg, vb_dit).map_err(|e| {
            e.context(format!(
                "loading audio projections from {}",
                dit_weights.display()
            ))
        })
    }

    pub fn wav2vec2(&self) -> &Wav2Vec2Model {
        &self.wav2vec2
    }

    /// Per-video-frame feature size (L+2)*hidden.
    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// Video frames per latent-frame token (4); the clip's first frame is repeated
    /// `frames_per_token - 1` times so that 4F-3 video frames fill F tokens.
    pub fn frames_per_token(&self) -> usize {
        self.frames_per_token
    }

    /// Number of per-layer projections (rows of `audio_emb`).
    pub fn num_cond_projs(&self) -> usize {
        self.audio_cond_projs.len()
    }

    /// Normalised waveform as the model's input [1, samples], in the model's dtype and device.
    pub fn input_values(&self, samples: &[f32]) -> Result<Tensor> {
        if samples.is_empty() {
            return Err(invalid_input("empty waveform".into()));
        }
        let n = samples.len();
        Tensor::from_vec(normalize_waveform(samples), (1, n), &self.device)?.to_dtype(self.dtype)
    }

    /// Normalised samples [B, samples] -> wav2vec2 features of `num_video_frames` video frames
    /// spread evenly over the samples (first and last frame on the first and last 50 Hz frame).
    pub fn encode_at_video_rate(
        &self,
        input_values: &Tensor,
        num_video_frames: usize,
    ) -> Result<VideoRateFeatures> {
        let conv_features = self.wav2vec2.extract_conv_features(input_values)?;
        let conv_features_interp = interpolate_linear(&conv_features, 2, num_video_frames)?
            .transpose(1, 2)?
            .contiguous()?;
        let encoder = self.wav2vec2.encode(&conv_features_interp)?;
        let frame_features = concat_hidden_states(&encoder)?;
        Ok(VideoRateFeatures {
            conv_features,
            conv_features_interp,
            encoder,
            frame_features,
        })
    }

    /// Normalised samples [B, samples] -> per-video-frame features [B, num_video_frames, (L+2)*hidden].
    pub fn frame_features(&self, input_values: &Tensor, num_video_frames: usize) -> Result<Tensor> {
        Ok(self
            .encode_at_video_rate(input_values, num_video_frames)?
            .frame_features)
    }

    /// AudioPack on 4k consecutive frame features [B, 4k, C] -> tokens [B, k, audio_hidden_size].
    pub fn pack(&self, frame_features: &Tensor) -> Result<Tensor> {
        let c = frame_features.dim(2)?;
        if c != self.feature_dim {
            return Err(invalid_input(format!(
                "frame features have {c} channels, expected {}",
                self.feature_dim
            )));
        }
        self.audio_proj.forward(frame_features)
    }

    /// Tokens [B, k, audio_hidden_size] -> per-layer embeddings [n_cond_projs*B, k, 1, 1, dim]
    /// (row block j feeds the j-th audio-injected DiT block).
    pub fn project_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        let per_layer = self
            .audio_cond_projs
            .iter()
            .map(|proj| proj.forward(tokens)?.unsqueeze(2)?.unsqueeze(2))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&per_layer, 0)
    }

    /// Frame features of 4k consecutive video frames [B, 4k, C] -> the DiT's audio_emb for k
    /// latent frames [n_cond_projs*B, k, 1, 1, dim].
    pub fn embed_frame_features(&self, frame_features: &Tensor) -> Result<Tensor> {
        self.project_tokens(&self.pack(frame_features)?)
    }

    /// The whole-clip pipeline of the reference, keeping every intermediate.
    pub fn trace(&self, waveform: &[f32], num_latent_frames: usize) -> Result<AudioTrace> {
        if num_latent_frames < 2 {
            return Err(invalid_input(format!(
                "num_latent_frames must be >= 2 (the clip covers (4F-4)/16 s), got {num_latent_frames}"
            )));
        }
        // Longer audio is cut to the video's duration; shorter audio is stretched by the
        // interpolation, as in the reference.
        let keep = trimmed_num_samples(num_latent_frames).min(waveform.len());
        let input_values = self.input_values(&waveform[..keep])?;
        let VideoRateFeatures {
            conv_features,
            conv_features_interp,
            encoder,
            frame_features,
        } = self.encode_at_video_rate(&input_values, video_frames(num_latent_frames))?;
        let audio_proj_input = prepend_first_frame(&frame_features, self.frames_per_token - 1)?;
        let audio_proj_output = self.pack(&audio_proj_input)?;
        let audio_emb = self.project_tokens(&audio_proj_output)?;
        Ok(AudioTrace {
            input_values,
            conv_features,
            conv_features_interp,
            encoder,
            audio_proj_input,
            audio_proj_output,
            audio_emb,
        })
    }

    /// 16 kHz mono waveform -> audio_emb [n_cond_projs, F, 1, 1, dim] for F latent frames.
    pub fn forward(&self, waveform: &[f32], num_latent_frames: usize) -> Result<Tensor> {
        Ok(self.trace(waveform, num_latent_frames)?.audio_emb)
    }
}
