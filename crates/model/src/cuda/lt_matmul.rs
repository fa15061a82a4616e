//! `gelu_tanh(x Wᵀ + b)` in one cuBLASLt call: the bias and the GELU run in the matrix product's
//! epilogue, so the FFN's 3,072 × 8,960 hidden activation is written once instead of being
//! written, read and written again by a separate bias + GELU kernel (2.7 ms per DiT pass on an
//! H100). Descriptors and the chosen algorithm are cached per shape; each CUDA stream gets its
//! own workspace. `None` means "use the portable path" (not bf16, not contiguous, no cuBLASLt).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

use candle_core::cuda_backend::cudarc::cublaslt::{result as lt, sys};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DevicePtr};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{DType, Device, Result, Storage, Tensor};
use half::bf16;

use super::fused::typed_ptr;

/// cuBLASLt's recommended workspace on Hopper.
const WORKSPACE_BYTES: usize = 32 << 20;

/// One shape's descriptors and algorithm (handles live as long as the process).
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    c: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

struct State {
    handle: sys::cublasLtHandle_t,
    /// Workspace per CUDA stream (two streams must not share one).
    workspaces: HashMap<usize, CudaSlice<u8>>,
    /// Plans by (tokens, out features, in features).
    plans: HashMap<(usize, usize, usize), Plan>,
}

// SAFETY: cuBLASLt handles and descriptors may be used from any thread; all use is under the mutex.
unsafe impl Send for State {}

static STATE: Mutex<Option<std::result::Result<State, String>>> = Mutex::new(None);

fn err(what: &str, e: impl std::fmt::Debug) -> String {
    format!("cuBLASLt {what}: {e:?}")
}

fn plan(handle: sys::cublasLtHandle_t, m: usize, n: usize, k: usize) -> std::result::Result<Plan, String> {
    use sys::cublasLtMatmulDescAttributes_t as A;
    unsafe {
        let desc = lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType_t::CUDA_R_32F).map_err(|e| err("descriptor", e))?;
        let set = |attr: A, v: i32| lt::set_matmul_desc_attribute(desc, attr, &v as *const i32 as *const c_void, 4).map_err(|e| err("attribute", e));
        // column-major view: out_cm [n, m] = W_cm[k, n]ᵀ · x_cm[k, m]
        set(A::CUBLASLT_MATMUL_DESC_TRANSA, 1)?;
        set(A::CUBLASLT_MATMUL_DESC_TRANSB, 0)?;
        set(A::CUBLASLT_MATMUL_DESC_EPILOGUE, sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_GELU_BIAS as i32)?;
        let bf = sys::cudaDataType_t::CUDA_R_16BF;
        let a = lt::create_matrix_layout(bf, k as u64, n as u64, k as i64).map_err(|e| err("layout", e))?;
        let b = lt::create_matrix_layout(bf, k as u64, m as u64, k as i64).map_err(|e| err("layout", e))?;
        let c = lt::create_matrix_layout(bf, n as u64, m as u64, n as i64).map_err(|e| err("layout", e))?;
        let pref = lt::create_matmul_pref().map_err(|e| err("preference", e))?;
        let ws = WORKSPACE_BYTES as u64;
        lt::set_matmul_pref_attribute(
            pref,
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            &ws as *const u64 as *const c_void,
            8,
        )
        .map_err(|e| err("preference", e))?;
        let heuristic = lt::get_matmul_algo_heuristic(handle, desc, a, b, c, c, pref).map_err(|e| err("no algorithm", e));
        let _ = lt::destroy_matmul_pref(pref);
        Ok(Plan { desc, a, b, c, algo: heuristic?.algo })
    }
}

/// `gelu_tanh(x Wᵀ + bias)` for `x [.., K]`, `w [N, K]`, `bias [N]` (bf16, contiguous), or
/// `Ok(None)` when this path cannot run (the caller uses the portable one).
pub fn linear_bias_gelu(x: &Tensor, w: &Tensor, bias: &Tensor) -> Result<Option<Tensor>> {
    let dev: CudaDevice = match x.device() {
        Device::Cuda(d) => d.clone(),
        _ => return Ok(None),
    };
    if [x, w, bias].iter().any(|t| t.dtype() != DType::BF16 || !t.is_contiguous()) {
        return Ok(None);
    }
    let (n, k) = w.dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&k) || bias.dims() != [n] {
        candle_core::bail!("linear_bias_gelu: x {dims:?}, w [{n}, {k}], bias {:?}", bias.dims());
    }
    let m = x.elem_count() / k;
    let stream = dev.cuda_stream();
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let state = match guard.get_or_insert_with(|| lt::create_handle().map_err(|e| err("handle", e)).map(|handle| State { handle, workspaces: HashMap::new(), plans: HashMap::new() })) {
        Ok(s) => s,
        Err(why) => {
            tracing::debug!("{why}");
            return Ok(None);
        }
    };
    let key = stream.cu_stream() as usize;
    if !state.workspaces.contains_key(&key) {
        state.workspaces.insert(key, unsafe { stream.alloc::<u8>(WORKSPACE_BYTES) }.map_err(candle_core::Error::wrap)?);
    }
    if !state.plans.contains_key(&(m, n, k)) {
        match plan(state.handle, m, n, k) {
            Ok(p) => {
                state.plans.insert((m, n, k), p);
            }
            Err(why) => {
                tracing::debug!("{why}");
                return Ok(None);
            }
        }
    }
    let p = &state.plans[&(m, n, k)];
    let out = unsafe { dev.alloc::<bf16>(m * n)? };
    let (x_ptr, w_ptr, b_ptr) = (typed_ptr::<bf16>(x, &stream)?, typed_ptr::<bf16>(w, &stream)?, typed_ptr::<bf16>(bias, &stream)?);
    let out_ptr = out.device_ptr(&stream).0;
    let ws_ptr = state.workspaces[&key].device_ptr(&stream).0;
    let (alpha, beta) = (1f32, 0f32);
    unsafe {
        lt::set_matmul_desc_attribute(
            p.desc,
            sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
            &b_ptr as *const u64 as *const c_void,
            8,
        )
        .map_err(candle_core::Error::wrap)?;
        lt::matmul(
            state.handle,
            p.desc,
            &alpha as *const f32 as *const c_void,
            &beta as *const f32 as *const c_void,
            w_ptr as *const c_void,
            p.a,
            x_ptr as *const c_void,
            p.b,
            out_ptr as *const c_void,
            p.c,
            out_ptr as *mut c_void,
            p.c,
            &p.algo,
            ws_ptr as *mut c_void,
            WORKSPACE_BYTES,
            stream.cu_stream() as sys::cudaStream_t,
        )
        .map_err(candle_core::Error::wrap)?;
    }
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("x has a last dim") = n;
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(out, dev.clone()));
    Ok(Some(Tensor::from_storage(storage, out_dims, BackpropOp::none(), false)))
}
