//! The LiveTalk model in candle. One file per model, each with a serde `Config`,
//! a `new(cfg, VarBuilder)` and a `forward` that reads like the paper.

pub mod audio_features;
pub mod checkpoint;
pub mod fixture;
pub mod schedule;
pub mod wav2vec2;
pub mod wan_vae;
pub mod dit;
pub mod taehv;
pub mod image_preprocess;
pub mod layouts;
pub mod umt5;
pub mod prompt_cache;
pub mod gpu_trace;
mod same_conv;
#[cfg(feature = "cuda")]
pub mod cuda;

/// Opens CUDA device `ordinal` for the model. All of candle's work on a device runs on its one
/// stream, so cudarc's per-tensor event tracking (a record and a wait around every kernel) only
/// costs host time: it is switched off.
pub fn open_cuda(ordinal: usize) -> candle_core::Result<candle_core::Device> {
    let device = candle_core::Device::new_cuda(ordinal)?;
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(d) = &device {
        // SAFETY: one stream per device (see above); tensors created before this call keep tracking.
        unsafe { d.disable_event_tracking() };
    }
    Ok(device)
}
