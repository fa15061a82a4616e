//! What a GPU activity trace holds (filled by `cuda::cupti` on CUDA builds; plain data, so the
//! summaries built from it are tested on any machine).

use std::borrow::Cow;
use std::sync::Arc;

/// One traced activity; times in ns on the tracer's clock.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// A kernel on the GPU.
    Kernel { start: u64, end: u64, stream: u32, name: Arc<str> },
    /// A copy on the GPU (`kind`: CUPTI's copy kind, 1 = host to device, 2 = device to host,
    /// 8 = device to device).
    Copy { start: u64, end: u64, stream: u32, bytes: u64, kind: u8 },
    Memset { start: u64, end: u64, stream: u32, bytes: u64 },
    /// A CUDA driver call (its CUPTI callback id, see [`driver_call_name`]), timed on the host.
    Driver { start: u64, end: u64, call: u32 },
}

impl Activity {
    pub fn start(&self) -> u64 {
        match self {
            Activity::Kernel { start, .. } | Activity::Copy { start, .. } | Activity::Memset { start, .. } | Activity::Driver { start, .. } => *start,
        }
    }

    pub fn end(&self) -> u64 {
        match self {
            Activity::Kernel { end, .. } | Activity::Copy { end, .. } | Activity::Memset { end, .. } | Activity::Driver { end, .. } => *end,
        }
    }

    /// Whether it occupies the GPU (kernels, copies, memsets), as opposed to host driver calls.
    pub fn on_gpu(&self) -> bool {
        !matches!(self, Activity::Driver { .. })
    }
}

/// The name of a driver call id (cupti_driver_cbid.h) for the calls a candle program makes.
pub fn driver_call_name(cbid: u32) -> Cow<'static, str> {
    let name = match cbid {
        9 => "cuDeviceGetAttribute",
        16 => "cuCtxGetDevice",
        17 => "cuCtxSynchronize",
        23 => "cuModuleGetFunction",
        85 => "cuFuncGetAttribute",
        119 => "cuEventRecord",
        120 => "cuEventQuery",
        121 => "cuEventSynchronize",
        126 => "cuStreamSynchronize",
        216 => "cuMemsetD8Async",
        220 => "cuMemsetD32Async",
        243 => "cuMemAlloc",
        245 => "cuMemFree",
        249 => "cuMemsetD8",
        276 => "cuMemcpyHtoD",
        277 => "cuMemcpyHtoDAsync",
        278 => "cuMemcpyDtoH",
        279 => "cuMemcpyDtoHAsync",
        281 => "cuMemcpyDtoDAsync",
        295 => "cuStreamWaitEvent",
        303 => "cuCtxSetCurrent",
        304 => "cuCtxGetCurrent",
        306 => "cuMemcpyAsync",
        307 => "cuLaunchKernel",
        310 => "cuPointerGetAttribute",
        374 => "cuOccupancyMaxActiveBlocksPerMultiprocessor",
        442 => "cuLaunchKernel_ptsz",
        481 => "cuFuncSetAttribute",
        499 => "cuStreamIsCapturing",
        514 => "cuGraphLaunch",
        536 => "cuStreamGetCaptureInfo",
        587 => "cuEventRecordWithFlags",
        598 => "cuMemAllocAsync",
        600 => "cuMemFreeAsync",
        611 => "cuMemAllocFromPoolAsync",
        626 => "cuGetProcAddress",
        652 => "cuLaunchKernelEx",
        681 => "cuLibraryGetKernel",
        683 => "cuKernelGetFunction",
        _ => return Cow::Owned(format!("driver call {cbid}")),
    };
    Cow::Borrowed(name)
}
