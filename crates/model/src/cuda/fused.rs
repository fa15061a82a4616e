//! Launchers of the fused row kernels in `kernels.cu` (bf16): LayerNorm + affine + modulation,
//! RMSNorm + 3-axis RoPE (angles from a per-forward table), the gated residual (+ the next
//! layer's audio row) and the KV cache write. Each replaces a chain of candle elementwise
//! kernels; the portable chains in `dit.rs` stay the reference (and the CPU path). The row
//! kernels read 8-channel vectors: rows of a multiple of 8 channels, at most [`MAX_COLS`],
//! starting 16-byte aligned.

use candle_core::cuda_backend::cudarc::driver::{CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{Device, Result, Storage, Tensor};
use half::bf16;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kernels.ptx"));
const MODULE: &str = "livetalk_fused";
const THREADS: u32 = 256;
/// Widest row the row kernels take (32 lanes x MAXV vectors of 8 channels in kernels.cu).
pub const MAX_COLS: usize = 32 * 8 * 6;
/// Rows per thread block of the one-warp-per-row kernels (WARP_ROWS in kernels.cu).
const WARP_ROWS: usize = 8;

/// Whether the fused kernels may run (`LIVETALK_FUSED=0` switches them off, read once).
pub fn enabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    !*OFF.get_or_init(|| std::env::var("LIVETALK_FUSED").is_ok_and(|v| v == "0"))
}

/// Whether the row kernels take rows of `cols` channels.
pub fn supports_cols(cols: usize) -> bool {
    cols % 8 == 0 && cols > 0 && cols <= MAX_COLS
}

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

/// A bf16 tensor's address, 16-byte aligned (the kernels read 8-channel vectors).
fn ptr(t: &Tensor, stream: &CudaStream) -> Result<u64> {
    let p = typed_ptr::<bf16>(t, stream)?;
    if p % 16 != 0 {
        candle_core::bail!("fused kernel: a {:?} tensor does not start 16-byte aligned", t.dims());
    }
    Ok(p)
}

/// One warp per row, WARP_ROWS rows per block.
fn warp_rows_config(rows: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (rows.div_ceil(WARP_ROWS).max(1) as u32, 1, 1), block_dim: (32 * WARP_ROWS as u32, 1, 1), shared_mem_bytes: 0 }
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

fn check_cols(cols: usize) -> Result<()> {
    if !supports_cols(cols) {
        candle_core::bail!("fused kernel: rows of {cols} channels (a multiple of 8, at most {MAX_COLS})");
    }
    Ok(())
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
    check_cols(cols)?;
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
    let (cols_i, rows_i, eps_f) = (cols as i32, rows as i64, eps as f32);
    let mut launch = func.builder();
    launch.arg(&x_ptr).arg(&out_ptr).arg(&w).arg(&b).arg(&shift).arg(&scale);
    launch.arg(&cols_i).arg(&rows_i).arg(&rows_per_frame).arg(&stride).arg(&eps_f);
    unsafe { launch.launch(warp_rows_config(rows)) }.w()?;
    Ok(wrap(out, &dev, x.dims()))
}

/// The rotations of one forward's tokens: `[tokens, head_dim/2, 2]` (cos, sin) float32.
pub struct RopeTable {
    table: Tensor,
    tokens: usize,
    head_dim: usize,
}

/// Builds the rotation table of an `f x gh x gw` token grid starting at absolute frame
/// `start_frame`; `freqs` (f64 on the device) has `head_dim/2` entries, `group_pairs` pairs in the
/// frame and height groups (the width group has the rest).
pub fn rope_table(freqs: &Tensor, group_pairs: [usize; 2], grid: (usize, usize, usize), start_frame: usize, head_dim: usize) -> Result<RopeTable> {
    let dev = cuda_device(freqs)?;
    let stream = dev.cuda_stream();
    let (gf, gh, gw) = grid;
    let (tokens, half) = (gf * gh * gw, head_dim / 2);
    if tokens == 0 || freqs.dims() != [half] {
        candle_core::bail!("rope table: grid {grid:?}, {:?} frequencies for head_dim {head_dim}", freqs.dims());
    }
    let out = unsafe { dev.alloc::<f32>(tokens * half * 2)? };
    let (f_ptr, out_ptr) = (f64_ptr(freqs, &stream)?, out.device_ptr(&stream).0);
    let func = dev.get_or_load_custom_func("rope_table_f32", MODULE, PTX)?;
    let ints = [tokens, half, gh, gw, start_frame, group_pairs[0], group_pairs[1]].map(|v| v as i32);
    let mut launch = func.builder();
    launch.arg(&f_ptr).arg(&out_ptr);
    for a in &ints {
        launch.arg(a);
    }
    let blocks = (tokens * half).div_ceil(THREADS as usize).min(132 * 8) as u32;
    unsafe { launch.launch(LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }.w()?;
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(out, dev.clone()));
    let table = Tensor::from_storage(storage, (tokens, half, 2), BackpropOp::none(), false);
    Ok(RopeTable { table, tokens, head_dim })
}

fn opt_ptr(t: Option<&Tensor>, stream: &CudaStream) -> Result<u64> {
    t.map_or(Ok(0), |t| ptr(t, stream))
}

/// `rope(RMSNorm(x + bias) * w)` for `x` `[B, L, C]` (the projection's bias added here);
/// `rope: None` = RMSNorm only.
pub fn rms_norm_rope(x: &Tensor, bias: Option<&Tensor>, w: &Tensor, eps: f64, rope: Option<&RopeTable>) -> Result<Tensor> {
    let dev = cuda_device(x)?;
    let stream = dev.cuda_stream();
    let (x, rows, cols) = contiguous_rows(x)?;
    check_cols(cols)?;
    let (t_ptr, tokens, head_dim) = match rope {
        Some(r) => (typed_ptr::<f32>(&r.table, &stream)?, r.tokens, r.head_dim),
        None => (0, x.dim(1)?, 2),
    };
    if tokens == 0 || x.dim(1)? != tokens || head_dim % 2 != 0 || cols % head_dim != 0 {
        candle_core::bail!("fused rope: x {:?} does not match {tokens} tokens / head_dim {head_dim}", x.dims());
    }
    let out = unsafe { dev.alloc::<bf16>(rows * cols)? };
    let (x_ptr, out_ptr, w_ptr) = (ptr(&x, &stream)?, out.device_ptr(&stream).0, ptr(w, &stream)?);
    let b_ptr = opt_ptr(bias, &stream)?;
    let func = dev.get_or_load_custom_func("rms_norm_rope_bf16", MODULE, PTX)?;
    let (cols_i, rows_i, head_dim_i, tokens_i, eps_f) = (cols as i32, rows as i64, head_dim as i32, tokens as i32, eps as f32);
    let mut launch = func.builder();
    launch.arg(&x_ptr).arg(&b_ptr).arg(&out_ptr).arg(&w_ptr).arg(&t_ptr);
    launch.arg(&cols_i).arg(&rows_i).arg(&head_dim_i).arg(&tokens_i).arg(&eps_f);
    unsafe { launch.launch(warp_rows_config(rows)) }.w()?;
    Ok(wrap(out, &dev, x.dims()))
}

/// `x + (y + bias) * gate`, then `+ add`, with per-frame `gate` and `add` `[B, F, 1, C]`; no
/// bias / no gate (= 1) / nothing to add allowed.
pub fn gated_residual(x: &Tensor, y: &Tensor, bias: Option<&Tensor>, gate: Option<&Tensor>, add: Option<&Tensor>) -> Result<Tensor> {
    let dev = cuda_device(x)?;
    let stream = dev.cuda_stream();
    let (x, rows, cols) = contiguous_rows(x)?;
    check_cols(cols)?;
    let y = y.contiguous()?;
    if y.dims() != x.dims() {
        candle_core::bail!("fused residual: x {:?} and y {:?} differ", x.dims(), y.dims());
    }
    let per_frame = |m: Option<&Tensor>| -> Result<(i64, usize)> {
        match m {
            Some(m) => Ok((frame_stride(m, cols)?, m.dim(0)? * m.dim(1)?)),
            None => Ok((0, 0)),
        }
    };
    let ((g_stride, g_frames), (a_stride, a_frames)) = (per_frame(gate)?, per_frame(add)?);
    let frames = g_frames.max(a_frames).max(1);
    if rows % frames != 0 || (g_frames > 0 && g_frames != frames) || (a_frames > 0 && a_frames != frames) {
        candle_core::bail!("fused residual: {rows} tokens, gate of {g_frames} frames, add of {a_frames}");
    }
    let out = unsafe { dev.alloc::<bf16>(rows * cols)? };
    let (x_ptr, y_ptr, out_ptr) = (ptr(&x, &stream)?, ptr(&y, &stream)?, out.device_ptr(&stream).0);
    let (b_ptr, g_ptr, a_ptr) = (opt_ptr(bias, &stream)?, opt_ptr(gate, &stream)?, opt_ptr(add, &stream)?);
    let func = dev.get_or_load_custom_func("gated_residual_bf16", MODULE, PTX)?;
    let (cols_i, rows_i, rpf) = (cols as i32, rows as i64, (rows / frames) as i32);
    let mut launch = func.builder();
    launch.arg(&x_ptr).arg(&y_ptr).arg(&b_ptr).arg(&g_ptr).arg(&a_ptr).arg(&out_ptr);
    launch.arg(&cols_i).arg(&rows_i).arg(&rpf).arg(&g_stride).arg(&a_stride);
    unsafe { launch.launch(warp_rows_config(rows)) }.w()?;
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
    check_cols(cols)?;
    if head_dim % 8 != 0 {
        candle_core::bail!("fused kv write: head_dim {head_dim} is not a multiple of 8");
    }
    let ptrs = [ptr(&k, &stream)?, ptr(&v, &stream)?, opt_ptr(v_bias, &stream)?, ptr(k_cache, &stream)?, ptr(v_cache, &stream)?];
    let func = dev.get_or_load_custom_func("kv_write_bf16", MODULE, PTX)?;
    let ints = [n, heads, head_dim, cap, start].map(|x| x as i32);
    let mut launch = func.builder();
    for p in &ptrs {
        launch.arg(p);
    }
    for i in &ints {
        launch.arg(i);
    }
    unsafe { launch.launch(rows_config(b * n)) }.w()?;
    Ok(())
}

/// Nearest-neighbour upscaling of channels-last bf16 frames `[B, H, W, C]` by `f`, or `None` when
/// the kernel does not take them (not bf16, C not a multiple of 8, misaligned).
pub fn upsample_nearest_nhwc(x: &Tensor, f: usize) -> Result<Option<Tensor>> {
    let (b, h, w, c) = x.dims4()?;
    if x.dtype() != candle_core::DType::BF16 || c % 8 != 0 || f == 0 {
        return Ok(None);
    }
    let dev = cuda_device(x)?;
    let stream = dev.cuda_stream();
    let x = x.contiguous()?;
    let x_ptr = typed_ptr::<bf16>(&x, &stream)?;
    if x_ptr % 16 != 0 {
        return Ok(None);
    }
    let len = b * h * f * w * f * c;
    let out = unsafe { dev.alloc::<bf16>(len)? };
    let out_ptr = out.device_ptr(&stream).0;
    let func = dev.get_or_load_custom_func("upsample_nearest_nhwc_bf16", MODULE, PTX)?;
    let vectors = (len / 8) as i64;
    let ints = [h, w, c, f].map(|v| v as i32);
    let mut launch = func.builder();
    launch.arg(&x_ptr).arg(&out_ptr).arg(&vectors);
    for a in &ints {
        launch.arg(a);
    }
    let blocks = (len / 8).div_ceil(THREADS as usize).min(132 * 16) as u32;
    unsafe { launch.launch(LaunchConfig { grid_dim: (blocks.max(1), 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }.w()?;
    Ok(Some(wrap(out, &dev, &[b, h * f, w * f, c])))
}

/// The Wan VAE's RMS norm over the last dim of channels-last bf16 frames `[..., C]` with the f32
/// `gain` `[C]`, then SiLU when `silu`; `None` when the row kernel does not take these rows.
pub fn row_rms_norm(x: &Tensor, gain: &Tensor, silu: bool) -> Result<Option<Tensor>> {
    let dev = cuda_device(x)?;
    let stream = dev.cuda_stream();
    let (x, rows, cols) = contiguous_rows(x)?;
    if !supports_cols(cols) || gain.dims() != [cols] || x.dtype() != candle_core::DType::BF16 {
        return Ok(None);
    }
    let gain = gain.contiguous()?;
    let out = unsafe { dev.alloc::<bf16>(rows * cols)? };
    let (x_ptr, out_ptr, g_ptr) = (ptr(&x, &stream)?, out.device_ptr(&stream).0, typed_ptr::<f32>(&gain, &stream)?);
    let func = dev.get_or_load_custom_func("row_rms_norm_bf16", MODULE, PTX)?;
    let (cols_i, rows_i, silu_i) = (cols as i32, rows as i64, silu as i32);
    let mut launch = func.builder();
    launch.arg(&x_ptr).arg(&out_ptr).arg(&g_ptr).arg(&cols_i).arg(&rows_i).arg(&silu_i);
    unsafe { launch.launch(warp_rows_config(rows)) }.w()?;
    Ok(Some(wrap(out, &dev, x.dims())))
}
