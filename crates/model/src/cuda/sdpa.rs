//! Fused softmax attention on the GPU through cuDNN's graph API: the flash-attention engine
//! (no materialised score matrix) that PyTorch's cuDNN SDPA backend also uses.
//!
//! The graph is the pattern cuDNN's fused attention engine recognises:
//! `S = Q·Kᵀ; S *= scale; M = max(S); E = exp(S − M); Z = Σ E; stats = M + log Z; P = E / Z;
//! O = P·V`, with every intermediate virtual. Q and O stay in the projection layout
//! `[B, L, H, D]` and K/V in the cache layout `[B, H, Lk, D]`: strides express both, so no head
//! transpose is copied. One execution plan per shape is built (and JIT-compiled by cuDNN) on first
//! use and cached.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::DevicePtr;
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::{CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::cudnn_ffi::{self as ffi, Desc};

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

struct Plan {
    plan: Desc,
    workspace: usize,
    _keep: Vec<Desc>,
}

struct DeviceState {
    handle: ffi::Handle,
    plans: HashMap<PlanKey, Plan>,
    workspace: Option<candle_core::cuda_backend::cudarc::driver::CudaSlice<u8>>,
}

// The handle is only used while the STATE mutex is held.
unsafe impl Send for DeviceState {}

static STATE: Mutex<Option<HashMap<candle_core::cuda_backend::DeviceId, DeviceState>>> = Mutex::new(None);

fn cudnn_dtype(dt: DType) -> Option<i32> {
    match dt {
        DType::BF16 => Some(ffi::DATA_BFLOAT16),
        DType::F16 => Some(ffi::DATA_HALF),
        _ => None,
    }
}

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

struct Builder {
    api: &'static ffi::Api,
    keep: Vec<Desc>,
    next_uid: i64,
}

impl Builder {
    fn tensor(&mut self, uid: Option<i64>, dtype: i32, dims: [i64; 4], strides: [i64; 4], by_value: bool) -> std::result::Result<usize, String> {
        let t = Desc::new(self.api, ffi::TENSOR_DESCRIPTOR)?;
        let is_virtual = uid.is_none();
        let uid = uid.unwrap_or_else(|| {
            self.next_uid += 1;
            self.next_uid
        });
        t.set_enum(ffi::ATTR_TENSOR_DATA_TYPE, ffi::TYPE_DATA_TYPE, dtype)?;
        t.set_i64s(ffi::ATTR_TENSOR_DIMENSIONS, &dims)?;
        t.set_i64s(ffi::ATTR_TENSOR_STRIDES, &strides)?;
        t.set_i64s(ffi::ATTR_TENSOR_UNIQUE_ID, &[uid])?;
        t.set_i64s(ffi::ATTR_TENSOR_BYTE_ALIGNMENT, &[16])?;
        t.set_bool(ffi::ATTR_TENSOR_IS_VIRTUAL, is_virtual)?;
        if by_value {
            t.set_bool(ffi::ATTR_TENSOR_IS_BY_VALUE, true)?;
        }
        t.finalize("tensor descriptor")?;
        self.keep.push(t);
        Ok(self.keep.len() - 1)
    }

    fn virt(&mut self, dims: [i64; 4], strides: [i64; 4], dtype: i32) -> std::result::Result<usize, String> {
        self.tensor(None, dtype, dims, strides, false)
    }

    /// Adds an operation built from a finalised sub-descriptor; returns its index in `keep`.
    fn op(&mut self, desc: Desc) -> usize {
        self.keep.push(desc);
        self.keep.len() - 1
    }

    fn matmul(&mut self, a: usize, b: usize, c: usize) -> std::result::Result<usize, String> {
        let mm = Desc::new(self.api, ffi::MATMUL_DESCRIPTOR)?;
        mm.set_enum(ffi::ATTR_MATMUL_COMP_TYPE, ffi::TYPE_DATA_TYPE, ffi::DATA_FLOAT)?;
        mm.finalize("matmul descriptor")?;
        let op = Desc::new(self.api, ffi::OPERATION_MATMUL_DESCRIPTOR)?;
        op.set_descs(ffi::ATTR_OPERATION_MATMUL_ADESC, &[&self.keep[a]])?;
        op.set_descs(ffi::ATTR_OPERATION_MATMUL_BDESC, &[&self.keep[b]])?;
        op.set_descs(ffi::ATTR_OPERATION_MATMUL_CDESC, &[&self.keep[c]])?;
        op.set_descs(ffi::ATTR_OPERATION_MATMUL_DESC, &[&mm])?;
        op.finalize("matmul operation")?;
        self.op(mm);
        Ok(self.op(op))
    }

    fn pointwise(&mut self, mode: i32, x: usize, b: Option<usize>, y: usize) -> std::result::Result<usize, String> {
        let pw = Desc::new(self.api, ffi::POINTWISE_DESCRIPTOR)?;
        pw.set_enum(ffi::ATTR_POINTWISE_MODE, ffi::TYPE_POINTWISE_MODE, mode)?;
        pw.set_enum(ffi::ATTR_POINTWISE_MATH_PREC, ffi::TYPE_DATA_TYPE, ffi::DATA_FLOAT)?;
        pw.finalize("pointwise descriptor")?;
        let op = Desc::new(self.api, ffi::OPERATION_POINTWISE_DESCRIPTOR)?;
        op.set_descs(ffi::ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, &[&pw])?;
        op.set_descs(ffi::ATTR_OPERATION_POINTWISE_XDESC, &[&self.keep[x]])?;
        if let Some(b) = b {
            op.set_descs(ffi::ATTR_OPERATION_POINTWISE_BDESC, &[&self.keep[b]])?;
        }
        op.set_descs(ffi::ATTR_OPERATION_POINTWISE_YDESC, &[&self.keep[y]])?;
        op.finalize("pointwise operation")?;
        self.op(pw);
        Ok(self.op(op))
    }

    fn reduction(&mut self, mode: i32, x: usize, y: usize) -> std::result::Result<usize, String> {
        let red = Desc::new(self.api, ffi::REDUCTION_DESCRIPTOR)?;
        red.set_enum(ffi::ATTR_REDUCTION_OPERATOR, ffi::TYPE_REDUCTION_OPERATOR_TYPE, mode)?;
        red.set_enum(ffi::ATTR_REDUCTION_COMP_TYPE, ffi::TYPE_DATA_TYPE, ffi::DATA_FLOAT)?;
        red.finalize("reduction descriptor")?;
        let op = Desc::new(self.api, ffi::OPERATION_REDUCTION_DESCRIPTOR)?;
        op.set_descs(ffi::ATTR_OPERATION_REDUCTION_XDESC, &[&self.keep[x]])?;
        op.set_descs(ffi::ATTR_OPERATION_REDUCTION_YDESC, &[&self.keep[y]])?;
        op.set_descs(ffi::ATTR_OPERATION_REDUCTION_DESC, &[&red])?;
        op.finalize("reduction operation")?;
        self.op(red);
        Ok(self.op(op))
    }
}

fn build_plan(api: &'static ffi::Api, handle: ffi::Handle, key: &PlanKey) -> std::result::Result<Plan, String> {
    let [b, h, sq, skv, d] = key.dims;
    let dt = key.dtype;
    let f32t = ffi::DATA_FLOAT;
    let mut g = Builder { api, keep: Vec::new(), next_uid: 100 };
    let q = g.tensor(Some(UID_Q), dt, [b, h, sq, d], key.q, false)?;
    // Kᵀ: the K tensor with its last two dims (and strides) swapped.
    let kt = g.tensor(Some(UID_K), dt, [b, h, d, skv], [key.k[0], key.k[1], key.k[3], key.k[2]], false)?;
    let v = g.tensor(Some(UID_V), dt, [b, h, skv, d], key.v, false)?;
    let o = g.tensor(Some(UID_O), dt, [b, h, sq, d], key.o, false)?;
    let scale = g.tensor(Some(UID_SCALE), f32t, [1, 1, 1, 1], [1, 1, 1, 1], true)?;

    let s_dims = [b, h, sq, skv];
    let s_strides = [h * sq * skv, sq * skv, skv, 1];
    let r_dims = [b, h, sq, 1];
    let r_strides = [h * sq, sq, 1, 1];
    let s = g.virt(s_dims, s_strides, f32t)?;
    let s_scaled = g.virt(s_dims, s_strides, f32t)?;
    let m = g.virt(r_dims, r_strides, f32t)?;
    let s_sub = g.virt(s_dims, s_strides, f32t)?;
    let e = g.virt(s_dims, s_strides, f32t)?;
    let z = g.virt(r_dims, r_strides, f32t)?;
    let log_z = g.virt(r_dims, r_strides, f32t)?;
    let stats = g.virt(r_dims, r_strides, f32t)?;
    let p = g.virt(s_dims, s_strides, dt)?;

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
    let graph = Desc::new(api, ffi::OPERATIONGRAPH_DESCRIPTOR)?;
    let op_refs: Vec<&Desc> = ops.iter().map(|&i| &g.keep[i]).collect();
    graph.set_descs(ffi::ATTR_OPERATIONGRAPH_OPS, &op_refs)?;
    graph.set_handle(ffi::ATTR_OPERATIONGRAPH_HANDLE, handle)?;
    graph.finalize("attention operation graph")?;

    let heur = Desc::new(api, ffi::ENGINEHEUR_DESCRIPTOR)?;
    heur.set_descs(ffi::ATTR_ENGINEHEUR_OPERATION_GRAPH, &[&graph])?;
    heur.set_enum(ffi::ATTR_ENGINEHEUR_MODE, ffi::TYPE_HEUR_MODE, ffi::HEUR_MODE_A)?;
    heur.finalize("engine heuristics")?;
    let mut count = 0i64;
    api.check("heuristics result count", unsafe {
        (api.get_attr)(heur.raw, ffi::ATTR_ENGINEHEUR_RESULTS, ffi::TYPE_BACKEND_DESCRIPTOR, 0, &mut count, std::ptr::null_mut())
    })?;
    if count <= 0 {
        return Err("cuDNN has no engine for the attention graph".into());
    }
    let configs = (0..count).map(|_| Desc::new(api, ffi::ENGINECFG_DESCRIPTOR)).collect::<std::result::Result<Vec<_>, _>>()?;
    let mut raws: Vec<ffi::BackendDesc> = configs.iter().map(|c| c.raw).collect();
    let mut got = 0i64;
    api.check("heuristics results", unsafe {
        (api.get_attr)(heur.raw, ffi::ATTR_ENGINEHEUR_RESULTS, ffi::TYPE_BACKEND_DESCRIPTOR, count, &mut got, raws.as_mut_ptr() as *mut c_void)
    })?;
    let mut errors = Vec::new();
    for cfg in configs.iter().take(got.max(0) as usize) {
        let plan = Desc::new(api, ffi::EXECUTION_PLAN_DESCRIPTOR)?;
        plan.set_handle(ffi::ATTR_EXECUTION_PLAN_HANDLE, handle)?;
        plan.set_descs(ffi::ATTR_EXECUTION_PLAN_ENGINE_CONFIG, &[cfg])?;
        match plan.finalize("execution plan") {
            Ok(()) => {
                let workspace = plan.get_i64(ffi::ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)?.max(0) as usize;
                let mut keep = g.keep;
                keep.push(graph);
                keep.push(heur);
                keep.extend(configs);
                return Ok(Plan { plan, workspace, _keep: keep });
            }
            Err(e) => errors.push(e),
        }
    }
    Err(format!("no cuDNN engine accepted the attention graph: {}", errors.join("; ")))
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

    let mut guard = STATE.lock().map_err(|_| candle_core::Error::Msg("fused attention state poisoned".into()))?;
    let states = guard.get_or_insert_with(HashMap::new);
    let state = match states.entry(dev.id()) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            stream.context().bind_to_thread().map_err(candle_core::Error::wrap)?;
            let mut handle = std::ptr::null_mut();
            api.check("cudnnCreate", unsafe { (api.create)(&mut handle) }).map_err(candle_core::Error::Msg)?;
            e.insert(DeviceState { handle, plans: HashMap::new(), workspace: None })
        }
    };
    api.check("cudnnSetStream", unsafe { (api.set_stream)(state.handle, stream.cu_stream() as *mut c_void) })
        .map_err(candle_core::Error::Msg)?;
    if !state.plans.contains_key(key) {
        let plan = build_plan(api, state.handle, key).map_err(|e| candle_core::Error::Msg(format!("fused attention {:?}: {e}", key.dims)))?;
        state.plans.insert(*key, plan);
    }
    let plan = &state.plans[key];
    if plan.workspace > 0 && state.workspace.as_ref().is_none_or(|w| w.len() < plan.workspace) {
        state.workspace = Some(dev.alloc_zeros::<u8>(plan.workspace)?);
    }
    let ws_ptr = match (&state.workspace, plan.workspace) {
        (Some(w), n) if n > 0 => w.device_ptr(&stream).0 as *mut c_void,
        _ => std::ptr::null_mut(),
    };
    let mut scale_value = scale;
    let pack = Desc::new(api, ffi::VARIANT_PACK_DESCRIPTOR).map_err(candle_core::Error::Msg)?;
    let uids = [UID_Q, UID_K, UID_V, UID_O, UID_SCALE];
    let ptrs = [
        q_ptr as *mut c_void,
        k_ptr as *mut c_void,
        v_ptr as *mut c_void,
        o_ptr as *mut c_void,
        &mut scale_value as *mut f32 as *mut c_void,
    ];
    let setup = || -> std::result::Result<(), String> {
        pack.set_i64s(ffi::ATTR_VARIANT_PACK_UNIQUE_IDS, &uids)?;
        pack.set_ptrs(ffi::ATTR_VARIANT_PACK_DATA_POINTERS, &ptrs)?;
        pack.set_ptrs(ffi::ATTR_VARIANT_PACK_WORKSPACE, &[ws_ptr])?;
        pack.finalize("variant pack")?;
        api.check("cudnnBackendExecute", unsafe { (api.execute)(state.handle, plan.plan.raw, pack.raw) })
    };
    setup().map_err(candle_core::Error::Msg)?;
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
