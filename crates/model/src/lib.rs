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
mod same_conv;
