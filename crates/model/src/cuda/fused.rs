//! Launchers of the fused row kernels in `kernels.cu` (bf16): LayerNorm + affine + modulation,
//! RMSNorm + 3-axis RoPE, and the gated residual. Each replaces a chain of candle elementwise
//! kernels; the portable chains in `dit.rs` stay the reference (and the CPU path).

use candle_core::cuda_backend::cudarc::driver::{CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{Device, Result, Storage, Tensor};
use half::bf16;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));
const MODULE: &str = "livetalk_fused";
const THREADS: u32 = 256;

fn cuda_device(t: &Tensor) -> Result<CudaDevice> {
    match t.device() {
        Device::Cuda(d) => Ok(d.clone()),
        _ => candle_core::bail!("fused kernel: tensor is not on a CUDA device"),
    }
}

/// Device address of `t`'s first element, checked to be of type `T`. The tensor must stay
/// alive until the kernel ran; everything here runs on the device's one stream, so stream order
/// keeps it valid.
pub(crate) fn typed_ptr<T>(t: &Tensor, stream: &CudaStream) -> Result<u64>
where
    T: candle_core::cuda_backend::CudaDType + candle_core::cuda_backend::cudarc::driver::DeviceRepr + candle_core::WithDType,
{
    if t.dtype() != T::DTYPE {
        candle_core::bail!("fused kernel: expected {:?}, got {:?}", T::DTYPE, t.dtype());
    }
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cuda(c) => {
            let (p, _sync) = c.as_cuda_slice::<T>()?.device_ptr(stream);
            Ok(p + (layout.start_offset() * std::mem::size_of::<T>()) as u64)
        }
        _ => candle_core::bail!("fused kernel: tensor is not on a CUDA device"),
    }
}

fn ptr(t: &Tensor, stream: &CudaStream) -> Result<u64> {
    typed_ptr::<bf16>(t, stream)
}

fn f64_ptr(t: &Tensor, stream: &CudaStream) -> Result<u64> {
    typed_ptr::<f64>(t, stream)
}

fn rows_config(rows: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

fn wrap(out: candle_core::cuda_backend::cudarc::driver::CudaSlice<bf16>, dev: &CudaDevice, dims: &[usize]) -> Tensor {
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(out, dev.clone()));
    Tensor::from_storage(storage, dims, BackpropOp::none(), false)
}

fn contiguous_rows(x: &Tensor) -> Result<(Tensor, usize, usize)> {
    let x = x.contiguous()?;
    let cols = *x.dims().last().unwrap_or(&0);
    let rows = if cols == 0 { 0 } else { x.elem_count() / cols };
    Ok((x, rows, cols))
}

/// Frame stride (elements) of a per-frame modulation view `[B, F, 1, C]` whose frames are
/// consecutive (batch stride = F * frame stride), as the modulation chunks are.
fn frame_stride(m: &Tensor, cols: usize) -> Result<i64> {
    let dims = m.dims();
    let st = m.stride();
    if dims.len() != 4 || dims[3] != cols || st[3] != 1 || (dims[0] > 1 && st[0] != dims[1] * st[1]) {
        candle_core::bail!("fused kernel: modulation view {:?} / {:?} not [B, F, 1, {cols}] with packed frames", dims, st);
    }
    Ok(st[1] as i64)
}

/// `LayerNorm(x) [* w + b] [* (1 + scale) + shift]` over the last dim of `x` `[B, L, C]`;
/// `modulation` = (shift, scale) per frame `[B, F, 1, C]`, `L / F` tokens per frame.
pub fn layer_norm_modulate(
    x: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    modulation: Option<(&Tensor, &Tensor)>,
    eps: f64,
) -> Result<Tensor> {
    let dev = cuda_device(x)?;
    let stream = dev.cuda_stream();
    let (x, rows, cols) = contiguous_rows(x)?;
    let (w, b) = match affine {
        Some((w, b)) => (ptr(w, &stream)?, ptr(b, &stream)?),
        None => (0, 0),
    };
    let (shift, scale, rows_per_frame, stride) = match modulation {
        Some((sh, sc)) => {
            let st = frame_stride(sh, cols)?;
            if frame_stride(sc, cols)? != st {
                candle_core::bail!("fused kernel: shift and scale strides differ");
            }
            let frames = sh.dim(0)? * sh.dim(1)?;
            if rows % frames != 0 {
                candle_core::bail!("fused kernel: {rows} tokens do not split into {frames} frames");
            }
            (ptr(sh, &stream)?, ptr(sc, &stream)?, (rows / frames) as i32, st)
        }
        None => (0, 0, rows.max(1) as i32, 0),
    };
    let out = unsafe { dev.alloc::<bf16>(rows * cols)? };
    let (x_ptr, out_ptr) = (ptr(&x, &stream)?, out.device_ptr(&stream).0);
    let func = dev.get_or_load_custom_func("layer_norm_modulate_bf16", MODULE, PTX)?;
    let (cols_i, eps_f) = (cols as i32, eps as f32);
    let mut launch = func.builder();
    launch.arg(&x_ptr).arg(&out_ptr).arg(&w).arg(&b).arg(&shift).arg(&scale);
    launch.arg(&cols_i).arg(&rows_per_frame).arg(&stride).arg(&eps_f);
    unsafe { launch.launch(rows_config(rows)) }.w()?;
    Ok(wrap(out, &dev, x.dims()))
}

/// Where RoPE positions come from: a `f x gh x gw` token grid starting at `start_frame`,
/// `freqs` (f64, `head_dim/2` entries: frame group, height group, width group) on the device.
pub struct RopeGrid<'a> {
    pub freqs: &'a Tensor,
    pub group_pairs: [usize; 2],
    pub grid: (usize, usize, usize),
    pub start_frame: usize,
    pub head_dim: usize,
}

fn opt_ptr(t: Option<&Tensor>, stream: &CudaStream) -> Result<u64> {
    t.map_or(Ok(0), |t| ptr(t, stream))
}

/// `rope(RMSNorm(x + bias) * w)` for `x` `[B, L, C]` (the projection's bias added here);
/// `rope: None` = RMSNorm only.
pub fn rms_norm_rope(x: &Tensor, bias: Option<&Tensor>, w: &Tensor, eps: f64, rope: Option<&RopeGrid>) -> Result<Tensor> {
    let dev = cuda_device(x)?;
    let stream = dev.cuda_stream();
    let (x, rows, cols) = contiguous_rows(x)?;
    let plain = RopeGrid { freqs: w, group_pairs: [0, 0], grid: (1, 1, x.dim(1)?), start_frame: 0, head_dim: 2 };
    let (rope, f_ptr) = match rope {
        Some(r) => (r, f64_ptr(r.freqs, &stream)?),
        None => (&plain, 0),
    };
    let (gf, gh, gw) = rope.grid;
    let tokens = gf * gh * gw;
    if tokens == 0 || x.dim(1)? != tokens || cols % rope.head_dim != 0 {
        candle_core::bail!("fused rope: x {:?} does not match grid {:?} / head_dim {}", x.dims(), rope.grid, rope.head_dim);
    }
    let out = unsafe { dev.alloc::<bf16>(rows * cols)? };
    let (x_ptr, out_ptr, w_ptr) = (ptr(&x, &stream)?, out.device_ptr(&stream).0, ptr(w, &stream)?);
    let b_ptr = opt_ptr(bias, &stream)?;
    let func = dev.get_or_load_custom_func("rms_norm_rope_bf16", MODULE, PTX)?;
    let args = [cols, rope.head_dim, tokens, gh, gw, rope.start_frame, rope.group_pairs[0], rope.group_pairs[1]].map(|v| v as i32);
    let eps_f = eps as f32;
    let mut launch = func.builder();
    launch.arg(&x_ptr).arg(&b_ptr).arg(&out_ptr).arg(&w_ptr).arg(&f_ptr);
    for a in &args {
        launch.arg(a);
    }
    launch.arg(&eps_f);
    unsafe { launch.launch(rows_config(rows)) }.w()?;
    Ok(wrap(out, &dev, x.dims()))
}

/// `x + (y + bias) * gate` with a per-frame gate `[B, F, 1, C]`; no bias / no gate (= 1) allowed.
pub fn gated_residual(x: &Tensor, y: &Tensor, bias: Option<&Tensor>, gate: Option<&Tensor>) -> Result<Tensor> {
    let dev = cuda_device(x)?;
    let stream = dev.cuda_stream();
    let (x, rows, cols) = contiguous_rows(x)?;
    let y = y.contiguous()?;
    if y.dims() != x.dims() {
        candle_core::bail!("fused residual: x {:?} and y {:?} differ", x.dims(), y.dims());
    }
    let (stride, frames) = match gate {
        Some(g) => (frame_stride(g, cols)?, g.dim(0)? * g.dim(1)?),
        None => (0, 1),
    };
    if rows % frames != 0 {
        candle_core::bail!("fused residual: {rows} tokens do not split into {frames} frames");
    }
    let out = unsafe { dev.alloc::<bf16>(rows * cols)? };
    let (x_ptr, y_ptr, out_ptr) = (ptr(&x, &stream)?, ptr(&y, &stream)?, out.device_ptr(&stream).0);
    let (b_ptr, g_ptr) = (opt_ptr(bias, &stream)?, opt_ptr(gate, &stream)?);
    let func = dev.get_or_load_custom_func("gated_residual_bf16", MODULE, PTX)?;
    let (cols_i, rpf) = (cols as i32, (rows / frames) as i32);
    let mut launch = func.builder();
    launch.arg(&x_ptr).arg(&y_ptr).arg(&b_ptr).arg(&g_ptr).arg(&out_ptr).arg(&cols_i).arg(&rpf).arg(&stride);
    unsafe { launch.launch(rows_config(rows)) }.w()?;
    Ok(wrap(out, &dev, x.dims()))
}

/// `gelu_tanh(x + bias)` over the last dim of `x`.
pub fn bias_gelu(x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let dev = cuda_device(x)?;
    let stream = dev.cuda_stream();
    let (x, rows, cols) = contiguous_rows(x)?;
    let n = rows * cols;
    let out = unsafe { dev.alloc::<bf16>(n)? };
    let (x_ptr, b_ptr, out_ptr) = (ptr(&x, &stream)?, opt_ptr(bias, &stream)?, out.device_ptr(&stream).0);
    let func = dev.get_or_load_custom_func("bias_gelu_bf16", MODULE, PTX)?;
    let (n_i, cols_i) = (n as i64, cols as i32);
    let mut launch = func.builder();
    launch.arg(&x_ptr).arg(&b_ptr).arg(&out_ptr).arg(&n_i).arg(&cols_i);
    let blocks = n.div_ceil(THREADS as usize).min(132 * 16) as u32;
    unsafe { launch.launch(LaunchConfig { grid_dim: (blocks.max(1), 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }.w()?;
    Ok(wrap(out, &dev, x.dims()))
}

/// Writes `k`, `v + v_bias` (`[B, n, H*D]`) into the cache buffers `[B, H, cap, D]` at slot
/// `start`, in place (the cache is this layer's own preallocated ring).
pub fn kv_write(k: &Tensor, v: &Tensor, v_bias: Option<&Tensor>, k_cache: &Tensor, v_cache: &Tensor, start: usize) -> Result<()> {
    let dev = cuda_device(k)?;
    let stream = dev.cuda_stream();
    let (k, _, cols) = contiguous_rows(k)?;
    let v = v.contiguous()?;
    let (b, n, _) = k.dims3()?;
    let (cb, heads, cap, head_dim) = k_cache.dims4()?;
    if v.dims() != k.dims() || cb != b || heads * head_dim != cols || start + n > cap || !k_cache.is_contiguous() || !v_cache.is_contiguous() || v_cache.dims() != k_cache.dims() {
        candle_core::bail!("fused kv write: k {:?} v {:?} into cache {:?} at {start}", k.dims(), v.dims(), k_cache.dims());
    }
    let ptrs = [ptr(&k, &stream)?, ptr(&v, &stream)?, opt_ptr(v_bias, &stream)?, ptr(k_cache, &stream)?, ptr(v_cache, &stream)?];
    let func = dev.get_or_load_custom_func("kv_write_bf16", MODULE, PTX)?;
    let total = (b * n * cols) as i64;
    let ints = [n, heads, head_dim, cap, start].map(|x| x as i32);
    let mut launch = func.builder();
    for p in &ptrs {
        launch.arg(p);
    }
    launch.arg(&total);
    for i in &ints {
        launch.arg(i);
    }
    let blocks = (total as usize).div_ceil(THREADS as usize).min(132 * 16) as u32;
    unsafe { launch.launch(LaunchConfig { grid_dim: (blocks.max(1), 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }.w()?;
    Ok(())
}
