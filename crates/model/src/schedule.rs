//! Flow-matching timestep schedule of the 4-step causal sampler and the sinusoidal timestep
//! embedding, reproduced bit for bit from the reference (`FlowMatchScheduler`,
//! `sinusoidal_embedding_1d`).
//!
//! * sigmas: `s = linspace(sigma_start, sigma_min, n+1)[:n]` (extra_one_step) in float32, then
//!   `sigma = shift*s / (1 + (shift-1)*s)` in float32; `timesteps = sigma * 1000` (float32).
//! * the sampler feeds the DiT the timesteps rounded to bf16 (the deployment dtype):
//!   [1000, 936, 832, 624] for shift 5 / 4 steps;
//! * x0 conversion and re-noising look up the *nearest* scheduler timestep and use its exact sigma.

use candle_core::{DType, Device, Result, Tensor};
use half::bf16;
use serde::{Deserialize, Serialize};

/// Parameters of `FlowMatchScheduler` (the names of `schedule.fixture.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    #[serde(default = "default_steps")]
    pub num_inference_steps: usize,
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_shift")]
    pub shift: f64,
    #[serde(default)]
    pub sigma_min: f64,
    #[serde(default = "default_sigma_max")]
    pub sigma_max: f64,
    #[serde(default = "default_true")]
    pub extra_one_step: bool,
    /// `warp_denoising_step`: the sampler runs at the scheduler's own timesteps.
    #[serde(default = "default_true")]
    pub warp_denoising_step: bool,
    /// Round the timesteps fed to the DiT to bf16 (what the bf16 deployment does; the fixtures
    /// and the float32 path use the rounded values too).
    #[serde(default = "default_true")]
    pub bf16_timesteps: bool,
}

fn default_steps() -> usize {
    4
}
fn default_train_steps() -> usize {
    1000
}
fn default_shift() -> f64 {
    5.0
}
fn default_sigma_max() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            num_inference_steps: 4,
            num_train_timesteps: 1000,
            shift: 5.0,
            sigma_min: 0.0,
            sigma_max: 1.0,
            extra_one_step: true,
            warp_denoising_step: true,
            bf16_timesteps: true,
        }
    }
}

/// torch.linspace for float32 (same two-sided formula as ATen's CPU kernel).
fn linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    let start = start as f32;
    let end = end as f32;
    match steps {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let halfway = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < halfway {
                        start + step * i as f32
                    } else {
                        end - step * (steps - i - 1) as f32
                    }
                })
                .collect()
        }
    }
}

/// The flow-matching scheduler (float32 tensors `sigmas`, `timesteps` as in the reference).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowMatchScheduler {
    pub config: ScheduleConfig,
    sigmas: Vec<f32>,
    timesteps: Vec<f32>,
}

impl FlowMatchScheduler {
    pub fn new(config: ScheduleConfig) -> Self {
        let n = config.num_inference_steps;
        // denoising_strength = 1
        let sigma_start = config.sigma_min + (config.sigma_max - config.sigma_min) * 1.0;
        let s = if config.extra_one_step {
            let mut v = linspace_f32(sigma_start, config.sigma_min, n + 1);
            v.truncate(n);
            v
        } else {
            linspace_f32(sigma_start, config.sigma_min, n)
        };
        let shift = config.shift as f32;
        let sigmas: Vec<f32> = s.iter().map(|&s| (shift * s) / (1.0 + (shift - 1.0) * s)).collect();
        let ntrain = config.num_train_timesteps as f32;
        let timesteps = sigmas.iter().map(|&s| s * ntrain).collect();
        FlowMatchScheduler { config, sigmas, timesteps }
    }

    /// Reads the parameters from a JSON value (e.g. `schedule.fixture.json`); missing fields take
    /// the deployed defaults (shift 5, 4 steps, extra_one_step, warp, bf16 timesteps).
    pub fn from_json(v: &serde_json::Value) -> Result<Self> {
        let cfg: ScheduleConfig =
            serde_json::from_value(v.clone()).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(Self::new(cfg))
    }

    /// Scheduler sigmas (float32), one per inference step.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// Scheduler timesteps (float32) = sigmas * num_train_timesteps.
    pub fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    /// The timesteps the sampler feeds the DiT (`denoising_step_list`), as float32 values:
    /// the scheduler timesteps, rounded to bf16 when `bf16_timesteps`.
    pub fn denoising_step_list(&self) -> Vec<f32> {
        if self.config.bf16_timesteps {
            self.timesteps.iter().map(|&t| round_bf16(t)).collect()
        } else {
            self.timesteps.clone()
        }
    }

    /// Index of the scheduler timestep nearest to `t` (first one on ties, like torch.argmin).
    pub fn nearest_index(&self, t: f32) -> usize {
        let mut best = 0;
        let mut best_d = f32::INFINITY;
        for (i, &ts) in self.timesteps.iter().enumerate() {
            let d = (ts - t).abs();
            if d < best_d {
                best_d = d;
                best = i;
            }
        }
        best
    }

    /// Sigma of the nearest scheduler timestep (used by re-noising, float32 math).
    pub fn sigma_at(&self, t: f32) -> f32 {
        self.sigmas[self.nearest_index(t)]
    }

    /// Sigma used by the x0 conversion `x0 = x_t - sigma*v`: the nearest timestep is looked up in
    /// float64 (the reference casts both to double), the sigma is the float32 sigma as f64.
    pub fn sigma_x0(&self, t: f32) -> f64 {
        let t = t as f64;
        let mut best = 0;
        let mut best_d = f64::INFINITY;
        for (i, &ts) in self.timesteps.iter().enumerate() {
            let d = (ts as f64 - t).abs();
            if d < best_d {
                best_d = d;
                best = i;
            }
        }
        self.sigmas[best] as f64
    }

    /// Re-noising: `x = (1-sigma)*x0 + sigma*noise` in float32 (sigma of the nearest timestep).
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, t: f32) -> Result<Tensor> {
        let sigma = self.sigma_at(t);
        let a = x0.to_dtype(DType::F32)?.affine((1.0f32 - sigma) as f64, 0.0)?;
        let b = noise.to_dtype(DType::F32)?.affine(sigma as f64, 0.0)?;
        (a + b)?.to_dtype(noise.dtype())
    }

    /// x0 from the flow prediction, `x0 = x_t - sigma*v` in float64, returned as float32.
    pub fn flow_to_x0(&self, flow: &Tensor, xt: &Tensor, t: f32) -> Result<Tensor> {
        let sigma = self.sigma_x0(t);
        let v = flow.to_dtype(DType::F64)?;
        let x = xt.to_dtype(DType::F64)?;
        (x - v.affine(sigma, 0.0)?)?.to_dtype(DType::F32)
    }
}

/// Rounds a float32 to the nearest bf16 (round-to-nearest-even) and back.
pub fn round_bf16(x: f32) -> f32 {
    bf16::from_f32(x).to_f32()
}

/// `10000^(-i/half)` for i in 0..half, in float64.
fn sinusoid_freqs(dim: usize) -> Vec<f64> {
    let half = dim / 2;
    (0..half).map(|i| 10000f64.powf(-(i as f64 / half as f64))).collect()
}

/// `sinusoidal_embedding_1d(dim, t)` in float64: rows `cat[cos(t*f), sin(t*f)]`, f_i = 10000^(-i/(dim/2)).
pub fn sinusoidal_embedding_f64(dim: usize, positions: &[f64]) -> Vec<f64> {
    let freqs = sinusoid_freqs(dim);
    let half = dim / 2;
    let mut out = vec![0f64; positions.len() * 2 * half];
    for (r, &p) in positions.iter().enumerate() {
        let row = &mut out[r * 2 * half..(r + 1) * 2 * half];
        for (i, &f) in freqs.iter().enumerate() {
            let a = p * f;
            row[i] = a.cos();
            row[half + i] = a.sin();
        }
    }
    out
}

/// The embedding of float32 timesteps, computed in float64 and cast to float32.
pub fn sinusoidal_embedding_f32(dim: usize, positions: &[f32]) -> Vec<f32> {
    let p: Vec<f64> = positions.iter().map(|&x| x as f64).collect();
    sinusoidal_embedding_f64(dim, &p).into_iter().map(|x| x as f32).collect()
}

/// The embedding of bf16 timesteps (what the bf16 deployment computes): float64 math, cast to
/// bf16 the way PyTorch does (double -> float -> bf16, round-to-nearest-even).
pub fn sinusoidal_embedding_bf16(dim: usize, positions: &[bf16]) -> Vec<bf16> {
    let p: Vec<f64> = positions.iter().map(|&x| x.to_f64()).collect();
    sinusoidal_embedding_f64(dim, &p).into_iter().map(|x| bf16::from_f32(x as f32)).collect()
}

/// Tensor version: `t` is a 1-D float32 (or bf16) tensor; returns `[len, dim]` in `t`'s dtype
/// (float64 math inside, like the reference).
pub fn sinusoidal_embedding(dim: usize, t: &Tensor) -> Result<Tensor> {
    let n = t.elem_count();
    let device = t.device().clone();
    match t.dtype() {
        DType::BF16 => {
            let v: Vec<bf16> = t.flatten_all()?.to_vec1()?;
            Tensor::from_vec(sinusoidal_embedding_bf16(dim, &v), (n, dim), &device)
        }
        DType::F64 => {
            let v: Vec<f64> = t.flatten_all()?.to_vec1()?;
            Tensor::from_vec(sinusoidal_embedding_f64(dim, &v), (n, dim), &device)
        }
        _ => {
            let v: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
            Tensor::from_vec(sinusoidal_embedding_f32(dim, &v), (n, dim), &device)
        }
    }
}

/// Convenience: float32 embedding tensor on `device` for a list of timesteps.
pub fn sinusoidal_embedding_tensor(dim: usize, t: &[f32], device: &Device) -> Result<Tensor> {
    Tensor::from_vec(sinusoidal_embedding_f32(dim, t), (t.len(), dim), device)
}
