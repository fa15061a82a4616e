//! Self-attention KV cache of the causal DiT: fixed-capacity per-layer buffers with an identity
//! sink and a rolling window, updated exactly like the reference `CausalSelfAttention`.
//!
//! Capacity = `local_attn_size * frame_seq_length` tokens (32760 when `local_attn_size == -1`).
//! Keys are stored already RoPE-rotated. A forward over `n` new tokens that start at absolute token
//! `current_start` (= frame index * frame_seq_length) either rewrites the block's own slot (same
//! block again: denoising steps and the t=0 refresh) or, when the cache would overflow, shifts the
//! tokens after the first `sink_size` frames left by the overflow (the oldest non-sink tokens are
//! dropped) and appends the block. Sink keys keep the positions they were rotated with, queries use
//! absolute positions. Attention spans `[max(0, local_end - max_attention_size), local_end)`, i.e.
//! the whole filled cache including the current block (block-causal).
//!
//! Once the cache is full, the window after the sink is a ring: a new block overwrites the
//! slots of the tokens it evicts instead of shifting the window left (9.4 MB per layer, key and
//! value, per block at 512x512). Attention sees every slot and is indifferent to their order
//! (keys carry their positions in their rotation), so the result is the reference's. The ring
//! runs when the window is a whole number of blocks and attention spans the whole cache (the
//! deployed settings); otherwise the reference's shift runs. [`KvCache::keys`] returns tokens
//! in the reference's (chronological) order either way.

use candle_core::{DType, Device, Result, Tensor};

/// Size of the cache used by the reference when there is no local window.
pub const UNLIMITED_CACHE_TOKENS: usize = 32760;

/// Sizes of a KV cache (`local_attn_size` / `sink_size` in latent frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCacheConfig {
    /// Window in latent frames; -1 = unlimited (32760 tokens).
    pub local_attn_size: i64,
    /// Identity-sink frames kept at the front of the cache.
    pub sink_size: usize,
    /// DiT tokens per latent frame ((h/2)*(w/2)).
    pub frame_seq_length: usize,
    pub batch: usize,
}

impl KvCacheConfig {
    pub fn capacity_tokens(&self) -> usize {
        if self.local_attn_size < 0 {
            UNLIMITED_CACHE_TOKENS
        } else {
            self.local_attn_size as usize * self.frame_seq_length
        }
    }

    pub fn sink_tokens(&self) -> usize {
        self.sink_size * self.frame_seq_length
    }

    /// The reference's `max_attention_size` (note: `local_attn_size * 1024`, a constant of the
    /// 512x512 deployment, not `frame_seq_length`).
    pub fn max_attention_size(&self) -> usize {
        if self.local_attn_size < 0 {
            UNLIMITED_CACHE_TOKENS
        } else {
            self.local_attn_size as usize * 1024
        }
    }
}

/// What one forward does to every layer's cache (the same for all layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePlan {
    /// `(src_start, dst_start, len)`: tokens moved left before writing (eviction).
    pub shift: Option<(usize, usize, usize)>,
    /// First slot written with the new keys/values.
    pub write_start: usize,
    pub num_new: usize,
    /// Attention reads `[attend_start, local_end)`.
    pub attend_start: usize,
    pub local_end: usize,
    pub global_end: usize,
    /// Where the window's oldest token is after this forward, counted from the sink's end.
    pub ring_start: usize,
}

/// A contiguous copy that does not share `t`'s storage (slice_set refuses overlapping sources).
fn detached(t: &Tensor) -> Result<Tensor> {
    if t.is_contiguous() {
        t.copy()
    } else {
        t.contiguous()
    }
}

/// One layer's buffers `[B, num_heads, capacity, head_dim]`.
#[derive(Debug, Clone)]
pub struct LayerKv {
    pub k: Tensor,
    pub v: Tensor,
}

impl LayerKv {
    /// Applies `plan`'s shift and writes `k_new`/`v_new` (`[B, H, n, D]`).
    pub fn write(&mut self, plan: &CachePlan, k_new: &Tensor, v_new: &Tensor) -> Result<()> {
        self.shift(plan)?;
        let k_new = k_new.to_dtype(self.k.dtype())?.contiguous()?;
        let v_new = v_new.to_dtype(self.v.dtype())?.contiguous()?;
        self.k.slice_set(&k_new, 2, plan.write_start)?;
        self.v.slice_set(&v_new, 2, plan.write_start)?;
        Ok(())
    }

    /// Moves the tokens `plan` keeps left over the evicted ones (once per block).
    pub fn shift(&mut self, plan: &CachePlan) -> Result<()> {
        if let Some((src, dst, len)) = plan.shift {
            if len > 0 {
                let ks = detached(&self.k.narrow(2, src, len)?)?;
                let vs = detached(&self.v.narrow(2, src, len)?)?;
                self.k.slice_set(&ks, 2, dst)?;
                self.v.slice_set(&vs, 2, dst)?;
            }
        }
        Ok(())
    }

    /// Keys / values that attention reads: `[B, H, local_end - attend_start, D]` (views).
    pub fn window(&self, plan: &CachePlan) -> Result<(Tensor, Tensor)> {
        let len = plan.local_end - plan.attend_start;
        Ok((self.k.narrow(2, plan.attend_start, len)?, self.v.narrow(2, plan.attend_start, len)?))
    }
}

/// The per-layer caches of the whole DiT plus the shared end indices.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub config: KvCacheConfig,
    pub layers: Vec<LayerKv>,
    num_heads: usize,
    head_dim: usize,
    global_end: usize,
    local_end: usize,
    /// The window's oldest token, counted from the sink's end (0 until the ring wraps).
    ring_start: usize,
}

impl KvCache {
    /// Preallocates zeroed buffers for `num_layers` layers.
    pub fn new(
        config: KvCacheConfig,
        num_layers: usize,
        num_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let cap = config.capacity_tokens();
        let layers = (0..num_layers)
            .map(|_| {
                Ok(LayerKv {
                    k: Tensor::zeros((config.batch, num_heads, cap, head_dim), dtype, device)?,
                    v: Tensor::zeros((config.batch, num_heads, cap, head_dim), dtype, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { config, layers, num_heads, head_dim, global_end: 0, local_end: 0, ring_start: 0 })
    }

    /// Forgets everything (the buffers are kept; stale slots are never read).
    pub fn reset(&mut self) {
        self.reset_at(0);
    }

    /// Empties the cache so that the next block starts at absolute token `start_token`
    /// (`reset()` is `reset_at(0)`): a stream can resume at any position.
    pub fn reset_at(&mut self, start_token: usize) {
        self.global_end = start_token;
        self.local_end = 0;
        self.ring_start = 0;
    }

    /// Moves the cache's absolute end `tokens` back, keeping its content: the stream's positions
    /// were re-based (the caller re-rotates the window's keys so they match).
    pub fn rebase(&mut self, tokens: usize) -> Result<()> {
        if tokens > self.global_end {
            candle_core::bail!("kv cache: cannot move the end {} back by {tokens} tokens", self.global_end);
        }
        self.global_end -= tokens;
        Ok(())
    }

    /// Absolute token index of the cache end (`kv_cache["global_end_index"]`).
    pub fn global_end_index(&self) -> usize {
        self.global_end
    }

    /// Number of valid tokens in the cache (`kv_cache["local_end_index"]`).
    pub fn local_end_index(&self) -> usize {
        self.local_end
    }

    pub fn capacity(&self) -> usize {
        self.config.capacity_tokens()
    }

    /// The plan for a forward over `num_new` tokens starting at absolute token `current_start`
    /// (the reference's index arithmetic, with the ring in place of the shift where it runs).
    pub fn plan(&self, current_start: usize, num_new: usize) -> Result<CachePlan> {
        if let Some(plan) = self.ring_plan(current_start, num_new) {
            return Ok(plan);
        }
        if self.ring_start != 0 {
            candle_core::bail!(
                "kv cache: a forward over [{current_start}, {}) that the ring cannot place (cache end {})",
                current_start + num_new,
                self.global_end
            );
        }
        self.linear_plan(current_start, num_new)
    }

    /// The ring's plan when the cache is full and the ring applies: a new block overwrites the
    /// oldest window tokens, the same block again rewrites its own slots (the `n` before the
    /// oldest, round the ring: where the linear layout put the newest block too).
    fn ring_plan(&self, current_start: usize, n: usize) -> Option<CachePlan> {
        let cap = self.capacity();
        let sink = self.config.sink_tokens();
        let window = cap.saturating_sub(sink);
        let applies = self.config.local_attn_size != -1
            && self.local_end == cap
            && n > 0
            && window > 0
            && window.is_multiple_of(n)
            && self.ring_start.is_multiple_of(n)
            && cap <= self.config.max_attention_size();
        if !applies {
            return None;
        }
        let plan = |write_start: usize, ring_start: usize| CachePlan {
            shift: None,
            write_start,
            num_new: n,
            attend_start: 0,
            local_end: cap,
            global_end: current_start + n,
            ring_start,
        };
        if current_start == self.global_end {
            // a new block: evicts the `n` oldest window tokens and takes their slots
            return Some(plan(sink + self.ring_start, (self.ring_start + n) % window));
        }
        if current_start + n == self.global_end {
            // the same block again (denoising steps, the refresh pass)
            return Some(plan(sink + (self.ring_start + window - n) % window, self.ring_start));
        }
        None
    }

    /// The reference's index arithmetic, verbatim (the window shifts left on eviction).
    fn linear_plan(&self, current_start: usize, num_new: usize) -> Result<CachePlan> {
        let cap = self.capacity() as i64;
        let sink = self.config.sink_tokens() as i64;
        let current_end = (current_start + num_new) as i64;
        let global_end = self.global_end as i64;
        let local_end_old = self.local_end as i64;
        let n = num_new as i64;
        let mut shift = None;
        let local_end;
        if self.config.local_attn_size != -1 && current_end > global_end && n + local_end_old > cap {
            let evicted = n + local_end_old - cap;
            let rolled = local_end_old - evicted - sink;
            if rolled < 0 {
                candle_core::bail!(
                    "kv cache: block of {n} tokens does not fit after a sink of {sink} tokens (capacity {cap})"
                );
            }
            shift = Some(((sink + evicted) as usize, sink as usize, rolled as usize));
            local_end = local_end_old + current_end - global_end - evicted;
        } else {
            local_end = local_end_old + current_end - global_end;
        }
        let write_start = local_end - n;
        if write_start < 0 || local_end > cap {
            candle_core::bail!(
                "kv cache: write [{write_start}, {local_end}) outside [0, {cap}) (current_start {current_start}, global_end {global_end})"
            );
        }
        let local_end = local_end as usize;
        let attend_start = local_end.saturating_sub(self.config.max_attention_size());
        Ok(CachePlan {
            shift,
            write_start: write_start as usize,
            num_new,
            attend_start,
            local_end,
            global_end: current_end as usize,
            ring_start: 0,
        })
    }

    /// Records the end indices after every layer applied `plan`.
    pub fn commit(&mut self, plan: &CachePlan) {
        self.global_end = plan.global_end;
        self.local_end = plan.local_end;
        self.ring_start = plan.ring_start;
    }

    /// Layer `i`'s valid keys as `[B, local_end, num_heads*head_dim]` (the reference layout and
    /// order).
    pub fn keys(&self, layer: usize) -> Result<Tensor> {
        self.flat(&self.layers[layer].k)
    }

    /// Layer `i`'s valid values as `[B, local_end, num_heads*head_dim]`.
    pub fn values(&self, layer: usize) -> Result<Tensor> {
        self.flat(&self.layers[layer].v)
    }

    fn flat(&self, t: &Tensor) -> Result<Tensor> {
        let (b, n) = (t.dim(0)?, self.local_end);
        let ordered = if self.ring_start == 0 {
            t.narrow(2, 0, n)?
        } else {
            // sink, then the window from its oldest token round the ring
            let first = self.config.sink_tokens() + self.ring_start;
            let sink = t.narrow(2, 0, self.config.sink_tokens())?;
            let oldest = t.narrow(2, first, n - first)?;
            let newest = t.narrow(2, self.config.sink_tokens(), self.ring_start)?;
            Tensor::cat(&[&sink, &oldest, &newest], 2)?
        };
        ordered.transpose(1, 2)?.contiguous()?.reshape((b, n, self.num_heads * self.head_dim))
    }
}
