//! wav2vec2 (Baevski et al. 2020), the base post-LN variant used by LiveTalk
//! (`facebook/wav2vec2-base-960h`), inference only.
//!
//! LiveTalk resamples the 50 Hz CNN features to the video frame rate *between* the feature
//! encoder and the transformer, so the model exposes the two halves separately:
//! [`Wav2Vec2Model::extract_conv_features`] (waveform -> 50 Hz features) and
//! [`Wav2Vec2Model::encode`] (features at any rate -> all hidden states).
//!
//! Weights use the `Wav2Vec2ForCTC` layout of the published checkpoint (prefix `wav2vec2.`,
//! the CTC head `lm_head.*` is ignored); see [`Wav2Vec2Model::from_ctc_checkpoint`].

use std::path::Path;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{GroupNorm, LayerNorm, Linear, VarBuilder};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Bad configuration or input of the audio models (wav2vec2 and the audio conditioning built
/// on it, [`crate::audio_features`]).
#[derive(Debug, thiserror::Error)]
pub enum AudioModelError {
    #[error("config {path}: {reason}")]
    ConfigFile { path: String, reason: String },
    #[error("{model} config field `{field}`: {reason}")]
    InvalidConfig {
        model: &'static str,
        field: &'static str,
        reason: String,
    },
    #[error("{model} input: {reason}")]
    InvalidInput { model: &'static str, reason: String },
}

impl From<AudioModelError> for candle_core::Error {
    fn from(e: AudioModelError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// Reads a JSON config file and runs `validate` on it; every error names the file.
pub(crate) fn read_json_config<T: DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> std::result::Result<(), AudioModelError>,
) -> Result<T> {
    let err = |reason: String| AudioModelError::ConfigFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let cfg: T = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    validate(&cfg).map_err(|e| err(e.to_string()))?;
    Ok(cfg)
}

fn invalid_input(reason: String) -> candle_core::Error {
    AudioModelError::InvalidInput {
        model: "wav2vec2",
        reason,
    }
    .into()
}

fn default_norm() -> String {
    "group".to_string()
}
fn default_act() -> String {
    "gelu".to_string()
}
fn default_eps() -> f64 {
    1e-5
}

/// The fields of a transformers `config.json` that inference needs (others are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Wav2Vec2Config {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub conv_dim: Vec<usize>,
    pub conv_kernel: Vec<usize>,
    pub conv_stride: Vec<usize>,
    #[serde(default)]
    pub conv_bias: bool,
    #[serde(default = "default_norm")]
    pub feat_extract_norm: String,
    #[serde(default)]
    pub do_stable_layer_norm: bool,
    pub num_conv_pos_embeddings: usize,
    pub num_conv_pos_embedding_groups: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_act")]
    pub feat_extract_activation: String,
}

impl Wav2Vec2Config {
    /// The published `facebook/wav2vec2-base-960h` configuration.
    pub fn base_960h() -> Self {
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            conv_dim: vec![512; 7],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_bias: false,
            feat_extract_norm: default_norm(),
            do_stable_layer_norm: false,
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            layer_norm_eps: 1e-5,
            hidden_act: default_act(),
            feat_extract_activation: default_act(),
        }
    }

    /// Reads and validates a transformers `config.json`.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        read_json_config(path.as_ref(), Self::validate)
    }

    /// Checks that the configuration describes a model this implementation runs.
    pub fn validate(&self) -> std::result::Result<(), AudioModelError> {
        let bad = |field, reason: String| {
            Err(AudioModelError::InvalidConfig {
                model: "wav2vec2",
                field,
                reason,
            })
        };
        let n = self.conv_dim.len();
        if n == 0 {
            return bad("conv_dim", "is empty".into());
        }
        if self.conv_kernel.len() != n || self.conv_stride.len() != n {
            return bad(
                "conv_kernel",
                format!(
                    "conv_dim/conv_kernel/conv_stride lengths differ ({n}/{}/{})",
                    self.conv_kernel.len(),
                    self.conv_stride.len()
                ),
            );
        }
        if self
            .conv_dim
            .iter()
            .chain(&self.conv_kernel)
            .chain(&self.conv_stride)
            .any(|&v| v == 0)
        {
            return bad(
                "conv_dim",
                "conv sizes, kernels and strides must be > 0".into(),
            );
        }
        if self.hidden_size == 0 || self.num_hidden_layers == 0 || self.intermediate_size == 0 {
            return bad("hidden_size", "sizes must be > 0".into());
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return bad(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            );
        }
        let groups = self.num_conv_pos_embedding_groups;
        if groups == 0 || !self.hidden_size.is_multiple_of(groups) {
            return bad(
                "num_conv_pos_embedding_groups",
                format!("{groups} does not divide hidden_size {}", self.hidden_size),
            );
        }
        if self.num_conv_pos_embeddings == 0 {
            return bad("num_conv_pos_embeddings", "must be > 0".into());
        }
        if self.feat_extract_norm != "group" {
            return bad(
                "feat_extract_norm",
                format!(
                    "{:?} is not supported (only \"group\", the base models)",
                    self.feat_extract_norm
                ),
            );
        }
        if self.do_stable_layer_norm {
            return bad(
                "do_stable_layer_norm",
                "pre-LN (large) models are not supported".into(),
            );
        }
        for (field, act) in [
            ("hidden_act", &self.hidden_act),
            ("feat_extract_activation", &self.feat_extract_activation),
        ] {
            if act != "gelu" {
                return bad(field, format!("{act:?} is not supported (only \"gelu\")"));
            }
        }
        Ok(())
    }

    /// Number of 50 Hz feature frames the CNN produces for `num_samples` input samples
    /// (0 when the input is shorter than the receptive field).
    pub fn conv_output_len(&self, num_samples: usize) -> usize {
        self.conv_kernel
            .iter()
            .zip(&self.conv_stride)
            .fold(
                num_samples,
                |len, (&k, &s)| {
                    if len < k {
                        0
                    } else {
                        (len - k) / s + 1
                    }
                },
            )
    }

    /// Number of hidden states [`Wav2Vec2Model::encode`] returns: the encoder input plus one per layer.
    pub fn num_hidden_states(&self) -> usize {
        self.num_hidden_layers + 1
    }

    fn conv_out_dim(&self) -> usize {
        *self
            .conv_dim
            .last()
            .expect("validated: conv_dim is not empty")
    }
}

/// One layer of the CNN feature encoder: Conv1d (-> GroupNorm on the first layer) -> GELU.
#[derive(Debug, Clone)]
struct FeatureConvLayer {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    /// GroupNorm with one group per channel (normalises every channel over time), layer 0 only.
    norm: Option<GroupNorm>,
}

impl FeatureConvLayer {
    fn new(cfg: &Wav2Vec2Config, i: usize, vb: VarBuilder) -> Result<Self> {
        let c_in = if i == 0 { 1 } else { cfg.conv_dim[i - 1] };
        let c_out = cfg.conv_dim[i];
        let weight = vb.get((c_out, c_in, cfg.conv_kernel[i]), "conv.weight")?;
        let bias = if cfg.conv_bias {
            Some(vb.get(c_out, "conv.bias")?)
        } else {
            None
        };
        // PyTorch's GroupNorm default eps (not layer_norm_eps).
        let norm = if i == 0 {
            Some(candle_nn::group_norm(
                c_out,
                c_out,
                1e-5,
                vb.pp("layer_norm"),
            )?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            stride: cfg.conv_stride[i],
            norm,
        })
    }
}

impl Module for FeatureConvLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.conv1d(&self.weight, 0, self.stride, 1, 1)?;
        if let Some(b) = &self.bias {
            x = x.broadcast_add(&b.reshape((1, (), 1))?)?;
        }
        if let Some(norm) = &self.norm {
            x = norm.forward(&x)?;
        }
        x.gelu_erf()
    }
}

/// LayerNorm -> Linear from the last conv width to `hidden_size`.
#[derive(Debug, Clone)]
struct FeatureProjection {
    layer_norm: LayerNorm,
    projection: Linear,
}

impl FeatureProjection {
    fn new(cfg: &Wav2Vec2Config, vb: VarBuilder) -> Result<Self> {
        let c = cfg.conv_out_dim();
        Ok(Self {
            layer_norm: candle_nn::layer_norm(c, cfg.layer_norm_eps, vb.pp("layer_norm"))?,
            projection: candle_nn::linear(c, cfg.hidden_size, vb.pp("projection"))?,
        })
    }
}

impl Module for FeatureProjection {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.projection.forward(&self.layer_norm.forward(x)?)
    }
}

/// Relative position information: a wide grouped Conv1d over time (weight-normalised in the
/// checkpoint), then GELU.
#[derive(Debug, Clone)]
struct PositionalConvEmbedding {
    weight: Tensor,
    bias: Tensor,
    kernel: usize,
    groups: usize,
}

impl PositionalConvEmbedding {
    fn new(cfg: &Wav2Vec2Config, vb: VarBuilder) -> Result<Self> {
        let (h, k, groups) = (
            cfg.hidden_size,
            cfg.num_conv_pos_embeddings,
            cfg.num_conv_pos_embedding_groups,
        );
        // Older checkpoints store weight_norm's (g, v) as weight_g / weight_v, newer
        // transformers as parametrizations.weight.original0 / original1.
        let (g_name, v_name) = if vb.contains_tensor("parametrizations.weight.original0") {
            (
                "parametrizations.weight.original0",
                "parametrizations.weight.original1",
            )
        } else {
            ("weight_g", "weight_v")
        };
        let g = vb.get_with_hints_dtype((1, 1, k), g_name, Default::default(), DType::F32)?;
        let v =
            vb.get_with_hints_dtype((h, h / groups, k), v_name, Default::default(), DType::F32)?;
        // weight_norm(dim=2): one norm per kernel tap, over the (out, in) dims.
        let v_norm = v.sqr()?.sum_keepdim(0)?.sum_keepdim(1)?.sqrt()?;
        let weight = v
            .broadcast_mul(&g.broadcast_div(&v_norm)?)?
            .to_dtype(vb.dtype())?;
        let bias = vb.get(h, "bias")?;
        Ok(Self {
            weight,
            bias,
            kernel: k,
            groups,
        })
    }
}

impl Module for PositionalConvEmbedding {
    /// `x`: [B, T, hidden] -> [B, T, hidden]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(1)?;
        let y = x
            .transpose(1, 2)?
            .contiguous()?
            .conv1d(&self.weight, self.kernel / 2, 1, 1, self.groups)?
            .broadcast_add(&self.bias.reshape((1, (), 1))?)?;
        // Symmetric padding of kernel/2 gives one extra frame when the kernel is even.
        let y = y.narrow(2, 0, t)?;
        y.gelu_erf()?.transpose(1, 2)
    }
}

/// Multi-head self-attention over the whole (unmasked) sequence.
#[derive(Debug, Clone)]
struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn new(cfg: &Wav2Vec2Config, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            q_proj: candle_nn::linear(h, h, vb.pp("q_proj"))?,
            k_proj: candle_nn::linear(h, h, vb.pp("k_proj"))?,
            v_proj: candle_nn::linear(h, h, vb.pp("v_proj"))?,
            out_proj: candle_nn::linear(h, h, vb.pp("out_proj"))?,
            num_heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    /// [B, T, hidden] -> [B, heads, T, head_dim]
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }
}

impl Module for SelfAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let q = self.split_heads(&(self.q_proj.forward(x)? * scale)?)?;
        let k = self.split_heads(&self.k_proj.forward(x)?)?;
        let v = self.split_heads(&self.v_proj.forward(x)?)?;
        let weights = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let y = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        self.out_proj.forward(&y)
    }
}

/// Linear -> GELU -> Linear.
#[derive(Debug, Clone)]
struct FeedForward {
    intermediate_dense: Linear,
    output_dense: Linear,
}

impl FeedForward {
    fn new(cfg: &Wav2Vec2Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            intermediate_dense: candle_nn::linear(
                cfg.hidden_size,
                cfg.intermediate_size,
                vb.pp("intermediate_dense"),
            )?,
            output_dense: candle_nn::linear(
                cfg.intermediate_size,
                cfg.hidden_size,
                vb.pp("output_dense"),
            )?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.output_dense
            .forward(&self.intermediate_dense.forward(x)?.gelu_erf()?)
    }
}

/// Post-LN transformer layer: x = LN(x + Attn(x)); x = LN'(x + FFN(x)).
#[derive(Debug, Clone)]
struct EncoderLayer {
    attention: SelfAttention,
    layer_norm: LayerNorm,
    feed_forward: FeedForward,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    fn new(cfg: &Wav2Vec2Config, vb: VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        Ok(Self {
            attention: SelfAttention::new(cfg, vb.pp("attention"))?,
            layer_norm: candle_nn::layer_norm(h, eps, vb.pp("layer_norm"))?,
            feed_forward: FeedForward::new(cfg, vb.pp("feed_forward"))?,
            final_layer_norm: candle_nn::layer_norm(h, eps, vb.pp("final_layer_norm"))?,
        })
    }
}

impl Module for EncoderLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self
            .layer_norm
            .forward(&(x + self.attention.forward(x)?)?)?;
        self.final_layer_norm
            .forward(&(&x + self.feed_forward.forward(&x)?)?)
    }
}

/// What [`Wav2Vec2Model::encode`] returns.
#[derive(Debug, Clone)]
pub struct Wav2Vec2Output {
    /// Output of the feature projection [B, T, hidden] (the transformer's input before the
    /// positional embedding).
    pub projected_features: Tensor,
    /// `num_hidden_layers + 1` tensors [B, T, hidden]: index 0 is the encoder input after the
    /// positional conv and LayerNorm, index i >= 1 the output of transformer layer i.
    pub hidden_states: Vec<Tensor>,
}

impl Wav2Vec2Output {
    /// The output of the last layer (== `hidden_states[num_hidden_layers]`).
    pub fn last_hidden_state(&self) -> &Tensor {
        self.hidden_states
            .last()
            .expect("encode returns at least one hidden state")
    }
}

/// The wav2vec2 encoder without a task head (transformers' `Wav2Vec2Model`).
#[derive(Debug, Clone)]
pub struct Wav2Vec2Model {
    cfg: Wav2Vec2Config,
    conv_layers: Vec<FeatureConvLayer>,
    feature_projection: FeatureProjection,
    pos_conv_embed: PositionalConvEmbedding,
    encoder_layer_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
}

impl Wav2Vec2Model {
    /// Builds the model from weights named as in transformers' `Wav2Vec2Model`
    /// (`feature_extractor.*`, `feature_projection.*`, `encoder.*` at the root of `vb`).
    pub fn new(cfg: &Wav2Vec2Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let vb_fe = vb.pp("feature_extractor").pp("conv_layers");
        let conv_layers = (0..cfg.conv_dim.len())
            .map(|i| FeatureConvLayer::new(cfg, i, vb_fe.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let vb_enc = vb.pp("encoder");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(cfg, vb_enc.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            conv_layers,
            feature_projection: FeatureProjection::new(cfg, vb.pp("feature_projection"))?,
            pos_conv_embed: PositionalConvEmbedding::new(
                cfg,
                vb_enc.pp("pos_conv_embed").pp("conv"),
            )?,
            encoder_layer_norm: candle_nn::layer_norm(
                cfg.hidden_size,
                cfg.layer_norm_eps,
                vb_enc.pp("layer_norm"),
            )?,
            layers,
        })
    }

    /// Builds the model from a `Wav2Vec2ForCTC` checkpoint such as
    /// `facebook/wav2vec2-base-960h/model.safetensors` (weights under `wav2vec2.`).
    pub fn from_ctc_checkpoint(cfg: &Wav2Vec2Config, vb: VarBuilder) -> Result<Self> {
        Self::new(cfg, vb.pp("wav2vec2"))
    }

    pub fn config(&self) -> &Wav2Vec2Config {
        &self.cfg
    }

    /// CNN feature encoder: normalised waveform [B, samples] -> 50 Hz features [B, conv_dim, T].
    pub fn extract_conv_features(&self, input_values: &Tensor) -> Result<Tensor> {
        let (_, n) = input_values.dims2()?;
        if self.cfg.conv_output_len(n) == 0 {
            return Err(invalid_input(format!(
                "{n} samples are shorter than the feature encoder's receptive field"
            )));
        }
        self.conv_layers
            .iter()
            .try_fold(input_values.unsqueeze(1)?, |x, layer| layer.forward(&x))
    }

    /// Feature projection + transformer on CNN features at any frame rate:
    /// [B, T, conv_dim] -> every hidden state [B, T, hidden].
    pub fn encode(&self, features: &Tensor) -> Result<Wav2Vec2Output> {
        let (_, t, c) = features.dims3()?;
        if t == 0 || c != self.cfg.conv_out_dim() {
            return Err(invalid_input(format!(
                "encode expects [B, T>0, {}] features, got {:?}",
                self.cfg.conv_out_dim(),
                features.dims()
            )));
        }
        let projected_features = self.feature_projection.forward(features)?;
        let x = (&projected_features + self.pos_conv_embed.forward(&projected_features)?)?;
        let mut hidden_states = vec![self.encoder_layer_norm.forward(&x)?];
        for layer in &self.layers {
            let next = layer.forward(hidden_states.last().expect("non-empty"))?;
            hidden_states.push(next);
        }
        Ok(Wav2Vec2Output {
            projected_features,
            hidden_states,
        })
    }
}
