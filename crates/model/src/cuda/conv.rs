//! Stride-1 "same" 2-D convolutions in channels-last layout through cuDNN's graph API, with the
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

use candle_core::cuda_backend::cudarc::driver::DevicePtr;
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
    /// n, h, w, c, o, kh, kw
    dims: [i64; 7],
    epilogue: Epilogue,
    dtype: i32,
}

static STATE: Caches<PlanKey> = Mutex::new(None);


/// NHWC strides of a tensor described to cuDNN as `[N, C, H, W]`.
fn nhwc_strides(h: i64, w: i64, c: i64) -> [i64; 4] {
    [h * w * c, 1, w * c, c]
}

fn build_plan(api: &'static ffi::Api, handle: ffi::Handle, key: &PlanKey) -> std::result::Result<Plan, String> {
    let [n, h, w, c, o, kh, kw] = key.dims;
    let dt = key.dtype;
    let f32t = ffi::DATA_FLOAT;
    let ep = key.epilogue;
    let mut g = Builder::new(api, 100);
    let x = g.tensor(Some(UID_X), dt, [n, c, h, w], nhwc_strides(h, w, c), false)?;
    let wt = g.tensor(Some(UID_W), dt, [o, c, kh, kw], [kh * kw * c, 1, kw * c, c], false)?;
    let y_dims = [n, o, h, w];
    let y_strides = nhwc_strides(h, w, o);
    let y = g.tensor(Some(UID_Y), dt, y_dims, y_strides, false)?;
    // Epilogue stages in order; each writes a float virtual tensor, the last one the output.
    let mut stages = Vec::new();
    if ep.bias {
        stages.push((ffi::PW_ADD, Some(g.tensor(Some(UID_BIAS), dt, [1, o, 1, 1], [o, 1, o, o], false)?)));
    }
    if ep.residual {
        stages.push((ffi::PW_ADD, Some(g.tensor(Some(UID_RESIDUAL), dt, y_dims, y_strides, false)?)));
    }
    if ep.relu {
        stages.push((ffi::PW_RELU_FWD, None));
    }
    let mut t = if stages.is_empty() { y } else { g.virt(y_dims, y_strides, f32t)? };
    let mut ops = vec![g.conv_fprop(x, wt, t, [kh / 2, kw / 2])?];
    for (i, (mode, operand)) in stages.iter().enumerate() {
        let out = if i + 1 == stages.len() { y } else { g.virt(y_dims, y_strides, f32t)? };
        ops.push(g.pointwise(*mode, t, *operand, out)?);
        t = out;
    }
    g.plan(handle, &ops, "convolution")
}

/// `LIVETALK_CONV=portable` forces the portable path (read once).
fn forced_portable() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| std::env::var("LIVETALK_CONV").is_ok_and(|v| v == "portable"))
}

/// `relu?(conv(x, w) + bias? + residual?)` for `x` `[N, H, W, C]` and `w_krsc` `[O, kh, kw, C]`
/// (odd kh, kw; zero "same" padding), `bias` `[O]`, `residual` `[N, H, W, O]`: the `[N, H, W,
/// O]` output, or `None` when cuDNN cannot run it here (not CUDA, not bf16/f16, no cuDNN,
/// `LIVETALK_CONV=portable`, or no engine for this graph): the caller computes it portably.
pub fn conv2d_nhwc(x: &Tensor, w_krsc: &Tensor, bias: Option<&Tensor>, residual: Option<&Tensor>, relu: bool) -> Result<Option<Tensor>> {
    let Device::Cuda(dev) = x.device() else {
        return Ok(None);
    };
    let dtype = x.dtype();
    let Some(cdt) = cudnn_dtype(dtype) else {
        return Ok(None);
    };
    let Ok(api) = ffi::api() else {
        return Ok(None);
    };
    if forced_portable() {
        return Ok(None);
    }
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
        dims: [n, h, w, c, o, kh, kw].map(|d| d as i64),
        epilogue: Epilogue { bias: bias.is_some(), residual: residual.is_some(), relu },
        dtype: cdt,
    };
    let x = x.contiguous()?;
    let w_krsc = w_krsc.contiguous()?;
    let bias = bias.map(|b| b.contiguous()).transpose()?;
    let residual = residual.map(|r| r.contiguous()).transpose()?;
    let out = match dtype {
        DType::BF16 => run::<half::bf16>(api, dev, &key, &x, &w_krsc, bias.as_ref(), residual.as_ref(), n * h * w * o)?,
        _ => run::<half::f16>(api, dev, &key, &x, &w_krsc, bias.as_ref(), residual.as_ref(), n * h * w * o)?,
    };
    Ok(out.map(|s| Tensor::from_storage(Storage::Cuda(s), (n, h, w, o), BackpropOp::none(), false)))
}

#[allow(clippy::too_many_arguments)]
fn run<T>(
    api: &'static ffi::Api,
    dev: &CudaDevice,
    key: &PlanKey,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    len: usize,
) -> Result<Option<CudaStorage>>
where
    T: candle_core::cuda_backend::CudaDType + candle_core::cuda_backend::cudarc::driver::DeviceRepr + candle_core::WithDType,
{
    with_cache(&STATE, api, dev, |state| {
    if state.failed(key).is_some() {
        return Ok(None);
    }
    let stream = dev.cuda_stream();
    let out = unsafe { dev.alloc::<T>(len)? };
    let (y_ptr, guard_y) = out.device_ptr(&stream);
    let mut uids = vec![UID_X, UID_W, UID_Y];
    let mut ptrs = vec![typed_ptr::<T>(x, &stream)? as *mut c_void, typed_ptr::<T>(w, &stream)? as *mut c_void, y_ptr as *mut c_void];
    if let Some(b) = bias {
        uids.push(UID_BIAS);
        ptrs.push(typed_ptr::<T>(b, &stream)? as *mut c_void);
    }
    if let Some(r) = residual {
        uids.push(UID_RESIDUAL);
        ptrs.push(typed_ptr::<T>(r, &stream)? as *mut c_void);
    }
    let ran = state.execute(api, dev, *key, |handle| build_plan(api, handle, key), &uids, &ptrs);
    drop(guard_y);
    match ran {
        Ok(()) => Ok(Some(CudaStorage::wrap_cuda_slice(out, dev.clone()))),
        // A graph without an engine: remembered, portable path from now on for this key.
        Err(e) if state.failed(key).is_some() => {
            tracing::debug!("cuDNN conv {:?}: {e}; using the portable convolution", key.dims);
            Ok(None)
        }
        Err(e) => Err(candle_core::Error::Msg(format!("cuDNN conv {:?}: {e}", key.dims))),
    }
    })
}
