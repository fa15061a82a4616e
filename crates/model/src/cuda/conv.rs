//! Stride-1 "same" 2-D convolutions (and the Wan VAE's causal 3-D ones) in channels-last layout through cuDNN's graph API, with the
//! bias, a residual and the ReLU fused into the convolution's epilogue: one kernel instead of
//! the portable path's padding, nine shifted copies, a GEMM, a crop and three elementwise
//! passes ([`crate::same_conv`], which stays the reference and the CPU path).
//!
//! Tensors keep their NHWC memory order and are described to cuDNN by strides: `x` `[N, H, W,
//! C]`, weights `[O, kh, kw, C]` (KRSC), bias `[O]`, residual and output `[N, H, W, O]`. A graph
//! cuDNN has no engine for (a shape or an epilogue) is remembered and answered with `None`, so
//! the caller takes the portable path for it.

use std::ffi::c_void;
use std::sync::Mutex;

use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{DType, Device, Result, Storage, Tensor};

use super::cudnn_ffi as ffi;
use super::cudnn_graph::{cudnn_dtype, with_cache, Builder, Caches, Plan};
use super::fused::typed_ptr;

const UID_X: i64 = 1;
const UID_W: i64 = 2;
const UID_BIAS: i64 = 3;
const UID_RESIDUAL: i64 = 4;
const UID_Y: i64 = 5;

/// What follows the convolution: `relu(conv(x, w) + bias + residual)`, each part optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Epilogue {
    bias: bool,
    residual: bool,
    relu: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    /// Input n, t, h, w, c (t = 1 for 2-D).
    x: [i64; 5],
    /// Output channels.
    o: i64,
    /// kt, kh, kw (kt = 1 for 2-D).
    kernel: [i64; 3],
    /// Zero frames before the input (3-D only; the spatial padding is always "same").
    pad_t: i64,
    stride_t: i64,
    /// 3-D (`[N, C, T, H, W]` descriptors) or 2-D (`[N, C, H, W]`).
    three_d: bool,
    epilogue: Epilogue,
    dtype: i32,
}

static STATE: Caches<PlanKey> = Mutex::new(None);

impl PlanKey {
    /// Output frames.
    fn t_out(&self) -> i64 {
        (self.x[1] + self.pad_t - self.kernel[0]) / self.stride_t + 1
    }

    /// Dims and channels-last strides of an `[n, t, h, w, c]` tensor as cuDNN sees it:
    /// `[N, C, (T,) H, W]`.
    fn described(&self, [n, t, h, w, c]: [i64; 5]) -> (Vec<i64>, Vec<i64>) {
        if self.three_d {
            (vec![n, c, t, h, w], vec![t * h * w * c, 1, h * w * c, w * c, c])
        } else {
            (vec![n, c, h, w], vec![h * w * c, 1, w * c, c])
        }
    }
}

fn build_plan(api: &'static ffi::Api, handle: ffi::Handle, key: &PlanKey) -> std::result::Result<Plan, String> {
    let [n, _, h, w, c] = key.x;
    let [kt, kh, kw] = key.kernel;
    let o = key.o;
    let dt = key.dtype;
    let f32t = ffi::DATA_FLOAT;
    let ep = key.epilogue;
    let mut g = Builder::new(api, 100);
    let (x_dims, x_strides) = key.described(key.x);
    let x = g.tensor(Some(UID_X), dt, &x_dims, &x_strides, false)?;
    // weights [O, (kt,) kh, kw, C] described as [O, C, (kt,) kh, kw]
    let (w_dims, w_strides) = key.described([o, kt, kh, kw, c]);
    let wt = g.tensor(Some(UID_W), dt, &w_dims, &w_strides, false)?;
    let (y_dims, y_strides) = key.described([n, key.t_out(), h, w, o]);
    let y = g.tensor(Some(UID_Y), dt, &y_dims, &y_strides, false)?;
    // Epilogue stages in order; each writes a float virtual tensor, the last one the output.
    let mut stages = Vec::new();
    if ep.bias {
        let (b_dims, b_strides) = key.described([1, 1, 1, 1, o]);
        stages.push((ffi::PW_ADD, Some(g.tensor(Some(UID_BIAS), dt, &b_dims, &b_strides, false)?)));
    }
    if ep.residual {
        stages.push((ffi::PW_ADD, Some(g.tensor(Some(UID_RESIDUAL), dt, &y_dims, &y_strides, false)?)));
    }
    if ep.relu {
        stages.push((ffi::PW_RELU_FWD, None));
    }
    let mut t = if stages.is_empty() { y } else { g.virt(&y_dims, &y_strides, f32t)? };
    let conv = if key.three_d {
        g.conv_fprop(x, wt, t, &[key.pad_t, kh / 2, kw / 2], &[0, kh / 2, kw / 2], &[key.stride_t, 1, 1])?
    } else {
        g.conv_fprop(x, wt, t, &[kh / 2, kw / 2], &[kh / 2, kw / 2], &[1, 1])?
    };
    let mut ops = vec![conv];
    for (i, (mode, operand)) in stages.iter().enumerate() {
        let out = if i + 1 == stages.len() { y } else { g.virt(&y_dims, &y_strides, f32t)? };
        ops.push(g.pointwise(*mode, t, *operand, out)?);
        t = out;
    }
    // cuDNN's first choice is sometimes far from its best at these shapes (an sm80 kernel took
    // 1.9 ms for the Wan VAE's full-resolution convolutions): time a few on first use
    g.plans(handle, &ops, "convolution", tune_candidates())
}

/// Convolution plans timed per shape on first use (`LIVETALK_CUDNN_TUNE=N`; 1 = cuDNN's first
/// choice; default 8).
fn tune_candidates() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::env::var("LIVETALK_CUDNN_TUNE").ok().and_then(|v| v.parse().ok()).unwrap_or(8).max(1))
}

/// `LIVETALK_CONV=portable` forces the portable path (read once).
pub(crate) fn forced_portable() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| std::env::var("LIVETALK_CONV").is_ok_and(|v| v == "portable"))
}

/// `relu?(conv(x, w) + bias? + residual?)` for `x` `[N, H, W, C]` and `w_krsc` `[O, kh, kw, C]`
/// (odd kh, kw; zero "same" padding), `bias` `[O]`, `residual` `[N, H, W, O]`: the `[N, H, W,
/// O]` output, or `None` when cuDNN cannot run it here (not CUDA, not bf16/f16, no cuDNN,
/// `LIVETALK_CONV=portable`, or no engine for this graph): the caller computes it portably.
pub fn conv2d_nhwc(x: &Tensor, w_krsc: &Tensor, bias: Option<&Tensor>, residual: Option<&Tensor>, relu: bool) -> Result<Option<Tensor>> {
    let Some((dev, api, cdt)) = available(x) else {
        return Ok(None);
    };
    let (n, h, w, c) = x.dims4()?;
    let (o, kh, kw, wc) = w_krsc.dims4()?;
    if wc != c || kh % 2 == 0 || kw % 2 == 0 {
        candle_core::bail!("cuDNN conv: weights {:?} do not fit input {:?}", w_krsc.dims(), x.dims());
    }
    if let Some(r) = residual {
        if r.dims() != [n, h, w, o] {
            candle_core::bail!("cuDNN conv: residual {:?} is not the output's [{n}, {h}, {w}, {o}]", r.dims());
        }
    }
    let key = PlanKey {
        x: [n, 1, h, w, c].map(|d| d as i64),
        o: o as i64,
        kernel: [1, kh as i64, kw as i64],
        pad_t: 0,
        stride_t: 1,
        three_d: false,
        epilogue: Epilogue { bias: bias.is_some(), residual: residual.is_some(), relu },
        dtype: cdt,
    };
    execute(api, dev, &key, x, w_krsc, bias, residual, &[n, h, w, o])
}

/// The device, cuDNN and its data type for `x`, when the cuDNN path can run for it.
fn available(x: &Tensor) -> Option<(&CudaDevice, &'static ffi::Api, i32)> {
    let Device::Cuda(dev) = x.device() else {
        return None;
    };
    let cdt = cudnn_dtype(x.dtype())?;
    let api = ffi::api().ok()?;
    (!forced_portable()).then_some((dev, api, cdt))
}

/// Causal 3-D convolution `conv(x, w) + bias?` for `x` `[N, T, H, W, C]` and `w_ktrsc` `[O, kt,
/// kh, kw, C]` (odd kh, kw; "same" spatial padding), with `pad_t` zero frames before the input
/// and a temporal stride: the `[N, T', H, W, O]` output, `T' = (T + pad_t - kt) / stride_t + 1`,
/// or `None` when cuDNN cannot run it here (as [`conv2d_nhwc`]).
pub fn conv3d_ndhwc(x: &Tensor, w_ktrsc: &Tensor, bias: Option<&Tensor>, pad_t: usize, stride_t: usize) -> Result<Option<Tensor>> {
    let Some((dev, api, cdt)) = available(x) else {
        return Ok(None);
    };
    let (n, t, h, w, c) = x.dims5()?;
    let (o, kt, kh, kw, wc) = w_ktrsc.dims5()?;
    if wc != c || kh % 2 == 0 || kw % 2 == 0 || stride_t == 0 || t + pad_t < kt {
        candle_core::bail!("cuDNN conv3d: weights {:?} (stride {stride_t}, {pad_t} padding frames) do not fit input {:?}", w_ktrsc.dims(), x.dims());
    }
    let key = PlanKey {
        x: [n, t, h, w, c].map(|d| d as i64),
        o: o as i64,
        kernel: [kt, kh, kw].map(|d| d as i64),
        pad_t: pad_t as i64,
        stride_t: stride_t as i64,
        three_d: true,
        epilogue: Epilogue { bias: bias.is_some(), residual: false, relu: false },
        dtype: cdt,
    };
    let t_out = key.t_out() as usize;
    execute(api, dev, &key, x, w_ktrsc, bias, None, &[n, t_out, h, w, o])
}

/// Runs the plan for `key` (bf16 or f16 tensors, contiguous copies where needed) into a fresh
/// `out_dims` output; `None` when cuDNN has no engine for the graph (remembered: the portable
/// path runs for this key from then on).
#[allow(clippy::too_many_arguments)]
fn execute(
    api: &'static ffi::Api,
    dev: &CudaDevice,
    key: &PlanKey,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    out_dims: &[usize],
) -> Result<Option<Tensor>> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let bias = bias.map(|b| b.contiguous()).transpose()?;
    let residual = residual.map(|r| r.contiguous()).transpose()?;
    with_cache(&STATE, api, dev, |state| {
        if state.failed(key).is_some() {
            return Ok(None);
        }
        let len = out_dims.iter().product();
        let storage = match x.dtype() {
            DType::BF16 => CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<half::bf16>(len)? }, dev.clone()),
            _ => CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<half::f16>(len)? }, dev.clone()),
        };
        let out = Tensor::from_storage(Storage::Cuda(storage), out_dims, BackpropOp::none(), false);
        let stream = dev.cuda_stream();
        let ptr = |t: &Tensor| -> Result<*mut c_void> {
            let p = match t.dtype() {
                DType::BF16 => typed_ptr::<half::bf16>(t, &stream)?,
                _ => typed_ptr::<half::f16>(t, &stream)?,
            };
            Ok(p as *mut c_void)
        };
        let mut uids = vec![UID_X, UID_W, UID_Y];
        let mut ptrs = vec![ptr(&x)?, ptr(&w)?, ptr(&out)?];
        for (uid, t) in [(UID_BIAS, &bias), (UID_RESIDUAL, &residual)] {
            if let Some(t) = t {
                uids.push(uid);
                ptrs.push(ptr(t)?);
            }
        }
        match state.execute(api, dev, *key, |handle| build_plan(api, handle, key), &uids, &ptrs) {
            Ok(()) => Ok(Some(out)),
            Err(e) if state.failed(key).is_some() => {
                tracing::debug!("cuDNN conv {key:?}: {e}; using the portable convolution");
                Ok(None)
            }
            Err(e) => Err(candle_core::Error::Msg(format!("cuDNN conv {key:?}: {e}"))),
        }
    })
}
