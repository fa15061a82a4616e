//! Fused softmax attention on the GPU through cuDNN's graph API: the flash-attention engine
//! (no materialised score matrix) that PyTorch's cuDNN SDPA backend also uses.
//!
//! The graph is the pattern cuDNN's fused attention engine recognises:
//! `S = Q·Kᵀ; S *= scale; M = max(S); E = exp(S − M); Z = Σ E; stats = M + log Z; P = E / Z;
//! O = P·V`, with every intermediate virtual. Q and O stay in the projection layout
//! `[B, L, H, D]` and K/V in the cache layout `[B, H, Lk, D]`: strides express both, so no head
//! transpose is copied. One execution plan per shape is built (and JIT-compiled by cuDNN) on first
//! use and cached.

use std::ffi::c_void;
use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::DevicePtr;
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::{CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::cudnn_ffi as ffi;
use super::cudnn_graph::{cudnn_dtype, with_cache, Builder, Caches, Plan};

const UID_Q: i64 = 1;
const UID_K: i64 = 2;
const UID_V: i64 = 3;
const UID_O: i64 = 4;
const UID_SCALE: i64 = 5;

/// Everything that decides a plan: sizes, element strides of Q/K/V/O as `[B, H, S, D]`, dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    dims: [i64; 5], // b, h, sq, skv, d
    q: [i64; 4],
    k: [i64; 4],
    v: [i64; 4],
    o: [i64; 4],
    dtype: i32,
}

static STATE: Caches<PlanKey> = Mutex::new(None);


static DISABLED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Turns the fused path off for the rest of the process after it failed (e.g. this cuDNN has no
/// engine for the graph): attention falls back to the portable path.
pub fn disable(reason: String) {
    let _ = DISABLED.set(reason);
}

/// Why the fused path cannot be used here, or `None` when it can.
pub fn unavailable_reason(dtype: DType) -> Option<String> {
    if let Some(why) = DISABLED.get() {
        return Some(why.clone());
    }
    if std::env::var("LIVETALK_ATTENTION").is_ok_and(|v| v == "naive") {
        return Some("LIVETALK_ATTENTION=naive".into());
    }
    if cudnn_dtype(dtype).is_none() {
        return Some(format!("cuDNN fused attention needs bf16 or f16, not {dtype:?}"));
    }
    match ffi::api() {
        Ok(_) => None,
        Err(e) => Some(format!("cuDNN not loadable ({e})")),
    }
}

fn build_plan(api: &'static ffi::Api, handle: ffi::Handle, key: &PlanKey) -> std::result::Result<Plan, String> {
    let [b, h, sq, skv, d] = key.dims;
    let dt = key.dtype;
    let f32t = ffi::DATA_FLOAT;
    let mut g = Builder::new(api, 100);
    let q = g.tensor(Some(UID_Q), dt, &[b, h, sq, d], &key.q, false)?;
    // Kᵀ: the K tensor with its last two dims (and strides) swapped.
    let kt = g.tensor(Some(UID_K), dt, &[b, h, d, skv], &[key.k[0], key.k[1], key.k[3], key.k[2]], false)?;
    let v = g.tensor(Some(UID_V), dt, &[b, h, skv, d], &key.v, false)?;
    let o = g.tensor(Some(UID_O), dt, &[b, h, sq, d], &key.o, false)?;
    let scale = g.tensor(Some(UID_SCALE), f32t, &[1, 1, 1, 1], &[1, 1, 1, 1], true)?;

    let s_dims = [b, h, sq, skv];
    let s_strides = [h * sq * skv, sq * skv, skv, 1];
    let r_dims = [b, h, sq, 1];
    let r_strides = [h * sq, sq, 1, 1];
    let s = g.virt(&s_dims, &s_strides, f32t)?;
    let s_scaled = g.virt(&s_dims, &s_strides, f32t)?;
    let m = g.virt(&r_dims, &r_strides, f32t)?;
    let s_sub = g.virt(&s_dims, &s_strides, f32t)?;
    let e = g.virt(&s_dims, &s_strides, f32t)?;
    let z = g.virt(&r_dims, &r_strides, f32t)?;
    let log_z = g.virt(&r_dims, &r_strides, f32t)?;
    let stats = g.virt(&r_dims, &r_strides, f32t)?;
    let p = g.virt(&s_dims, &s_strides, dt)?;

    let ops = [
        g.matmul(q, kt, s)?,
        g.pointwise(ffi::PW_MUL, s, Some(scale), s_scaled)?,
        g.reduction(ffi::REDUCE_MAX, s_scaled, m)?,
        g.pointwise(ffi::PW_SUB, s_scaled, Some(m), s_sub)?,
        g.pointwise(ffi::PW_EXP, s_sub, None, e)?,
        g.reduction(ffi::REDUCE_ADD, e, z)?,
        g.pointwise(ffi::PW_LOG, z, None, log_z)?,
        g.pointwise(ffi::PW_ADD, m, Some(log_z), stats)?,
        g.pointwise(ffi::PW_DIV, e, Some(z), p)?,
        g.matmul(p, v, o)?,
    ];
    g.plan(handle, &ops, "attention")
}

/// `softmax(q kᵀ · scale) v` as a candle op over `[B, H, S, D]` views (any strides with a unit
/// last stride); the output is a fresh `[B, Sq, H, D]` tensor (the projection layout).
struct FusedAttention {
    scale: f32,
}

fn bhsd(layout: &Layout, name: &str) -> Result<([i64; 4], [i64; 4])> {
    let dims = layout.dims();
    let st = layout.stride();
    if dims.len() != 4 || st[3] != 1 {
        candle_core::bail!("fused attention: {name} must be a 4-d [B, H, S, D] view with unit last stride, got {:?} / {:?}", dims, st);
    }
    Ok((
        [dims[0] as i64, dims[1] as i64, dims[2] as i64, dims[3] as i64],
        [st[0] as i64, st[1] as i64, st[2] as i64, st[3] as i64],
    ))
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "cudnn-fused-attention"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("fused attention runs on CUDA only")
    }

    fn cuda_fwd(&self, qs: &CudaStorage, ql: &Layout, ks: &CudaStorage, kl: &Layout, vs: &CudaStorage, vl: &Layout) -> Result<(CudaStorage, Shape)> {
        let dtype = qs.dtype();
        let Some(cdt) = cudnn_dtype(dtype) else {
            candle_core::bail!("fused attention: dtype {dtype:?} not supported");
        };
        if ks.dtype() != dtype || vs.dtype() != dtype {
            candle_core::bail!("fused attention: q/k/v dtypes differ");
        }
        let (qd, qst) = bhsd(ql, "q")?;
        let (kd, kst) = bhsd(kl, "k")?;
        let (vd, vst) = bhsd(vl, "v")?;
        let [b, h, sq, d] = qd;
        let skv = kd[2];
        if kd != [b, h, skv, d] || vd != kd {
            candle_core::bail!("fused attention: shapes q {qd:?} k {kd:?} v {vd:?} do not match");
        }
        let dev = qs.device().clone();
        let n = (b * sq * h * d) as usize;
        let key = PlanKey { dims: [b, h, sq, skv, d], q: qst, k: kst, v: vst, o: [sq * h * d, d, h * d, 1], dtype: cdt };
        let out = match dtype {
            DType::BF16 => run::<half::bf16>(&dev, &key, self.scale, qs, ql, ks, kl, vs, vl, n)?,
            _ => run::<half::f16>(&dev, &key, self.scale, qs, ql, ks, kl, vs, vl, n)?,
        };
        Ok((out, Shape::from((b as usize, sq as usize, h as usize, d as usize))))
    }
}

#[allow(clippy::too_many_arguments)]
fn run<T>(
    dev: &CudaDevice,
    key: &PlanKey,
    scale: f32,
    qs: &CudaStorage,
    ql: &Layout,
    ks: &CudaStorage,
    kl: &Layout,
    vs: &CudaStorage,
    vl: &Layout,
    n: usize,
) -> Result<CudaStorage>
where
    T: candle_core::cuda_backend::CudaDType + candle_core::cuda_backend::cudarc::driver::DeviceRepr,
{
    let api = ffi::api().map_err(|e| candle_core::Error::Msg(format!("cuDNN not loadable: {e}")))?;
    let stream = dev.cuda_stream();
    let out = unsafe { dev.alloc::<T>(n)? };
    let elem = std::mem::size_of::<T>() as u64;
    let (q_ptr, _gq) = qs.as_cuda_slice::<T>()?.device_ptr(&stream);
    let (k_ptr, _gk) = ks.as_cuda_slice::<T>()?.device_ptr(&stream);
    let (v_ptr, _gv) = vs.as_cuda_slice::<T>()?.device_ptr(&stream);
    let (o_ptr, _go) = out.device_ptr(&stream);
    let q_ptr = q_ptr + ql.start_offset() as u64 * elem;
    let k_ptr = k_ptr + kl.start_offset() as u64 * elem;
    let v_ptr = v_ptr + vl.start_offset() as u64 * elem;

    let mut scale_value = scale;
    let uids = [UID_Q, UID_K, UID_V, UID_O, UID_SCALE];
    let ptrs = [
        q_ptr as *mut c_void,
        k_ptr as *mut c_void,
        v_ptr as *mut c_void,
        o_ptr as *mut c_void,
        &mut scale_value as *mut f32 as *mut c_void,
    ];
    with_cache(&STATE, api, dev, |state| {
        state
            .execute(api, dev, *key, |handle| build_plan(api, handle, key).map_err(|e| format!("fused attention {:?}: {e}", key.dims)), &uids, &ptrs)
            .map_err(candle_core::Error::Msg)
    })?;
    drop((_gq, _gk, _gv, _go));
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// Fused attention for queries `q` `[B, Sq, H, D]` (the projection layout) and keys/values
/// `[B, H, Skv, D]` (views of the cache are fine): returns `[B, Sq, H, D]`.
pub fn attention_bshd(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let d = q.dim(3)?;
    let scale = 1.0 / (d as f32).sqrt();
    q.transpose(1, 2)?.apply_op3_no_bwd(k, v, &FusedAttention { scale })
}
