//! The LiveTalk causal DiT (`CausalWanModel`, KV-cache inference path): a Wan2.1 1.3B DiT with
//! image-latent conditioning (33 input channels) and audio tokens added to the residual stream of
//! the first half of the blocks.
//!
//! ```text
//! x[B,16,F,h,w] ++ y[B,17,F,h,w] -> Conv3d(1,2,2) patches -> tokens [B, F*(h/2)*(w/2), dim]
//! t[B,F] -> sinusoid(256, f64) -> time_embedding -> t_emb -> SiLU, Linear -> t_mod [B,F,6,dim]
//! context -> text_embedding (Linear, GELU tanh, Linear) -> cached cross-attention K/V per layer
//! for each block i: (audio row i-2 added before blocks 2..=L/2)
//!     x += gate_msa * SelfAttn(LN(x)*(1+scale_msa)+shift_msa)     (RoPE 3-axis, KV cache)
//!     x += CrossAttn(norm3(x), context)
//!     x += gate_mlp * FFN(LN(x)*(1+scale_mlp)+shift_mlp)
//! head: Linear(LN(x)*(1+scale)+shift), (shift, scale) = head.modulation + t_emb -> unpatchify
//! ```
//!
//! Key names are those of `GAIR/LiveTalk-1.3B-V0.1/model.safetensors` (no prefix). The audio
//! encoder part of that file (`audio_proj.*`, `audio_cond_projs.*`) is not used here: the forward
//! takes the projected audio rows (`audio_emb`, `[n_audio_layers*B, F, 1, 1, dim]`).

pub mod kv_cache;
pub mod rope;

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Shape, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

pub use kv_cache::{CachePlan, KvCache, KvCacheConfig, LayerKv};
pub use rope::{Rope3d, RopeTables};

use crate::schedule;

fn d_freq_dim() -> usize {
    256
}
fn d_in_dim() -> usize {
    33
}
fn d_out_dim() -> usize {
    16
}
fn d_eps() -> f64 {
    1e-6
}
fn d_patch() -> [usize; 3] {
    [1, 2, 2]
}
fn d_true() -> bool {
    true
}
fn d_theta() -> f64 {
    10000.0
}

/// DiT hyper-parameters (`dit.config.json`; unknown fields are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DitConfig {
    pub dim: usize,
    pub ffn_dim: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    pub text_dim: usize,
    #[serde(default = "d_freq_dim")]
    pub freq_dim: usize,
    #[serde(default = "d_in_dim")]
    pub in_dim: usize,
    #[serde(default = "d_out_dim")]
    pub out_dim: usize,
    #[serde(default = "d_eps")]
    pub eps: f64,
    #[serde(default = "d_patch")]
    pub patch_size: [usize; 3],
    #[serde(default = "d_true")]
    pub use_audio: bool,
    /// Defaults to `dim / num_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Channels of the frame / height / width RoPE groups; defaults to the reference split.
    #[serde(default)]
    pub rope_dims_f_h_w: Option<[usize; 3]>,
    #[serde(default = "d_theta")]
    pub rope_theta: f64,
    /// Blocks before which audio row `j` is added (row j before `audio_injection_layers[j]`);
    /// defaults to `2..=num_layers/2` like the reference.
    #[serde(default)]
    pub audio_injection_layers: Option<Vec<usize>>,
}

impl DitConfig {
    /// The deployed LiveTalk-1.3B configuration.
    pub fn livetalk_1_3b() -> Self {
        DitConfig {
            dim: 1536,
            ffn_dim: 8960,
            num_heads: 12,
            num_layers: 30,
            text_dim: 4096,
            freq_dim: 256,
            in_dim: 33,
            out_dim: 16,
            eps: 1e-6,
            patch_size: [1, 2, 2],
            use_audio: true,
            head_dim: None,
            rope_dims_f_h_w: None,
            rope_theta: 10000.0,
            audio_injection_layers: None,
        }
    }

    pub fn from_json_value(v: &serde_json::Value) -> Result<Self> {
        serde_json::from_value(v.clone()).map_err(|e| candle_core::Error::Msg(format!("dit config: {e}")))
    }

    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| candle_core::Error::Msg(format!("reading {}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| candle_core::Error::Msg(format!("parsing {}: {e}", path.display())))
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.dim / self.num_heads)
    }

    pub fn audio_layers(&self) -> Vec<usize> {
        if !self.use_audio {
            return vec![];
        }
        match &self.audio_injection_layers {
            Some(v) => v.clone(),
            None => (2..=self.num_layers / 2).collect(),
        }
    }

    /// Tokens per latent frame for a latent of `h x w`.
    pub fn frame_seq_length(&self, latent_h: usize, latent_w: usize) -> usize {
        (latent_h / self.patch_size[1]) * (latent_w / self.patch_size[2])
    }

    /// Number of parameters the DiT forward uses (without `audio_proj` / `audio_cond_projs`).
    pub fn num_params(&self) -> usize {
        let (d, f) = (self.dim, self.ffn_dim);
        let p: usize = self.patch_size.iter().product();
        let lin = |i: usize, o: usize| i * o + o;
        let block = 8 * lin(d, d) + 4 * d + 2 * d + lin(d, f) + lin(f, d) + 6 * d;
        lin(self.in_dim * p, d)
            + lin(self.text_dim, d)
            + lin(d, d)
            + lin(self.freq_dim, d)
            + lin(d, d)
            + lin(d, 6 * d)
            + self.num_layers * block
            + lin(d, self.out_dim * p)
            + 2 * d
    }
}

/// Matmul FLOPs (2 per multiply-add) of one DiT forward over `frames` latent frames of
/// `tokens_per_frame` tokens each, attending to `kv_tokens` cached tokens (including the block
/// itself) and `text_len` prompt tokens. Prompt K/V are cached, so the text embedding and the
/// cross-attention K/V projections are not counted; element-wise work is not counted.
pub fn flops_per_forward(
    cfg: &DitConfig,
    frames: usize,
    tokens_per_frame: usize,
    kv_tokens: usize,
    text_len: usize,
) -> f64 {
    let l = (frames * tokens_per_frame) as f64;
    let d = cfg.dim as f64;
    let p: usize = cfg.patch_size.iter().product();
    let mm = |m: f64, k: f64, n: f64| 2.0 * m * k * n;
    let fr = frames as f64;
    let mut total = mm(l, (cfg.in_dim * p) as f64, d); // patch embedding
    total += mm(fr, cfg.freq_dim as f64, d) + mm(fr, d, d) + mm(fr, d, 6.0 * d); // time
    let per_layer = mm(l, d, d) * 4.0 // self q k v o
        + mm(l, d, kv_tokens as f64) * 2.0 // self scores + weighted sum
        + mm(l, d, d) * 2.0 // cross q o
        + mm(l, d, text_len as f64) * 2.0 // cross attention
        + mm(l, d, cfg.ffn_dim as f64) * 2.0; // ffn
    total += per_layer * cfg.num_layers as f64;
    total += mm(l, d, (cfg.out_dim * p) as f64); // head
    total
}

/// LayerNorm over the last dim computed in float32 (two-pass), optional affine.
fn layer_norm(x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let dt = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let mut y = xc.broadcast_mul(&(var + eps)?.sqrt()?.recip()?)?;
    if let Some(w) = w {
        y = y.broadcast_mul(&w.to_dtype(DType::F32)?)?;
    }
    if let Some(b) = b {
        y = y.broadcast_add(&b.to_dtype(DType::F32)?)?;
    }
    y.to_dtype(dt)
}

/// RMSNorm over the full last dim (float32 statistics), times `w`.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    candle_nn::ops::rms_norm(&x.contiguous()?, w, eps as f32)
}

/// Softmax attention `softmax(q k^T / sqrt(d)) v` over `[B, H, L, D]` tensors (softmax in
/// float32); heads are processed in chunks to bound the score matrix size.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (_b, h, lq, d) = q.dims4()?;
    let lk = k.dim(2)?;
    let scale = 1.0 / (d as f64).sqrt();
    // at most ~256M score elements per chunk
    let per_head = lq * lk;
    let chunk = (256usize * 1024 * 1024 / per_head.max(1)).clamp(1, h);
    let run = |q: &Tensor, k: &Tensor, v: &Tensor| -> Result<Tensor> {
        let s = (q.matmul(&k.t()?)? * scale)?;
        let p = candle_nn::ops::softmax_last_dim(&s.to_dtype(DType::F32)?)?.to_dtype(v.dtype())?;
        p.matmul(v)
    };
    if chunk >= h {
        return run(q, k, v);
    }
    let mut outs = Vec::new();
    let mut s = 0;
    while s < h {
        let n = chunk.min(h - s);
        outs.push(run(&q.narrow(1, s, n)?, &k.narrow(1, s, n)?, &v.narrow(1, s, n)?)?);
        s += n;
    }
    Tensor::cat(&outs, 1)
}

/// How the self-attention rotates queries and keys: host-built cos/sin tables (portable), or
/// the fused RMSNorm+RoPE kernel reading a rotation table built on the device (CUDA, bf16).
enum RopeArg {
    Tables(RopeTables),
    #[cfg(feature = "cuda")]
    Fused(crate::cuda::fused::RopeTable),
}

impl RopeArg {
    /// Whether this forward runs the fused kernels (decided once, when the model built this).
    fn fused(&self) -> bool {
        !matches!(self, RopeArg::Tables(_))
    }
}

/// Whether the fused bf16 row kernels (LayerNorm+modulation, RMSNorm+RoPE, gated residual) run
/// for `x`: CUDA, bf16, and not switched off with `LIVETALK_FUSED=0`.
fn fused_rows(x: &Tensor) -> bool {
    #[cfg(feature = "cuda")]
    {
        use crate::cuda::fused;
        x.device().is_cuda() && x.dtype() == DType::BF16 && fused::enabled() && fused::supports_cols(x.dim(D::Minus1).unwrap_or(0))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = x;
        false
    }
}

/// Attention of queries `q` `[B, L, H*D]` over keys/values `[B, H, Lk, D]` (the cache layout),
/// returning `[B, L, H*D]`. On CUDA in bf16/f16 it is one fused cuDNN kernel reading the
/// projection and cache layouts in place; elsewhere the portable [`attention`].
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, num_heads: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if q.device().is_cuda() && fused_attention_enabled(q.dtype()) {
        let (b, l, c) = q.dims3()?;
        let q4 = q.reshape((b, l, num_heads, c / num_heads))?;
        match crate::cuda::sdpa::attention_bshd(&q4, k, v) {
            Ok(out) => return out.reshape((b, l, c)),
            Err(e) => {
                tracing::warn!("attention: fused cuDNN path failed, using the portable path from now on: {e}");
                crate::cuda::sdpa::disable(format!("fused path failed: {e}"));
            }
        }
    }
    from_heads(&attention(&to_heads(q, num_heads)?, k, v)?)
}

/// `Ok` when [`attend`] runs the fused kernel for CUDA tensors of `dtype`, else why not.
pub fn fused_attention_status(dtype: DType) -> std::result::Result<(), String> {
    #[cfg(feature = "cuda")]
    return match crate::cuda::sdpa::unavailable_reason(dtype) {
        None => Ok(()),
        Some(why) => Err(why),
    };
    #[cfg(not(feature = "cuda"))]
    {
        let _ = dtype;
        Err("built without the cuda feature".into())
    }
}

/// Whether the fused path is usable for `dtype`; says once why not.
#[cfg(feature = "cuda")]
fn fused_attention_enabled(dtype: DType) -> bool {
    static WARNED: std::sync::Once = std::sync::Once::new();
    match crate::cuda::sdpa::unavailable_reason(dtype) {
        None => true,
        Some(why) => {
            WARNED.call_once(|| tracing::info!("attention: portable path ({why})"));
            false
        }
    }
}

/// `[B, L, H*D]` -> `[B, H, L, D]` (contiguous).
fn to_heads(x: &Tensor, h: usize) -> Result<Tensor> {
    let (b, l, c) = x.dims3()?;
    x.reshape((b, l, h, c / h))?.transpose(1, 2)?.contiguous()
}

/// `[B, H, L, D]` -> `[B, L, H*D]`.
fn from_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, l, d) = x.dims4()?;
    x.transpose(1, 2)?.contiguous()?.reshape((b, l, h * d))
}

/// `x W^T` of a linear layer without its bias (a fused kernel adds it), batched like
/// `Linear::forward`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn matmul_no_bias(lin: &Linear, x: &Tensor) -> Result<Tensor> {
    let w = match *x.dims() {
        [b1, b2, _, _] => lin.weight().broadcast_left((b1, b2))?.t()?,
        [b, _, _] => lin.weight().broadcast_left(b)?.t()?,
        _ => lin.weight().t()?,
    };
    x.matmul(&w)
}

fn linear(vb: &VarBuilder, in_dim: usize, out_dim: usize, name: &str) -> Result<Linear> {
    candle_nn::linear(in_dim, out_dim, vb.pp(name))
}

/// The q/k/v/o projections with q/k RMSNorm over the full dim, shared by self- and
/// cross-attention (same names and shapes in the checkpoint).
struct Projections {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm_q: Tensor,
    norm_k: Tensor,
    num_heads: usize,
    eps: f64,
}

impl Projections {
    fn new(cfg: &DitConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        Ok(Projections {
            q: linear(&vb, d, d, "q")?,
            k: linear(&vb, d, d, "k")?,
            v: linear(&vb, d, d, "v")?,
            o: linear(&vb, d, d, "o")?,
            norm_q: vb.get(d, "norm_q.weight")?,
            norm_k: vb.get(d, "norm_k.weight")?,
            num_heads: cfg.num_heads,
            eps: cfg.eps,
        })
    }

    /// Normalised queries `[B, L, dim]`.
    fn query(&self, x: &Tensor) -> Result<Tensor> {
        rms_norm(&self.q.forward(x)?, &self.norm_q, self.eps)
    }

    /// Normalised keys and values `[B, L, dim]`.
    fn key_value(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((rms_norm(&self.k.forward(x)?, &self.norm_k, self.eps)?, self.v.forward(x)?))
    }

    /// The output projection, with or without its bias.
    fn project_out(&self, heads: &Tensor, with_bias: bool) -> Result<Tensor> {
        if with_bias {
            self.o.forward(heads)
        } else {
            matmul_no_bias(&self.o, heads)
        }
    }

    /// `rope(RMSNorm(lin(x)) * w)`: normalised and rotated queries or keys `[B, L, dim]`.
    fn rotated(&self, lin: &Linear, w: &Tensor, x: &Tensor, rope: &RopeArg) -> Result<Tensor> {
        match rope {
            RopeArg::Tables(t) => t.apply(&rms_norm(&lin.forward(x)?, w, self.eps)?, self.num_heads),
            #[cfg(feature = "cuda")]
            RopeArg::Fused(g) => crate::cuda::fused::rms_norm_rope(&matmul_no_bias(lin, x)?, lin.bias(), w, self.eps, Some(g)),
        }
    }

}

struct SelfAttention(Projections);

impl SelfAttention {
    fn new(cfg: &DitConfig, vb: VarBuilder) -> Result<Self> {
        Projections::new(cfg, vb).map(SelfAttention)
    }

    fn forward(
        &self,
        x: &Tensor,
        rope: &RopeArg,
        cache: &mut LayerKv,
        plan: &CachePlan,
        trace_kv: Option<&mut (Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let p = &self.0;
        let q = p.rotated(&p.q, &p.norm_q, x, rope)?;
        let k = p.rotated(&p.k, &p.norm_k, x, rope)?;
        #[cfg(feature = "cuda")]
        if matches!(rope, RopeArg::Fused(_)) && trace_kv.is_none() {
            // one kernel: v's bias, the head transpose and both cache writes
            cache.shift(plan)?;
            crate::cuda::fused::kv_write(&k, &matmul_no_bias(&p.v, x)?, p.v.bias(), &cache.k, &cache.v, plan.write_start)?;
            let (kw, vw) = cache.window(plan)?;
            return p.project_out(&attend(&q, &kw, &vw, p.num_heads)?, false);
        }
        let v = p.v.forward(x)?;
        if let Some(t) = trace_kv {
            *t = (k.clone(), v.clone());
        }
        let k = to_heads(&k, p.num_heads)?;
        let v = to_heads(&v, p.num_heads)?;
        cache.write(plan, &k, &v)?;
        let (kw, vw) = cache.window(plan)?;
        p.project_out(&attend(&q, &kw, &vw, p.num_heads)?, matches!(rope, RopeArg::Tables(_)))
    }
}

struct CrossAttention(Projections);

impl CrossAttention {
    fn new(cfg: &DitConfig, vb: VarBuilder) -> Result<Self> {
        Projections::new(cfg, vb).map(CrossAttention)
    }

    /// The prompt's K/V `[B, H, Lc, D]` (cached per prompt).
    fn context_kv(&self, ctx: &Tensor) -> Result<(Tensor, Tensor)> {
        let p = &self.0;
        let (k, v) = p.key_value(ctx)?;
        Ok((to_heads(&k, p.num_heads)?, to_heads(&v, p.num_heads)?))
    }

    /// The attention output; without the output bias when `with_bias` is false (the fused
    /// residual adds it).
    fn forward(&self, x: &Tensor, kv: &(Tensor, Tensor), with_bias: bool) -> Result<Tensor> {
        let p = &self.0;
        #[cfg(feature = "cuda")]
        if !with_bias {
            let q = crate::cuda::fused::rms_norm_rope(&matmul_no_bias(&p.q, x)?, p.q.bias(), &p.norm_q, p.eps, None)?;
            return p.project_out(&attend(&q, &kv.0, &kv.1, p.num_heads)?, false);
        }
        p.project_out(&attend(&p.query(x)?, &kv.0, &kv.1, p.num_heads)?, with_bias)
    }
}

struct DitBlock {
    self_attn: SelfAttention,
    cross_attn: CrossAttention,
    norm3_w: Tensor,
    norm3_b: Tensor,
    ffn0: Linear,
    ffn2: Linear,
    eps: f64,
}

/// Chunk `i` of a `[B, F, n, dim]` modulation tensor: `[B, F, 1, dim]`.
fn chunk(e: &Tensor, i: usize) -> Result<Tensor> {
    e.narrow(2, i, 1)
}

/// `x[B, L, dim]` viewed per frame `[B, F, S, dim]`, `* (1 + scale) + shift`, back to `[B, L, dim]`.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor, frames: usize) -> Result<Tensor> {
    let (b, l, d) = x.dims3()?;
    let xf = x.reshape((b, frames, l / frames, d))?;
    xf.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)?.reshape((b, l, d))
}

/// `LayerNorm(x) * (1 + scale) + shift` per frame (one kernel when `fused`).
fn norm_modulate(x: &Tensor, shift: &Tensor, scale: &Tensor, frames: usize, eps: f64, fused: bool) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if fused {
        return crate::cuda::fused::layer_norm_modulate(x, None, Some((shift, scale)), eps);
    }
    let _ = fused;
    modulate(&layer_norm(x, None, None, eps)?, shift, scale, frames)
}

/// `x[B, L, dim] + row[B, F, 1, dim]`, the row of each token's frame.
fn add_per_frame(x: &Tensor, row: &Tensor) -> Result<Tensor> {
    let (b, l, d) = x.dims3()?;
    let frames = row.dim(1)?;
    x.reshape((b, frames, l / frames, d))?.broadcast_add(row)?.reshape((b, l, d))
}

/// `x + y * gate` with per-frame gate `[B, F, 1, dim]`.
fn gated_add(x: &Tensor, y: &Tensor, gate: &Tensor, frames: usize) -> Result<Tensor> {
    let (b, l, d) = y.dims3()?;
    let yg = y.reshape((b, frames, l / frames, d))?.broadcast_mul(gate)?.reshape((b, l, d))?;
    x + yg
}

impl DitBlock {
    fn new(cfg: &DitConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        Ok(DitBlock {
            self_attn: SelfAttention::new(cfg, vb.pp("self_attn"))?,
            cross_attn: CrossAttention::new(cfg, vb.pp("cross_attn"))?,
            norm3_w: vb.get(d, "norm3.weight")?,
            norm3_b: vb.get(d, "norm3.bias")?,
            ffn0: linear(&vb, d, cfg.ffn_dim, "ffn.0")?,
            ffn2: linear(&vb, cfg.ffn_dim, d, "ffn.2")?,
            eps: cfg.eps,
        })
    }

    /// One block on the residual stream `x`; `e` `[B, F, 6, dim]` is this block's modulation
    /// plus the time projection; `then_add` `[B, F, 1, dim]` is added to the result (the next
    /// layer's audio row, fused into the last residual).
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        e: &Tensor,
        rope: &RopeArg,
        context_kv: &(Tensor, Tensor),
        cache: &mut LayerKv,
        plan: &CachePlan,
        trace_kv: Option<&mut (Tensor, Tensor)>,
        then_add: Option<&Tensor>,
    ) -> Result<Tensor> {
        let frames = e.dim(1)?;
        let (shift_msa, scale_msa, gate_msa) = (chunk(e, 0)?, chunk(e, 1)?, chunk(e, 2)?);
        let (shift_mlp, scale_mlp, gate_mlp) = (chunk(e, 3)?, chunk(e, 4)?, chunk(e, 5)?);

        let fused = rope.fused();
        let norm_mod = |x: &Tensor, shift: &Tensor, scale: &Tensor| norm_modulate(x, shift, scale, frames, self.eps, fused);
        // fused: `y` comes without its projection bias, added here
        let residual = |x: &Tensor, y: &Tensor, bias: Option<&Tensor>, gate: &Tensor, add: Option<&Tensor>| -> Result<Tensor> {
            #[cfg(feature = "cuda")]
            if fused {
                return crate::cuda::fused::gated_residual(x, y, bias, Some(gate), add);
            }
            let _ = bias;
            let out = gated_add(x, y, gate, frames)?;
            match add {
                Some(a) => add_per_frame(&out, a),
                None => Ok(out),
            }
        };

        let h = norm_mod(x, &shift_msa, &scale_msa)?;
        let y = self.self_attn.forward(&h, rope, cache, plan, trace_kv)?;
        let x = residual(x, &y, self.self_attn.0.o.bias(), &gate_msa, None)?;

        let h = if fused {
            #[cfg(feature = "cuda")]
            {
                crate::cuda::fused::layer_norm_modulate(&x, Some((&self.norm3_w, &self.norm3_b)), None, self.eps)?
            }
            #[cfg(not(feature = "cuda"))]
            unreachable!()
        } else {
            layer_norm(&x, Some(&self.norm3_w), Some(&self.norm3_b), self.eps)?
        };
        let y = self.cross_attn.forward(&h, context_kv, !fused)?;
        let x = if fused {
            #[cfg(feature = "cuda")]
            {
                crate::cuda::fused::gated_residual(&x, &y, self.cross_attn.0.o.bias(), None, None)?
            }
            #[cfg(not(feature = "cuda"))]
            unreachable!()
        } else {
            (&x + y)?
        };

        let h = norm_mod(&x, &shift_mlp, &scale_mlp)?;
        let y = if fused {
            #[cfg(feature = "cuda")]
            {
                // bias and GELU in the matrix product's epilogue where cuBLASLt runs it
                let epilogue = match self.ffn0.bias() {
                    Some(b) => crate::cuda::lt_matmul::linear_bias_gelu(&h, self.ffn0.weight(), b)?,
                    None => None,
                };
                let hidden = match epilogue {
                    Some(hidden) => hidden,
                    None => crate::cuda::fused::bias_gelu(&matmul_no_bias(&self.ffn0, &h)?, self.ffn0.bias())?,
                };
                matmul_no_bias(&self.ffn2, &hidden)?
            }
            #[cfg(not(feature = "cuda"))]
            unreachable!()
        } else {
            self.ffn2.forward(&self.ffn0.forward(&h)?.gelu()?)?
        };
        residual(&x, &y, self.ffn2.bias(), &gate_mlp, then_add)
    }
}

/// The prompt, embedded once: `text_embedding(context)` and every layer's cross-attention K/V.
#[derive(Debug, Clone)]
pub struct PromptCache {
    /// `[B, Lc, dim]`
    pub context_emb: Tensor,
    /// Per layer `(k, v)`, `[B, H, Lc, D]`.
    pub kv: Vec<(Tensor, Tensor)>,
}

/// Optional capture of intermediate values of one forward (for parity tests / debugging).
#[derive(Debug, Default, Clone)]
pub struct DitTrace {
    /// `[B, L, dim]` patch-embedding tokens.
    pub patch_embed: Option<Tensor>,
    /// `[B*F, dim]`
    pub t_emb: Option<Tensor>,
    /// `[B*F, 6*dim]`
    pub t_mod: Option<Tensor>,
    /// Residual stream after each block, `[B, L, dim]`.
    pub block_out: Vec<Tensor>,
    /// Layer-0 self-attention keys (rotated) and values written this forward, `[B, L, dim]`.
    pub layer0_kv: Option<(Tensor, Tensor)>,
    /// Head output before unpatchify, `[B, F, S, out*prod(patch)]`.
    pub head_out: Option<Tensor>,
}

/// The causal DiT.
pub struct CausalWanModel {
    cfg: DitConfig,
    patch_w: Tensor, // [dim, in_dim*prod(patch)]
    patch_b: Tensor,
    text0: Linear,
    text2: Linear,
    time0: Linear,
    time2: Linear,
    time_proj: Linear,
    blocks: Vec<DitBlock>,
    /// Every block's modulation, `[layers, 1, 1, 6, dim]`: one add per forward gives them all.
    modulations: Tensor,
    head: Linear,
    head_modulation: Tensor, // [1, 1, 2, dim]
    rope: Rope3d,
    /// `rope.pair_freqs()` on the model's device (float64), for the fused RoPE kernel.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    rope_freqs: Tensor,
    audio_layers: Vec<usize>,
    dtype: DType,
    device: Device,
}

/// Random initialisation (for benchmarks without weight files): weights ~ N(0, 1/fan_in),
/// biases small, norm gains 1, modulation ~ N(0, 1/dim).
pub struct RandomInit;

impl candle_nn::var_builder::SimpleBackend for RandomInit {
    fn get(&self, s: Shape, name: &str, _h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let dims = s.dims().to_vec();
        let t = if name.ends_with("norm_q.weight") || name.ends_with("norm_k.weight") || name.ends_with("norm3.weight") {
            Tensor::ones(s, DType::F32, dev)?
        } else if name.ends_with("modulation") {
            let d = *dims.last().unwrap_or(&1);
            Tensor::randn(0f32, (1.0 / (d as f64).sqrt()) as f32, s, dev)?
        } else if name.ends_with("bias") {
            Tensor::randn(0f32, 0.02f32, s, dev)?
        } else {
            let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
            Tensor::randn(0f32, (1.0 / (fan_in as f64).sqrt()) as f32, s, dev)?
        };
        t.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("random init: no shape for {name}")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

impl CausalWanModel {
    /// Builds the model from `vb` (checkpoint key names, no prefix); tensors are converted to
    /// `vb.dtype()` on load.
    pub fn new(cfg: &DitConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        let p: usize = cfg.patch_size.iter().product();
        let [pt, ph, pw] = cfg.patch_size;
        let patch_w = vb.get((d, cfg.in_dim, pt, ph, pw), "patch_embedding.weight")?.reshape((d, cfg.in_dim * p))?;
        let patch_b = vb.get(d, "patch_embedding.bias")?;
        let blocks = (0..cfg.num_layers)
            .map(|i| DitBlock::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let head_dim = cfg.head_dim();
        if head_dim * cfg.num_heads != d {
            candle_core::bail!("dit: num_heads {} * head_dim {head_dim} != dim {d}", cfg.num_heads);
        }
        let rope = Rope3d::new(head_dim, cfg.rope_dims_f_h_w, cfg.rope_theta)?;
        let modulations = (0..cfg.num_layers)
            .map(|i| vb.get((1, 6, d), &format!("blocks.{i}.modulation")))
            .collect::<Result<Vec<_>>>()?;
        let modulations = Tensor::stack(&modulations, 0)?.unsqueeze(1)?;
        Ok(CausalWanModel {
            cfg: cfg.clone(),
            patch_w,
            patch_b,
            text0: linear(&vb, cfg.text_dim, d, "text_embedding.0")?,
            text2: linear(&vb, d, d, "text_embedding.2")?,
            time0: linear(&vb, cfg.freq_dim, d, "time_embedding.0")?,
            time2: linear(&vb, d, d, "time_embedding.2")?,
            time_proj: linear(&vb, d, 6 * d, "time_projection.1")?,
            blocks,
            modulations,
            head: linear(&vb, d, cfg.out_dim * p, "head.head")?,
            head_modulation: vb.get((1, 2, d), "head.modulation")?.unsqueeze(1)?,
            rope_freqs: Tensor::new(rope.pair_freqs(), vb.device())?,
            rope,
            audio_layers: cfg.audio_layers(),
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// Loads the checkpoint file (`model.safetensors`, one file), converting to `dtype` on
    /// `device`, and checks it against the published layout ([`crate::layouts::dit`]); errors
    /// name the file and the tensor.
    pub fn load<P: AsRef<Path>>(cfg: &DitConfig, files: &[P], dtype: DType, device: &Device) -> Result<Self> {
        let [file] = files else {
            candle_core::bail!("dit: expected one checkpoint file, got {}", files.len())
        };
        crate::layouts::load_checked(file.as_ref(), |_| crate::layouts::dit(cfg), |ck| {
            Self::new(cfg, ck.var_builder(dtype, device))
        })
    }

    /// A model with random weights (same shapes as a checkpoint), e.g. to benchmark the full-size
    /// model without files. `seed` seeds the device RNG where the device supports it.
    pub fn random(cfg: &DitConfig, dtype: DType, device: &Device, seed: u64) -> Result<Self> {
        let _ = device.set_seed(seed);
        let vb = VarBuilder::from_backend(Box::new(RandomInit), dtype, device.clone());
        Self::new(cfg, vb)
    }

    pub fn config(&self) -> &DitConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn rope(&self) -> &Rope3d {
        &self.rope
    }

    /// RoPE is computed in float64 (the reference precision) for float32/64 models and in float32
    /// for half-precision models (the result is rounded to bf16/f16 anyway).
    fn rope_dtype(&self) -> DType {
        match self.dtype {
            DType::F32 | DType::F64 => DType::F64,
            _ => DType::F32,
        }
    }

    /// A preallocated KV cache for this model.
    pub fn new_kv_cache(&self, config: KvCacheConfig) -> Result<KvCache> {
        KvCache::new(config, self.cfg.num_layers, self.cfg.num_heads, self.cfg.head_dim(), self.dtype, &self.device)
    }

    /// Embeds the prompt (`[B, Lc, text_dim]`, padding rows zero) and precomputes every layer's
    /// cross-attention K/V.
    pub fn prepare_prompt(&self, context: &Tensor) -> Result<PromptCache> {
        let ctx = context.to_device(&self.device)?.to_dtype(self.dtype)?;
        let context_emb = self.text2.forward(&self.text0.forward(&ctx)?.gelu()?)?;
        let kv = self
            .blocks
            .iter()
            .map(|b| b.cross_attn.context_kv(&context_emb))
            .collect::<Result<Vec<_>>>()?;
        Ok(PromptCache { context_emb, kv })
    }

    /// `time_embedding(sinusoid(t))` `[B*F, dim]` for `timestep` `[B, F]` (float32 values; the
    /// sinusoid is computed in float64 and rounded to float32).
    pub fn time_embedding(&self, timestep: &Tensor) -> Result<Tensor> {
        let t = timestep.flatten_all()?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let emb = schedule::sinusoidal_embedding(self.cfg.freq_dim, &t)?
            .to_dtype(self.dtype)?
            .to_device(&self.device)?;
        self.time2.forward(&self.time0.forward(&emb)?.silu()?)
    }

    /// Patch embedding: `[B, C, F, H, W]` -> tokens `[B, F'*H'*W', dim]` and the grid (F', H', W').
    pub fn patch_embed(&self, x: &Tensor) -> Result<(Tensor, (usize, usize, usize))> {
        let (b, c, f, h, w) = x.dims5()?;
        let [pt, ph, pw] = self.cfg.patch_size;
        let (gf, gh, gw) = (f / pt, h / ph, w / pw);
        let x = x
            .reshape(&[b, c, gf, pt, gh, ph, gw, pw][..])?
            .permute([0, 2, 4, 6, 1, 3, 5, 7])?
            .contiguous()?
            .reshape((b, gf * gh * gw, c * pt * ph * pw))?;
        let y = x.broadcast_matmul(&self.patch_w.t()?)?.broadcast_add(&self.patch_b)?;
        Ok((y, (gf, gh, gw)))
    }

    /// `[B, L, out*prod(patch)]` -> `[B, out, F, H, W]`.
    fn unpatchify(&self, x: &Tensor, grid: (usize, usize, usize)) -> Result<Tensor> {
        let (b, _, _) = x.dims3()?;
        let (gf, gh, gw) = grid;
        let [pt, ph, pw] = self.cfg.patch_size;
        let c = self.cfg.out_dim;
        x.reshape(&[b, gf, gh, gw, pt, ph, pw, c][..])?
            .permute([0, 7, 1, 4, 2, 5, 3, 6])?
            .contiguous()?
            .reshape((b, c, gf * pt, gh * ph, gw * pw))
    }

    /// One forward of the KV-cache path.
    ///
    /// * `x` `[B, 16, F, h, w]` noisy latent, `y` `[B, 17, F, h, w]` conditioning (reference latent
    ///   + mask), concatenated on channels;
    /// * `timestep` `[B, F]` float32 (per-frame t);
    /// * `audio_emb` `[n_audio_layers*B, F, 1, 1, dim]` (projected audio rows), or `None`;
    /// * `start_frame`: absolute latent-frame index of the first frame (RoPE position and cache
    ///   slot, `current_start = start_frame * frame_seq_length`).
    ///
    /// Writes this block's K/V into `cache` and returns the flow prediction `[B, 16, F, h, w]` in the
    /// model dtype.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &Tensor,
        y: &Tensor,
        timestep: &Tensor,
        audio_emb: Option<&Tensor>,
        prompt: &PromptCache,
        cache: &mut KvCache,
        start_frame: usize,
        mut trace: Option<&mut DitTrace>,
    ) -> Result<Tensor> {
        let dev = &self.device;
        let x = x.to_device(dev)?.to_dtype(self.dtype)?;
        let y = y.to_device(dev)?.to_dtype(self.dtype)?;
        let xin = Tensor::cat(&[&x, &y], 1)?;
        let (mut h, grid) = self.patch_embed(&xin)?;
        let (b, l, dim) = h.dims3()?;
        let (gf, gh, gw) = grid;
        let frame_seqlen = gh * gw;
        let (tb, tf) = timestep.dims2()?;
        if tb != b || tf * frame_seqlen != l {
            candle_core::bail!("dit: timestep {:?} does not match {b} x {gf} frames", timestep.dims());
        }
        if let Some(t) = trace.as_deref_mut() {
            t.patch_embed = Some(h.clone());
        }

        let t_emb = self.time_embedding(timestep)?; // [B*F, dim]
        let t_mod = self.time_proj.forward(&t_emb.silu()?)?; // [B*F, 6*dim]
        if let Some(t) = trace.as_deref_mut() {
            t.t_emb = Some(t_emb.clone());
            t.t_mod = Some(t_mod.clone());
        }
        let t_mod = t_mod.reshape((b, tf, 6, dim))?;

        let rope = if fused_rows(&h) {
            #[cfg(feature = "cuda")]
            {
                let (pairs, hd) = (self.rope.group_pairs(), self.rope.head_dim());
                RopeArg::Fused(crate::cuda::fused::rope_table(&self.rope_freqs, pairs, (gf, gh, gw), start_frame, hd)?)
            }
            #[cfg(not(feature = "cuda"))]
            unreachable!()
        } else {
            RopeArg::Tables(self.rope.tables(start_frame, gf, gh, gw, self.rope_dtype(), dev)?)
        };
        if cache.config.frame_seq_length != frame_seqlen {
            candle_core::bail!(
                "dit: cache built for {} tokens per frame, input has {frame_seqlen}",
                cache.config.frame_seq_length
            );
        }
        let plan = cache.plan(start_frame * frame_seqlen, l)?;

        // audio rows: [n*B, F, 1, 1, dim] -> [B, n, F, 1, dim]
        let audio = match audio_emb {
            Some(a) if !self.audio_layers.is_empty() => {
                let n = a.dim(0)? / b;
                let fa = a.dim(1)?;
                if fa != tf {
                    candle_core::bail!("dit: audio_emb has {fa} frames, x has {tf}");
                }
                if n < self.audio_layers.len() {
                    candle_core::bail!("dit: audio_emb has {n} rows, {} needed", self.audio_layers.len());
                }
                Some(a.to_device(dev)?.to_dtype(self.dtype)?.reshape((b, n, tf, 1, dim))?)
            }
            _ => None,
        };

        // every block's modulation + time projection: [layers, B, F, 6, dim]
        let e_all = self.modulations.broadcast_add(&t_mod.unsqueeze(0)?)?;
        // layer i's audio row [B, F, 1, dim], added to the residual stream before block i
        let audio_row = |i: usize| -> Result<Option<Tensor>> {
            match (&audio, self.audio_layers.iter().position(|&li| li == i)) {
                (Some(a), Some(j)) => Ok(Some(a.narrow(1, j, 1)?.squeeze(1)?)),
                _ => Ok(None),
            }
        };
        // fused: block i-1's last residual adds it (not when tracing: the trace keeps block outputs
        // as the reference computes them)
        let fuse_audio = rope.fused() && trace.is_none();
        let mut added_by_previous = false;
        for (i, block) in self.blocks.iter().enumerate() {
            if !added_by_previous {
                if let Some(row) = audio_row(i)? {
                    h = add_per_frame(&h, &row)?;
                }
            }
            let next_row = if fuse_audio { audio_row(i + 1)? } else { None };
            added_by_previous = next_row.is_some();
            let mut kv_trace = (i == 0 && trace.is_some()).then(|| (h.clone(), h.clone()));
            let e = e_all.get(i)?;
            h = block.forward(&h, &e, &rope, &prompt.kv[i], &mut cache.layers[i], &plan, kv_trace.as_mut(), next_row.as_ref())?;
            if let Some(t) = trace.as_deref_mut() {
                if let Some(kv) = kv_trace {
                    t.layer0_kv = Some(kv);
                }
                t.block_out.push(h.clone());
            }
        }
        cache.commit(&plan);

        // head
        let e = self.head_modulation.broadcast_add(&t_emb.reshape((b, tf, 1, dim))?)?; // [B,F,2,dim]
        let (shift, scale) = (chunk(&e, 0)?, chunk(&e, 1)?);
        let hn = norm_modulate(&h, &shift, &scale, tf, self.cfg.eps, rope.fused())?.reshape((b, tf, frame_seqlen, dim))?;
        let out = self.head.forward(&hn)?; // [B, F, S, out*p]
        if let Some(t) = trace {
            t.head_out = Some(out.clone());
        }
        let out = out.reshape((b, l, out.dim(3)?))?;
        self.unpatchify(&out, grid)
    }
}
