//! umT5-XXL text encoder (Wan2.1's prompt encoder), inference only.
//!
//! A T5 v1.1 style encoder stack with umT5's per-layer relative position bias:
//! ```text
//! x = token_embedding(ids)
//! for each block:
//!     x += Attn(rms_norm1(x), bias = rel_pos_bias_layer(i - j) + mask)   // no 1/sqrt(d) scaling
//!     x += fc2(fc1(rms_norm2(x)) * gelu_tanh(gate(rms_norm2(x))))
//! out = rms_norm(x)
//! ```
//! RMS norms have no mean subtraction and no bias (eps 1e-6). Each layer owns a
//! `[num_buckets, num_heads]` table indexed by bidirectional log-bucketed distances.
//!
//! The prompt pipeline (LiveTalk's `WanTextEncoder`): clean the text, tokenize with `</s>`
//! appended and truncated to `text_len` (512), encode, keep the valid tokens and zero the rest
//! back up to `text_len`. Keys beyond the valid length are masked out and the position bias only
//! depends on distances, so the valid rows do not depend on the padding: [`Umt5Encoder::encode_ids`]
//! runs the valid tokens alone (a 20-token prompt costs 20 positions, not 512) and pads with zeros.
//!
//! The text encoder runs once per persona prompt; the result is cached on disk with
//! [`crate::prompt_cache`] so the 5.7B encoder is never resident while streaming.
//! The tokenizer (`tokenizer.json` of `google/umt5-xxl`) needs the opt-in cargo feature
//! `prompt-encoder`.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, DimMap, Expected, Manifest, ShapeRule};

/// Bad configuration, input or tokenizer of the umT5 encoder.
#[derive(Debug, thiserror::Error)]
pub enum Umt5Error {
    #[error("umt5 config field `{field}`: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("umt5 input `{input}`: {reason}")]
    InvalidInput { input: &'static str, reason: String },
    #[error("umt5 tokenizer {file}: {reason}")]
    Tokenizer { file: String, reason: String },
}

impl From<Umt5Error> for candle_core::Error {
    fn from(e: Umt5Error) -> Self {
        candle_core::Error::wrap(e)
    }
}

fn bad_input(input: &'static str, reason: impl Into<String>) -> candle_core::Error {
    Umt5Error::InvalidInput {
        input,
        reason: reason.into(),
    }
    .into()
}

/// Sequence length LiveTalk pads prompt embeddings to (Wan2.1's `text_len`).
pub const TEXT_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Umt5Config {
    pub vocab_size: usize,
    pub dim: usize,
    /// Width of q/k/v (`num_heads * head_dim`).
    pub dim_attn: usize,
    pub dim_ffn: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    /// Relative position buckets, both directions together.
    pub num_buckets: usize,
    /// Distances from here on share the last bucket.
    pub max_distance: usize,
    pub eps: f64,
}

impl Umt5Config {
    /// `google/umt5-xxl` encoder, as in Wan2.1's `models_t5_umt5-xxl-enc-bf16.pth`.
    pub fn xxl() -> Self {
        Self {
            vocab_size: 256_384,
            dim: 4096,
            dim_attn: 4096,
            dim_ffn: 10_240,
            num_heads: 64,
            num_layers: 24,
            num_buckets: 32,
            max_distance: 128,
            eps: 1e-6,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.dim_attn / self.num_heads
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| -> Result<()> {
            Err(Umt5Error::InvalidConfig { field, reason }.into())
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("dim", self.dim),
            ("dim_attn", self.dim_attn),
            ("dim_ffn", self.dim_ffn),
            ("num_heads", self.num_heads),
            ("num_layers", self.num_layers),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if !self.dim_attn.is_multiple_of(self.num_heads) {
            return bad(
                "dim_attn",
                format!(
                    "{} is not a multiple of num_heads {}",
                    self.dim_attn, self.num_heads
                ),
            );
        }
        // Bidirectional buckets: half per direction, half of those exact distances.
        if self.num_buckets < 4 || !self.num_buckets.is_multiple_of(2) {
            return bad(
                "num_buckets",
                format!("{} must be even and at least 4", self.num_buckets),
            );
        }
        if self.max_distance <= self.num_buckets / 4 {
            return bad(
                "max_distance",
                format!(
                    "{} must exceed the exact range num_buckets/4 = {}",
                    self.max_distance,
                    self.num_buckets / 4
                ),
            );
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return bad("eps", format!("{} must be a positive number", self.eps));
        }
        Ok(())
    }

    /// Reads a JSON config; errors name the file.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let err = |reason: String| {
            candle_core::Error::Msg(format!("umt5 config {}: {reason}", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        cfg.validate().map_err(|e| err(e.to_string()))?;
        Ok(cfg)
    }

    /// The tensors a checkpoint of this config must hold, from the manifest of the published
    /// encoder: the same names (first `num_layers` blocks), every real size replaced by this
    /// config's. For [`Umt5Config::xxl`] this is the manifest itself.
    pub fn expected_layout(&self, manifest: &Manifest) -> std::result::Result<Expected, String> {
        let real = Self::xxl();
        if *self == real {
            return Ok(Expected::full(manifest));
        }
        let map = DimMap::new()
            .with(real.vocab_size, self.vocab_size)?
            .with(real.dim, self.dim)?
            .with(real.dim_attn, self.dim_attn)?
            .with(real.dim_ffn, self.dim_ffn)?
            .with(real.num_heads, self.num_heads)?
            .with(real.num_buckets, self.num_buckets)?;
        Ok(Expected::full(manifest)
            .limit_layers("blocks.", self.num_layers)
            .shapes(ShapeRule::Scaled(map))
            .ignore_dtypes())
    }
}

/// Bucket of the relative position `rel = key - query` (bidirectional T5 bucketing): keys after
/// the query use the upper half of the buckets; within a half, distances below a quarter of all
/// buckets are exact and the rest are log-spaced up to `max_distance`, beyond which they share
/// the last bucket.
pub fn relative_position_bucket(rel: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = num_buckets / 2;
    let base = if rel > 0 { half } else { 0 };
    let n = rel.unsigned_abs() as usize;
    let max_exact = half / 2;
    if n < max_exact {
        return base + n;
    }
    let log_ratio =
        (n as f64 / max_exact as f64).ln() / (max_distance as f64 / max_exact as f64).ln();
    let large = max_exact + (log_ratio * (half - max_exact) as f64) as usize;
    base + large.min(half - 1)
}

/// `[lq, lk]` bucket indices for a self-attention of length `len`.
fn bucket_grid(len: usize, cfg: &Umt5Config, device: &Device) -> Result<Tensor> {
    let mut grid = Vec::with_capacity(len * len);
    for i in 0..len {
        for j in 0..len {
            let rel = j as i64 - i as i64;
            grid.push(relative_position_bucket(rel, cfg.num_buckets, cfg.max_distance) as u32);
        }
    }
    Tensor::from_vec(grid, (len, len), device)
}

/// T5 LayerNorm: `w * x / sqrt(mean(x^2) + eps)`, statistics in float32.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        // A freshly built (random) model starts at the identity scale; loading ignores the hint.
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    pub fn from_weight(weight: Tensor, eps: f64) -> Self {
        Self { weight, eps }
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let xf = x.to_dtype(DType::F32)?;
        let inv_rms = (xf.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        xf.broadcast_mul(&inv_rms)?
            .to_dtype(self.weight.dtype())?
            .broadcast_mul(&self.weight)
    }
}

fn linear(vb: &VarBuilder, in_dim: usize, out_dim: usize, name: &str) -> Result<Linear> {
    candle_nn::linear_no_bias(in_dim, out_dim, vb.pp(name))
}

/// Multi-head self-attention with an additive bias and no logit scaling (T5 folds the scale
/// into the initialisation of `q`).
#[derive(Debug, Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    num_heads: usize,
}

impl Attention {
    fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            q: linear(&vb, cfg.dim, cfg.dim_attn, "q")?,
            k: linear(&vb, cfg.dim, cfg.dim_attn, "k")?,
            v: linear(&vb, cfg.dim, cfg.dim_attn, "v")?,
            o: linear(&vb, cfg.dim_attn, cfg.dim, "o")?,
            num_heads: cfg.num_heads,
        })
    }

    /// `x`: `[B, L, dim]`; `bias`: float32, broadcastable to `[B, H, L, L]`.
    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let heads = |t: Tensor| -> Result<Tensor> {
            let c = t.dim(2)? / self.num_heads;
            t.reshape((b, l, self.num_heads, c))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q.forward(x)?)?;
        let k = heads(self.k.forward(x)?)?;
        let v = heads(self.v.forward(x)?)?;
        let logits = q
            .matmul(&k.t()?)?
            .to_dtype(DType::F32)?
            .broadcast_add(bias)?;
        let attn = candle_nn::ops::softmax_last_dim(&logits)?.to_dtype(v.dtype())?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.contiguous()?;
        let (_, _, h, c) = y.dims4()?;
        self.o.forward(&y.reshape((b, l, h * c))?)
    }
}

/// Gated GELU feed-forward: `fc2(fc1(x) * gelu_tanh(gate(x)))`.
#[derive(Debug, Clone)]
struct FeedForward {
    gate: Linear,
    fc1: Linear,
    fc2: Linear,
}

impl FeedForward {
    fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            // `gate` is `Sequential(Linear, GELU)` in the checkpoint: its linear is `gate.0`.
            gate: linear(&vb, cfg.dim, cfg.dim_ffn, "gate.0")?,
            fc1: linear(&vb, cfg.dim, cfg.dim_ffn, "fc1")?,
            fc2: linear(&vb, cfg.dim_ffn, cfg.dim, "fc2")?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // candle's `gelu` is the tanh approximation, as in T5 v1.1 / umT5.
        let gated = self.fc1.forward(x)?.mul(&self.gate.forward(x)?.gelu()?)?;
        self.fc2.forward(&gated)
    }
}

#[derive(Debug, Clone)]
struct Block {
    norm1: RmsNorm,
    attn: Attention,
    norm2: RmsNorm,
    ffn: FeedForward,
    /// umT5: every layer has its own relative position table `[num_buckets, num_heads]`.
    pos_embedding: Embedding,
}

impl Block {
    fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm1: RmsNorm::new(cfg.dim, cfg.eps, vb.pp("norm1"))?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            norm2: RmsNorm::new(cfg.dim, cfg.eps, vb.pp("norm2"))?,
            ffn: FeedForward::new(cfg, vb.pp("ffn"))?,
            pos_embedding: candle_nn::embedding(
                cfg.num_buckets,
                cfg.num_heads,
                vb.pp("pos_embedding.embedding"),
            )?,
        })
    }

    /// `buckets`: `[L, L]` u32; `mask_bias`: `[B, 1, 1, L]` float32 (0 or a huge negative).
    fn forward(&self, x: &Tensor, buckets: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        // [L, L, H] -> [1, H, L, L]
        let pos = self
            .pos_embedding
            .forward(buckets)?
            .permute((2, 0, 1))?
            .unsqueeze(0)?;
        let bias = pos.to_dtype(DType::F32)?.broadcast_add(mask_bias)?;
        let x = fp16_clamp(&(x + self.attn.forward(&self.norm1.forward(x)?, &bias)?)?)?;
        fp16_clamp(&(&x + self.ffn.forward(&self.norm2.forward(&x)?)?)?)
    }
}

/// In float16 the residual stream can overflow; like the reference, clamp only once it has.
fn fp16_clamp(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F16 {
        return Ok(x.clone());
    }
    let max_abs = x
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?;
    if max_abs.is_infinite() {
        let limit = f64::from(half::f16::MAX.to_f32()) - 1000.0;
        x.clamp(-limit, limit)
    } else {
        Ok(x.clone())
    }
}

/// The umT5 encoder stack (token embedding, blocks, final norm).
#[derive(Debug, Clone)]
pub struct Umt5Encoder {
    token_embedding: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    cfg: Umt5Config,
    device: Device,
    dtype: DType,
}

impl Umt5Encoder {
    pub fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let token_embedding =
            candle_nn::embedding(cfg.vocab_size, cfg.dim, vb.pp("token_embedding"))?;
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(cfg.dim, cfg.eps, vb.pp("norm"))?;
        Ok(Self {
            token_embedding,
            blocks,
            norm,
            cfg: cfg.clone(),
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// Loads the published `models_t5_umt5-xxl-enc-bf16.pth` (or a `.safetensors` with the same
    /// keys), checking its layout against `manifest` first when one is given.
    pub fn from_checkpoint(
        path: impl AsRef<Path>,
        cfg: &Umt5Config,
        manifest: Option<&Manifest>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let checkpoint = Checkpoint::open(path).map_err(candle_core::Error::wrap)?;
        if let Some(manifest) = manifest {
            let expected =
                cfg.expected_layout(manifest)
                    .map_err(|reason| Umt5Error::InvalidConfig {
                        field: "dim",
                        reason: format!(
                            "cannot map onto the manifest {}: {reason}",
                            manifest.path.display()
                        ),
                    })?;
            checkpoint
                .validate(&expected)
                .map_err(candle_core::Error::wrap)?;
        }
        Self::new(cfg, checkpoint.var_builder(dtype, device))
    }

    pub fn config(&self) -> &Umt5Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `ids`: `[B, L]` token ids (u8/u32/i64); `mask`: optional `[B, L]`, nonzero = a real token.
    /// Returns `[B, L, dim]` in the weights' dtype. Rows of padded positions are computed (they
    /// attend to the real tokens) but meaningless; see [`zero_padding`].
    pub fn forward(&self, ids: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, l) = ids.dims2().map_err(|_| {
            bad_input(
                "ids",
                format!("expected [batch, len], got {:?}", ids.dims()),
            )
        })?;
        if b == 0 || l == 0 {
            return Err(bad_input("ids", format!("empty shape {:?}", ids.dims())));
        }
        let ids = self.checked_ids(ids)?;
        let mask_bias = match mask {
            Some(mask) => self.mask_bias(mask, (b, l))?,
            None => Tensor::zeros((b, 1, 1, l), DType::F32, &self.device)?,
        };
        let buckets = bucket_grid(l, &self.cfg, &self.device)?;
        let mut x = self.token_embedding.forward(&ids)?;
        for block in &self.blocks {
            x = block.forward(&x, &buckets, &mask_bias)?;
        }
        self.norm.forward(&x)
    }

    /// Wan's prompt embedding of one tokenized prompt: the encoder output of the valid tokens,
    /// zero rows after them, `[text_len, dim]`.
    pub fn encode_ids(&self, ids: &[u32], text_len: usize) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(bad_input(
                "ids",
                "no tokens (a tokenized prompt holds at least </s>)",
            ));
        }
        if ids.len() > text_len {
            return Err(bad_input(
                "ids",
                format!("{} tokens exceed text_len {text_len}", ids.len()),
            ));
        }
        let t = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let out = self.forward(&t, None)?.squeeze(0)?;
        pad_rows(&out, text_len)
    }

    fn checked_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let values: Vec<i64> = match ids.dtype() {
            DType::U8 | DType::U32 | DType::I64 => {
                ids.to_dtype(DType::I64)?.flatten_all()?.to_vec1()?
            }
            other => {
                return Err(bad_input(
                    "ids",
                    format!("token ids must be integers, got {other:?}"),
                ))
            }
        };
        let vocab = self.cfg.vocab_size as i64;
        if let Some((pos, id)) = values
            .iter()
            .enumerate()
            .find(|(_, &v)| v < 0 || v >= vocab)
        {
            return Err(bad_input(
                "ids",
                format!(
                    "token id {id} at flat position {pos} is outside the vocabulary 0..{vocab}"
                ),
            ));
        }
        ids.to_device(&self.device)?.to_dtype(DType::U32)
    }

    /// `[B, L]` mask -> `[B, 1, 1, L]` additive float32 bias: 0 for tokens, f32::MIN for padding
    /// (after softmax exactly zero weight, while a fully masked row stays finite).
    fn mask_bias(&self, mask: &Tensor, (b, l): (usize, usize)) -> Result<Tensor> {
        if mask.dims() != [b, l] {
            return Err(bad_input(
                "mask",
                format!("shape {:?} does not match ids [{b}, {l}]", mask.dims()),
            ));
        }
        let keep: Vec<f32> = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bias: Vec<f32> = keep
            .iter()
            .map(|&m| if m != 0.0 { 0.0 } else { f32::MIN })
            .collect();
        Tensor::from_vec(bias, (b, 1, 1, l), &self.device)
    }
}

/// `[n, dim]` -> `[text_len, dim]` with zero rows after the first `n`.
fn pad_rows(x: &Tensor, text_len: usize) -> Result<Tensor> {
    let (n, dim) = x.dims2()?;
    if n >= text_len {
        return x.narrow(0, 0, text_len);
    }
    let zeros = Tensor::zeros((text_len - n, dim), x.dtype(), x.device())?;
    Tensor::cat(&[x, &zeros], 0)
}

/// Wan's cut of a batch output: for each row, `len = count(mask != 0)` and rows `len..` are set
/// to zero. `hidden`: `[B, L, dim]`; `mask`: `[B, L]`.
pub fn zero_padding(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, l, _) = hidden.dims3()?;
    if mask.dims() != [b, l] {
        return Err(bad_input(
            "mask",
            format!(
                "shape {:?} does not match hidden {:?}",
                mask.dims(),
                hidden.dims()
            ),
        ));
    }
    let rows: Vec<Vec<f32>> = mask.to_dtype(DType::F32)?.to_vec2()?;
    let keep: Vec<f32> = rows
        .iter()
        .flat_map(|row| {
            let len = row.iter().filter(|&&m| m != 0.0).count();
            (0..l).map(move |i| if i < len { 1.0 } else { 0.0 })
        })
        .collect();
    let keep = Tensor::from_vec(keep, (b, l, 1), hidden.device())?.to_dtype(hidden.dtype())?;
    hidden.broadcast_mul(&keep)
}

/// The prompt text cleaning of Wan's tokenizer wrapper (`clean='whitespace'`): ftfy-style
/// repairs, HTML entities decoded twice, whitespace runs collapsed to one space, trimmed.
///
/// Of ftfy's repairs this keeps those that change what the umT5 tokenizer sees: terminal
/// escapes and control characters removed, curly quotes made straight. Ligatures, character
/// width and Unicode normalisation are left to the tokenizer's own NFKC normaliser; mojibake
/// repair (text decoded with the wrong codec) is not done.
pub fn clean_prompt(text: &str) -> String {
    let text = unescape_html(&unescape_html(&ftfy_subset(text)));
    let mut out = String::with_capacity(text.len());
    for word in text.split(is_python_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Python's `str.isspace` (what `\s` matches), close enough: Unicode White_Space plus the
/// information separators U+001C..U+001F.
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn ftfy_subset(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // ANSI terminal escape: ESC [ params final-letter
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
            '\u{201c}'..='\u{201f}' => out.push('"'),
            // control characters other than whitespace, byte-order marks, interlinear annotations
            '\u{0}'..='\u{8}'
            | '\u{b}'
            | '\u{e}'..='\u{1b}'
            | '\u{7f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffc}' => {}
            _ => out.push(c),
        }
    }
    out
}

/// HTML character references: numeric ones and the common named ones (others are kept as
/// written, like an unknown entity in Python's `html.unescape`).
fn unescape_html(text: &str) -> String {
    const NAMED: &[(&str, char)] = &[
        ("amp", '&'),
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
        ("nbsp", '\u{a0}'),
        ("ndash", '\u{2013}'),
        ("mdash", '\u{2014}'),
        ("hellip", '\u{2026}'),
        ("lsquo", '\u{2018}'),
        ("rsquo", '\u{2019}'),
        ("ldquo", '\u{201c}'),
        ("rdquo", '\u{201d}'),
        ("copy", '\u{a9}'),
        ("reg", '\u{ae}'),
        ("deg", '\u{b0}'),
        ("eacute", '\u{e9}'),
        ("egrave", '\u{e8}'),
        ("uuml", '\u{fc}'),
        ("ouml", '\u{f6}'),
        ("auml", '\u{e4}'),
        ("szlig", '\u{df}'),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp + 1..];
        let decoded = tail.find(';').filter(|&end| end <= 32).and_then(|end| {
            let name = &tail[..end];
            let c = if let Some(num) = name.strip_prefix('#') {
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => num.parse::<u32>().ok(),
                };
                code.map(|c| {
                    char::from_u32(c)
                        .filter(|&c| c != '\0')
                        .unwrap_or('\u{fffd}')
                })
            } else {
                NAMED.iter().find(|(n, _)| *n == name).map(|&(_, c)| c)
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(feature = "prompt-encoder")]
pub use tokenizer::{encode_prompt, Umt5Tokenizer};

#[cfg(feature = "prompt-encoder")]
mod tokenizer {
    use std::path::{Path, PathBuf};

    use candle_core::{Result, Tensor};
    use tokenizers::{PostProcessor, Tokenizer, TruncationDirection};

    use super::{clean_prompt, Umt5Encoder, Umt5Error};

    /// The umT5 SentencePiece tokenizer (`google/umt5-xxl/tokenizer.json`) as Wan uses it: text
    /// cleaned, `</s>` appended by the file's post-processor, truncated to `text_len` tokens.
    pub struct Umt5Tokenizer {
        inner: Tokenizer,
        origin: String,
    }

    impl Umt5Tokenizer {
        pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
            let path: PathBuf = path.as_ref().to_path_buf();
            let inner = Tokenizer::from_file(&path).map_err(|e| Umt5Error::Tokenizer {
                file: path.display().to_string(),
                reason: e.to_string(),
            })?;
            Self::from_tokenizer(inner, &path.display().to_string())
        }

        /// Wraps a tokenizer built in memory; `origin` names it in errors.
        pub fn from_tokenizer(mut inner: Tokenizer, origin: &str) -> Result<Self> {
            let fail = |reason: String| Umt5Error::Tokenizer {
                file: origin.to_string(),
                reason,
            };
            // Padding and truncation are ours (per call); the file's own settings would fight them.
            inner.with_padding(None);
            inner
                .with_truncation(None)
                .map_err(|e| fail(e.to_string()))?;
            Ok(Self {
                inner,
                origin: origin.to_string(),
            })
        }

        pub fn inner(&self) -> &Tokenizer {
            &self.inner
        }

        /// Token ids of the cleaned `text` with special tokens, at most `text_len` of them (the
        /// text is cut, the trailing `</s>` kept, as transformers' `truncation=True` does).
        pub fn encode(&self, text: &str, text_len: usize) -> Result<Vec<u32>> {
            let fail = |reason: String| Umt5Error::Tokenizer {
                file: self.origin.clone(),
                reason,
            };
            let added = self
                .inner
                .get_post_processor()
                .map_or(0, |p| p.added_tokens(false));
            if text_len <= added {
                return Err(Umt5Error::InvalidInput {
                    input: "text_len",
                    reason: format!(
                        "{text_len} leaves no room for text next to {added} special tokens"
                    ),
                }
                .into());
            }
            let mut encoding = self
                .inner
                .encode(clean_prompt(text).as_str(), false)
                .map_err(|e| fail(e.to_string()))?;
            encoding.truncate(text_len - added, 0, TruncationDirection::Right);
            let encoding = self
                .inner
                .post_process(encoding, None, true)
                .map_err(|e| fail(e.to_string()))?;
            Ok(encoding.get_ids().to_vec())
        }
    }

    /// The prompt embedding LiveTalk conditions on: `[text_len, dim]`, the encoder output of
    /// the prompt's tokens followed by zero rows (Wan's `WanTextEncoder` for one prompt).
    pub fn encode_prompt(
        tokenizer: &Umt5Tokenizer,
        encoder: &Umt5Encoder,
        text: &str,
        text_len: usize,
    ) -> Result<Tensor> {
        let ids = tokenizer.encode(text, text_len)?;
        encoder.encode_ids(&ids, text_len)
    }
}
