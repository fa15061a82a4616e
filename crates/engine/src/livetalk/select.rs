//! Picking the engine for `livetalk run --engine cpu|livetalk|auto`.
//!
//! `auto` takes LiveTalk when the binary has CUDA, a GPU opens, the weights directory validates
//! and the persona has a reference picture; otherwise the CPU avatar, with one line saying why.

use std::path::PathBuf;

use candle_core::{DType, Device};
use livetalk_core::Persona;

use super::engine::LiveTalkEngine;
use crate::engine::{AvatarEngine, EngineError, Result};
use crate::service::CpuAvatarEngine;

/// Which engine the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Cpu,
    LiveTalk,
    Auto,
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(EngineKind::Cpu),
            "livetalk" => Ok(EngineKind::LiveTalk),
            "auto" => Ok(EngineKind::Auto),
            other => Err(format!("unknown engine `{other}` (cpu, livetalk or auto)")),
        }
    }
}

/// What the command line said.
#[derive(Debug, Clone)]
pub struct EngineChoice {
    pub kind: EngineKind,
    pub weights: Option<PathBuf>,
    /// The tiny fixture models instead of weights (demos and tests).
    pub fixtures: Option<PathBuf>,
    /// `cuda` or `cpu`; `None`: CUDA when it opens, else the CPU.
    pub device: Option<String>,
    /// `bf16` or `f32`; `None`: bf16 on CUDA, f32 on the CPU.
    pub dtype: Option<String>,
    pub seed: u64,
}

fn open_device(name: Option<&str>) -> Result<Device> {
    match name {
        Some("cpu") => Ok(Device::Cpu),
        Some("cuda") | None => {
            if !candle_core::utils::cuda_is_available() {
                return Err(EngineError::InvalidInput("this livetalk binary was built without CUDA".into()));
            }
            livetalk_model::open_cuda(0).map_err(|e| EngineError::InvalidInput(format!("no GPU opens: {e}")))
        }
        Some(other) => Err(EngineError::InvalidInput(format!("unknown device `{other}` (cuda or cpu)"))),
    }
}

fn dtype_for(name: Option<&str>, device: &Device) -> Result<DType> {
    match name {
        Some("bf16") => Ok(DType::BF16),
        Some("f32") => Ok(DType::F32),
        None if device.is_cuda() => Ok(DType::BF16),
        None => Ok(DType::F32),
        Some(other) => Err(EngineError::InvalidInput(format!("unknown dtype `{other}` (bf16 or f32)"))),
    }
}

fn livetalk(choice: &EngineChoice) -> Result<LiveTalkEngine> {
    if let Some(dir) = &choice.fixtures {
        return LiveTalkEngine::from_fixtures(dir);
    }
    let dir = choice
        .weights
        .as_ref()
        .ok_or_else(|| EngineError::InvalidInput("--engine livetalk needs --weights DIR (or --fixtures DIR)".into()))?;
    let device = open_device(choice.device.as_deref())?;
    let dtype = dtype_for(choice.dtype.as_deref(), &device)?;
    LiveTalkEngine::from_weights_dir(dir, &device, dtype)
}

/// The engine to run for `persona`, and a line for the user when `auto` fell back to the CPU.
pub fn choose_engine(choice: &EngineChoice, persona: &Persona) -> Result<(Box<dyn AvatarEngine>, Option<String>)> {
    let cpu = || Box::new(CpuAvatarEngine::new(choice.seed)) as Box<dyn AvatarEngine>;
    match choice.kind {
        EngineKind::Cpu => Ok((cpu(), None)),
        EngineKind::LiveTalk => {
            if persona.image.is_none() {
                return Err(EngineError::Prepare {
                    persona: persona.name.clone(),
                    reason: format!("LiveTalk needs a reference picture: add `image = \"picture.png\"` to {}", persona.origin.display()),
                });
            }
            Ok((Box::new(livetalk(choice)?), None))
        }
        EngineKind::Auto => {
            if persona.image.is_none() {
                return Ok((cpu(), Some(format!("using the CPU avatar: persona {} has no reference picture", persona.name))));
            }
            if choice.weights.is_none() && choice.fixtures.is_none() {
                return Ok((cpu(), Some("using the CPU avatar: no --weights DIR given".into())));
            }
            if choice.fixtures.is_none() && !candle_core::utils::cuda_is_available() {
                return Ok((cpu(), Some("using the CPU avatar: this binary was built without CUDA".into())));
            }
            match livetalk(choice) {
                Ok(engine) => Ok((Box::new(engine), None)),
                Err(e) => Ok((cpu(), Some(format!("using the CPU avatar: {e}")))),
            }
        }
    }
}
