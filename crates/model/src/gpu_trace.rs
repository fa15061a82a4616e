//! What a GPU activity trace holds (filled by `cuda::cupti` on CUDA builds; plain data, so the
//! summaries built from it are tested on any machine).

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
    /// A CUDA driver call, timed on the host.
    Driver { start: u64, end: u64, call: u32, name: Arc<str> },
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
