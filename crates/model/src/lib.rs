//! The LiveTalk model in candle. One file per model, each with a serde `Config`,
//! a `new(cfg, VarBuilder)` and a `forward` that reads like the paper.

pub mod fixture;
pub mod schedule;
