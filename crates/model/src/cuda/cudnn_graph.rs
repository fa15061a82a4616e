//! Building and running cuDNN backend graphs: tensors, operations, the heuristics → execution
//! plan step, and a per-device cache of plans with one handle and one workspace. Used by the
//! fused attention ([`super::sdpa`]) and the fused convolutions ([`super::conv`]).

use std::collections::HashMap;
use std::ffi::c_void;
use std::hash::Hash;
use std::sync::Mutex;

use candle_core::DType;

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use candle_core::cuda_backend::CudaDevice;

use super::cudnn_ffi::{self as ffi, Desc};

/// Collects the descriptors of one graph (they must outlive its plan).
pub(crate) struct Builder {
    api: &'static ffi::Api,
    pub keep: Vec<Desc>,
    next_uid: i64,
}

impl Builder {
    /// Virtual tensors get unique ids from `first_virtual_uid` up.
    pub fn new(api: &'static ffi::Api, first_virtual_uid: i64) -> Self {
        Builder { api, keep: Vec::new(), next_uid: first_virtual_uid }
    }

    /// A tensor: real (with `uid`) or virtual (`None`); returns its index in `keep`.
    pub fn tensor(&mut self, uid: Option<i64>, dtype: i32, dims: &[i64], strides: &[i64], by_value: bool) -> Result<usize, String> {
        let t = Desc::new(self.api, ffi::TENSOR_DESCRIPTOR)?;
        let is_virtual = uid.is_none();
        let uid = uid.unwrap_or_else(|| {
            self.next_uid += 1;
            self.next_uid
        });
        t.set_enum(ffi::ATTR_TENSOR_DATA_TYPE, ffi::TYPE_DATA_TYPE, dtype)?;
        t.set_i64s(ffi::ATTR_TENSOR_DIMENSIONS, dims)?;
        t.set_i64s(ffi::ATTR_TENSOR_STRIDES, strides)?;
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

    pub fn virt(&mut self, dims: &[i64], strides: &[i64], dtype: i32) -> Result<usize, String> {
        self.tensor(None, dtype, dims, strides, false)
    }

    fn op(&mut self, desc: Desc) -> usize {
        self.keep.push(desc);
        self.keep.len() - 1
    }

    pub fn matmul(&mut self, a: usize, b: usize, c: usize) -> Result<usize, String> {
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

    pub fn pointwise(&mut self, mode: i32, x: usize, b: Option<usize>, y: usize) -> Result<usize, String> {
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

    pub fn reduction(&mut self, mode: i32, x: usize, y: usize) -> Result<usize, String> {
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

    /// Cross-correlation `y = conv(x, w)` over `strides.len()` spatial dims (2 or 3) with zero
    /// padding `pre` before and `post` after each dim, float accumulation.
    pub fn conv_fprop(&mut self, x: usize, w: usize, y: usize, pre: &[i64], post: &[i64], strides: &[i64]) -> Result<usize, String> {
        let conv = Desc::new(self.api, ffi::CONVOLUTION_DESCRIPTOR)?;
        conv.set_enum(ffi::ATTR_CONVOLUTION_COMP_TYPE, ffi::TYPE_DATA_TYPE, ffi::DATA_FLOAT)?;
        conv.set_enum(ffi::ATTR_CONVOLUTION_CONV_MODE, ffi::TYPE_CONVOLUTION_MODE, ffi::CROSS_CORRELATION)?;
        conv.set_i64s(ffi::ATTR_CONVOLUTION_SPATIAL_DIMS, &[strides.len() as i64])?;
        conv.set_i64s(ffi::ATTR_CONVOLUTION_DILATIONS, &vec![1; strides.len()])?;
        conv.set_i64s(ffi::ATTR_CONVOLUTION_FILTER_STRIDES, strides)?;
        conv.set_i64s(ffi::ATTR_CONVOLUTION_PRE_PADDINGS, pre)?;
        conv.set_i64s(ffi::ATTR_CONVOLUTION_POST_PADDINGS, post)?;
        conv.finalize("convolution descriptor")?;
        let op = Desc::new(self.api, ffi::OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR)?;
        op.set_f32(ffi::ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, 1.0)?;
        op.set_f32(ffi::ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, 0.0)?;
        op.set_descs(ffi::ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, &[&conv])?;
        op.set_descs(ffi::ATTR_OPERATION_CONVOLUTION_FORWARD_W, &[&self.keep[w]])?;
        op.set_descs(ffi::ATTR_OPERATION_CONVOLUTION_FORWARD_X, &[&self.keep[x]])?;
        op.set_descs(ffi::ATTR_OPERATION_CONVOLUTION_FORWARD_Y, &[&self.keep[y]])?;
        op.finalize("convolution forward operation")?;
        self.op(conv);
        Ok(self.op(op))
    }

    /// The graph of `ops` → the first execution plan cuDNN's heuristics offer that finalises.
    pub fn plan(self, handle: ffi::Handle, ops: &[usize], what: &str) -> Result<Plan, String> {
        self.plans(handle, ops, what, 1)
    }

    /// Like [`Builder::plan`], keeping up to `tune - 1` further plans that finalise: the plan
    /// cache times them all on the first call and keeps the fastest.
    pub fn plans(self, handle: ffi::Handle, ops: &[usize], what: &str, tune: usize) -> Result<Plan, String> {
        let api = self.api;
        let graph = Desc::new(api, ffi::OPERATIONGRAPH_DESCRIPTOR)?;
        let op_refs: Vec<&Desc> = ops.iter().map(|&i| &self.keep[i]).collect();
        graph.set_descs(ffi::ATTR_OPERATIONGRAPH_OPS, &op_refs)?;
        graph.set_handle(ffi::ATTR_OPERATIONGRAPH_HANDLE, handle)?;
        graph.finalize(&format!("{what} operation graph"))?;

        let heur = Desc::new(api, ffi::ENGINEHEUR_DESCRIPTOR)?;
        heur.set_descs(ffi::ATTR_ENGINEHEUR_OPERATION_GRAPH, &[&graph])?;
        heur.set_enum(ffi::ATTR_ENGINEHEUR_MODE, ffi::TYPE_HEUR_MODE, ffi::HEUR_MODE_A)?;
        heur.finalize("engine heuristics")?;
        let mut count = 0i64;
        api.check("heuristics result count", unsafe {
            (api.get_attr)(heur.raw, ffi::ATTR_ENGINEHEUR_RESULTS, ffi::TYPE_BACKEND_DESCRIPTOR, 0, &mut count, std::ptr::null_mut())
        })?;
        if count <= 0 {
            return Err(format!("cuDNN has no engine for the {what} graph"));
        }
        let configs = (0..count).map(|_| Desc::new(api, ffi::ENGINECFG_DESCRIPTOR)).collect::<Result<Vec<_>, _>>()?;
        let mut raws: Vec<ffi::BackendDesc> = configs.iter().map(|c| c.raw).collect();
        let mut got = 0i64;
        api.check("heuristics results", unsafe {
            (api.get_attr)(heur.raw, ffi::ATTR_ENGINEHEUR_RESULTS, ffi::TYPE_BACKEND_DESCRIPTOR, count, &mut got, raws.as_mut_ptr() as *mut c_void)
        })?;
        let mut errors = Vec::new();
        let mut finalised = Vec::new();
        for cfg in configs.iter().take(got.max(0) as usize) {
            let plan = Desc::new(api, ffi::EXECUTION_PLAN_DESCRIPTOR)?;
            plan.set_handle(ffi::ATTR_EXECUTION_PLAN_HANDLE, handle)?;
            plan.set_descs(ffi::ATTR_EXECUTION_PLAN_ENGINE_CONFIG, &[cfg])?;
            match plan.finalize("execution plan") {
                Ok(()) => {
                    let workspace = plan.get_i64(ffi::ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)?.max(0) as usize;
                    finalised.push((plan, workspace));
                    if finalised.len() >= tune.max(1) {
                        break;
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if finalised.is_empty() {
            return Err(format!("no cuDNN engine accepted the {what} graph: {}", errors.join("; ")));
        }
        let (plan, workspace) = finalised.remove(0);
        let mut keep = self.keep;
        keep.push(graph);
        keep.push(heur);
        keep.extend(configs);
        Ok(Plan { plan, workspace, alternatives: finalised, _keep: keep })
    }
}

/// A finalised execution plan and everything it references.
pub(crate) struct Plan {
    plan: Desc,
    workspace: usize,
    /// Other plans for the same graph, timed against `plan` on first use (then dropped).
    alternatives: Vec<(Desc, usize)>,
    _keep: Vec<Desc>,
}

/// One device's handle, plans (by key; `Err` remembers a graph cuDNN cannot run) and workspace.
pub(crate) struct PlanCache<K> {
    handle: ffi::Handle,
    plans: HashMap<K, Result<Plan, String>>,
    workspace: Option<CudaSlice<u8>>,
}

// The handle is only used while the owner's mutex is held.
unsafe impl<K: Send> Send for PlanCache<K> {}

impl<K: Hash + Eq + Copy> PlanCache<K> {
    /// A handle bound to `dev`'s context.
    pub fn new(api: &'static ffi::Api, dev: &CudaDevice) -> Result<Self, String> {
        dev.cuda_stream().context().bind_to_thread().map_err(|e| e.to_string())?;
        let mut handle = std::ptr::null_mut();
        api.check("cudnnCreate", unsafe { (api.create)(&mut handle) })?;
        Ok(PlanCache { handle, plans: HashMap::new(), workspace: None })
    }

    /// Runs the plan for `key` (built by `build` on first use) on `dev`'s stream with the
    /// tensors `uids` at `ptrs`.
    pub fn execute(
        &mut self,
        api: &'static ffi::Api,
        dev: &CudaDevice,
        key: K,
        build: impl FnOnce(ffi::Handle) -> Result<Plan, String>,
        uids: &[i64],
        ptrs: &[*mut c_void],
    ) -> Result<(), String> {
        let stream: std::sync::Arc<CudaStream> = dev.cuda_stream();
        api.check("cudnnSetStream", unsafe { (api.set_stream)(self.handle, stream.cu_stream() as *mut c_void) })?;
        let handle = self.handle;
        let plan = match self.plans.entry(key).or_insert_with(|| build(handle)) {
            Ok(plan) => plan,
            Err(e) => return Err(e.clone()),
        };
        if !plan.alternatives.is_empty() {
            // first use: time every candidate on these tensors (outputs are never inputs), keep
            // the fastest
            let mut best = (f64::INFINITY, 0);
            let candidates = std::iter::once((&plan.plan, plan.workspace)).chain(plan.alternatives.iter().map(|(p, w)| (p, *w)));
            for (i, (candidate, ws)) in candidates.enumerate() {
                let run = |w: &mut Option<CudaSlice<u8>>| run_plan(api, handle, dev, &stream, w, candidate, ws, uids, ptrs);
                let timed = run(&mut self.workspace).and_then(|()| {
                    stream.synchronize().map_err(|e| e.to_string())?;
                    let t = std::time::Instant::now();
                    for _ in 0..3 {
                        run(&mut self.workspace)?;
                    }
                    stream.synchronize().map_err(|e| e.to_string())?;
                    Ok(t.elapsed().as_secs_f64() / 3.0)
                });
                if let Ok(secs) = timed {
                    if secs < best.0 {
                        best = (secs, i);
                    }
                }
            }
            let alternatives = std::mem::take(&mut plan.alternatives);
            if best.1 > 0 {
                if let Some((chosen, ws)) = alternatives.into_iter().nth(best.1 - 1) {
                    plan.plan = chosen;
                    plan.workspace = ws;
                }
            }
            tracing::debug!(candidate = best.1, ms = best.0 * 1e3, "cuDNN plan chosen by timing");
        }
        run_plan(api, handle, dev, &stream, &mut self.workspace, &plan.plan, plan.workspace, uids, ptrs)
    }

    /// Whether the graph for `key` was found not runnable before.
    pub fn failed(&self, key: &K) -> Option<&str> {
        match self.plans.get(key) {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// Runs `plan` (which needs `ws` bytes of workspace, grown in `workspace` if short) on `stream`.
#[allow(clippy::too_many_arguments)]
fn run_plan(
    api: &'static ffi::Api,
    handle: ffi::Handle,
    dev: &CudaDevice,
    stream: &CudaStream,
    workspace: &mut Option<CudaSlice<u8>>,
    plan: &Desc,
    ws: usize,
    uids: &[i64],
    ptrs: &[*mut c_void],
) -> Result<(), String> {
    if ws > 0 && workspace.as_ref().is_none_or(|w| w.len() < ws) {
        *workspace = Some(dev.alloc_zeros::<u8>(ws).map_err(|e| e.to_string())?);
    }
    let ws_ptr = match (workspace.as_ref(), ws) {
        (Some(w), n) if n > 0 => w.device_ptr(stream).0 as *mut c_void,
        _ => std::ptr::null_mut(),
    };
    let pack = Desc::new(api, ffi::VARIANT_PACK_DESCRIPTOR)?;
    pack.set_i64s(ffi::ATTR_VARIANT_PACK_UNIQUE_IDS, uids)?;
    pack.set_ptrs(ffi::ATTR_VARIANT_PACK_DATA_POINTERS, ptrs)?;
    pack.set_ptrs(ffi::ATTR_VARIANT_PACK_WORKSPACE, &[ws_ptr])?;
    pack.finalize("variant pack")?;
    api.check("cudnnBackendExecute", unsafe { (api.execute)(handle, plan.raw, pack.raw) })
}

/// cuDNN's data type for the graphs' real tensors (bf16 or f16), `None` for others.
pub(crate) fn cudnn_dtype(dt: DType) -> Option<i32> {
    match dt {
        DType::BF16 => Some(ffi::DATA_BFLOAT16),
        DType::F16 => Some(ffi::DATA_HALF),
        _ => None,
    }
}

/// Plan caches by device, behind one mutex per user of the graph API.
pub(crate) type Caches<K> = Mutex<Option<HashMap<candle_core::cuda_backend::DeviceId, PlanCache<K>>>>;

/// Runs `f` with `dev`'s plan cache in `caches` (created on first use).
pub(crate) fn with_cache<K: Hash + Eq + Copy, R>(
    caches: &Caches<K>,
    api: &'static ffi::Api,
    dev: &CudaDevice,
    f: impl FnOnce(&mut PlanCache<K>) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let mut guard = caches.lock().map_err(|_| candle_core::Error::Msg("cuDNN plan cache poisoned".into()))?;
    let caches = guard.get_or_insert_with(HashMap::new);
    let cache = match caches.entry(dev.id()) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => e.insert(PlanCache::new(api, dev).map_err(candle_core::Error::Msg)?),
    };
    f(cache)
}
