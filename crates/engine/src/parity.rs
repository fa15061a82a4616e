//! Parity runner: every fixture of a directory laid out like `fixtures/` through the library's
//! own code paths, each `expected.*` tensor compared with its tolerance.
//!
//! A fixture `NAME` is run when `NAME.fixture.json` and `NAME.io.safetensors` both exist and
//! `NAME` is one of [`FIXTURES`]. All sizes, seeds, window/sink settings and file names come
//! from the JSON files of that directory (the fixture's parameters, `dit.config.json`,
//! `vae.config.json`, `wav2vec2.config.json`, `taehv.config.json`); nothing here knows the
//! sizes of the public fixture set.
//!
//! The calls are the ones the parity tests make (`crates/model/tests/*.rs`,
//! `crates/engine/tests/{dit_stream,pipeline}.rs`): the same loaders, the same forward /
//! encode / decode / generator calls, in the same layouts.
//!
//! Tolerances: float32 uses the checks suggested by `fixtures/README.md`; bf16 uses the
//! figures measured in `docs/PARITY.md`. A `tolerances.json` next to the fixtures (the
//! reference's own float64-vs-float32 noise) is read for reporting only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Error, Result, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use livetalk_model::audio_features::AudioConditioner;
use livetalk_model::checkpoint::Checkpoint;
use livetalk_model::dit::{CausalWanModel, DitConfig, KvCacheConfig};
use livetalk_model::fixture::{self, Fixture};
use livetalk_model::image_preprocess::{match_size, reference_image_tensor};
use livetalk_model::schedule::{self, FlowMatchScheduler, ScheduleConfig};
use livetalk_model::taehv::{TaehvConfig, TaehvDecoder};
use livetalk_model::wan_vae::{WanVae, WanVaeConfig};

use crate::generator::{GeneratorConfig, RecordedNoise, StreamGenerator};
use crate::pipeline::{OfflinePipeline, PipelineFiles, PipelineRequest};

/// The fixtures this runner knows, in the order they are run (cheap ones first).
pub const FIXTURES: &[&str] = &[
    "schedule",
    "image_preprocess",
    "dit_block",
    "dit_stream",
    "audio",
    "vae",
    "taehv",
    "pipeline",
];

/// Where and in which precision the models run.
#[derive(Debug, Clone)]
pub struct ParityOptions {
    pub device: Device,
    /// `F32` or `BF16` (weights and activations of every model).
    pub dtype: DType,
}

impl ParityOptions {
    /// `device`: `cpu` or `cuda` (GPU 0, needs a build with the `cuda` feature); `dtype`:
    /// `f32` or `bf16`.
    pub fn parse(device: &str, dtype: &str) -> Result<Self> {
        let device = match device {
            "cpu" => Device::Cpu,
            "cuda" if !cfg!(feature = "cuda") => {
                return Err(Error::Msg(
                    "--device cuda: this livetalk was built without CUDA support; rebuild it with \
                     `cargo build --release -p livetalk --features cuda`"
                        .into(),
                ))
            }
            "cuda" => livetalk_model::open_cuda(0).map_err(|e| Error::Msg(format!("--device cuda: cannot open CUDA device 0: {e}")))?,
            other => return Err(Error::Msg(format!("unknown device {other:?} (cpu or cuda)"))),
        };
        let dtype = match dtype {
            "f32" => DType::F32,
            "bf16" => DType::BF16,
            other => return Err(Error::Msg(format!("unknown dtype {other:?} (f32 or bf16)"))),
        };
        Ok(Self { device, dtype })
    }
}

impl Default for ParityOptions {
    fn default() -> Self {
        Self { device: Device::Cpu, dtype: DType::F32 }
    }
}

/// How one expected tensor is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Bitwise equal values (max |diff| = 0).
    Exact,
    /// max |diff| <= atol.
    MaxAbs(f64),
    /// max |diff| <= rel * max |expected| (bf16: its error scales with the values).
    RelToMax(f64),
    /// uint8 pictures: every |diff| <= `max_diff`, and the values that differ at all make up
    /// less than `max_fraction` of the tensor.
    Uint8 { max_diff: f64, max_fraction: f64 },
}

/// The comparison of one expected tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorCheck {
    /// `expected.*` name.
    pub name: String,
    pub max_err: f64,
    /// The absolute tolerance `max_err` was held to.
    pub tol: f64,
    pub pass: bool,
    /// Extra figures (uint8: the fraction of values that differ).
    pub note: Option<String>,
}

impl TensorCheck {
    /// max_err / tol (how close to failing); infinite for a failed exact check.
    fn severity(&self) -> f64 {
        if !self.pass {
            return f64::INFINITY;
        }
        if self.tol > 0.0 {
            self.max_err / self.tol
        } else if self.max_err == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    }
}

/// The outcome of one fixture.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It ran; one check per expected tensor.
    Checked(Vec<TensorCheck>),
    /// It could not run (missing weights, broken fixture, shape mismatch, ...): the reason.
    Error(String),
}

#[derive(Debug, Clone)]
pub struct FixtureReport {
    pub name: String,
    pub outcome: Outcome,
    /// The reference's own float64-vs-float32 max |diff| from `tolerances.json`, if present.
    pub reference_noise: Option<f64>,
}

impl FixtureReport {
    pub fn passed(&self) -> bool {
        match &self.outcome {
            Outcome::Checked(checks) => !checks.is_empty() && checks.iter().all(|c| c.pass),
            Outcome::Error(_) => false,
        }
    }

    /// The check closest to (or furthest past) its tolerance.
    pub fn worst(&self) -> Option<&TensorCheck> {
        match &self.outcome {
            Outcome::Checked(checks) => checks
                .iter()
                .max_by(|a, b| a.severity().total_cmp(&b.severity())),
            Outcome::Error(_) => None,
        }
    }

    /// One line per compared tensor: `  expected.X  max_err=…  tol=…  ok|FAIL`.
    pub fn tensor_lines(&self) -> Vec<String> {
        let Outcome::Checked(checks) = &self.outcome else { return vec![] };
        checks
            .iter()
            .map(|c| {
                let note = c.note.as_deref().map(|n| format!("  ({n})")).unwrap_or_default();
                let verdict = if c.pass { "ok" } else { "FAIL" };
                format!("    {}  max_err={:.2e}  tol={:.2e}  {verdict}{note}", c.name, c.max_err, c.tol)
            })
            .collect()
    }

    /// `NAME  max_err=…  tol=…  PASS|FAIL …` (one line).
    pub fn line(&self) -> String {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let reference = self
            .reference_noise
            .map(|r| format!("  (reference f64-vs-f32 noise {r:.1e})"))
            .unwrap_or_default();
        match &self.outcome {
            Outcome::Error(reason) => {
                format!("{}  max_err=-  tol=-  FAIL  {reason}", self.name)
            }
            Outcome::Checked(checks) if checks.is_empty() => format!(
                "{}  max_err=-  tol=-  FAIL  no expected.* tensor was compared",
                self.name
            ),
            Outcome::Checked(checks) => {
                let worst = self.worst().expect("non-empty");
                let failed: Vec<String> = checks
                    .iter()
                    .filter(|c| !c.pass)
                    .map(|c| {
                        let note = c.note.as_deref().map(|n| format!(", {n}")).unwrap_or_default();
                        format!("{}: {:.2e} > {:.2e}{note}", c.name, c.max_err, c.tol)
                    })
                    .collect();
                let detail = if failed.is_empty() {
                    let note = worst.note.as_deref().map(|n| format!(", {n}")).unwrap_or_default();
                    format!("  [{} of {} tensors; worst {}{note}]", checks.len(), checks.len(), worst.name)
                } else {
                    format!("  {}", failed.join("; "))
                };
                format!(
                    "{}  max_err={:.2e}  tol={:.2e}  {verdict}{detail}{reference}",
                    self.name, worst.max_err, worst.tol
                )
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ParityReport {
    pub dir: PathBuf,
    pub dtype: DType,
    pub fixtures: Vec<FixtureReport>,
}

impl ParityReport {
    /// At least one fixture ran, and every one passed.
    pub fn all_passed(&self) -> bool {
        !self.fixtures.is_empty() && self.fixtures.iter().all(FixtureReport::passed)
    }

    pub fn failed(&self) -> usize {
        self.fixtures.iter().filter(|f| !f.passed()).count()
    }
}

/// Runs every known fixture found in `dir`.
pub fn run_dir(dir: impl AsRef<Path>, opts: &ParityOptions) -> ParityReport {
    let dir = dir.as_ref();
    let fixtures = FIXTURES
        .iter()
        .filter(|name| fixture_present(dir, name))
        .map(|name| run_fixture(dir, name, opts))
        .collect();
    ParityReport { dir: dir.to_path_buf(), dtype: opts.dtype, fixtures }
}

/// Whether `dir` holds `NAME.fixture.json` and `NAME.io.safetensors`.
pub fn fixture_present(dir: &Path, name: &str) -> bool {
    dir.join(format!("{name}.fixture.json")).is_file()
        && dir.join(format!("{name}.io.safetensors")).is_file()
}

/// Runs one fixture; every error (and, as a last resort, a panic inside a kernel) becomes
/// [`Outcome::Error`] with a one-line reason.
pub fn run_fixture(dir: &Path, name: &str, opts: &ParityOptions) -> FixtureReport {
    let run = || -> Result<Vec<TensorCheck>> {
        let fx = Fixture::load(dir, name)?;
        let outputs = compute(&fx, opts)?;
        compare(&fx, &outputs, opts.dtype)
    };
    let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(checks)) => Outcome::Checked(checks),
        Ok(Err(e)) => Outcome::Error(one_line(&e.to_string())),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Outcome::Error(format!("internal error: {}", one_line(&msg)))
        }
    };
    FixtureReport { name: name.to_string(), outcome, reference_noise: reference_noise(dir, name) }
}

/// A multi-line candle error (context chains, backtraces) as one line.
fn one_line(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim) {
        let backtrace_frame = line
            .split_once(':')
            .is_some_and(|(head, _)| !head.is_empty() && head.chars().all(|c| c.is_ascii_digit()))
            || line.starts_with("at ")
            || line.starts_with("stack backtrace");
        if line.is_empty() || backtrace_frame || parts.contains(&line) {
            continue;
        }
        parts.push(line);
    }
    parts.join(": ")
}

/// `tolerances.json[NAME].f64_vs_f32.max_abs`, when the directory has one.
fn reference_noise(dir: &Path, name: &str) -> Option<f64> {
    let json = fixture::read_json(dir.join("tolerances.json")).ok()?;
    json.get(name)?.get("f64_vs_f32")?.get("max_abs")?.as_f64()
}

// ---- tolerances --------------------------------------------------------------------------

/// The rule for `expected.<tensor>` of fixture `name` in `dtype`.
///
/// float32: `fixtures/README.md`'s suggested checks. bf16: measured on the CPU (docs/PARITY.md):
/// the error of a bf16 model is a fraction of the values' scale, so it is held relative to the
/// largest |expected| value, with ~3x margin over the measured figures.
pub fn rule(name: &str, tensor: &str, dtype: DType) -> Rule {
    let counts = tensor.ends_with("frames_per_latent");
    if name == "schedule" || counts {
        return Rule::Exact;
    }
    if name == "image_preprocess" || tensor == "expected.ref_image" {
        // No model involved: the same float32 code in every dtype.
        return Rule::MaxAbs(1e-5);
    }
    if dtype == DType::F32 {
        return match (name, tensor) {
            ("dit_stream", _) => Rule::MaxAbs(2e-4),
            ("pipeline", "expected.latents") => Rule::MaxAbs(5e-4),
            ("pipeline", "expected.frames_uint8") => Rule::Uint8 { max_diff: 1.0, max_fraction: 1e-3 },
            _ => Rule::MaxAbs(1e-4),
        };
    }
    match (name, tensor) {
        ("pipeline", "expected.frames_uint8") => Rule::Uint8 { max_diff: BF16_FRAMES_MAX_DIFF, max_fraction: BF16_FRAMES_FRACTION },
        (_, t) => Rule::RelToMax(bf16_rel(name, t)),
    }
}

/// bf16 tolerance relative to max |expected|: about 2.5x the error measured on the CPU
/// (docs/PARITY.md, "bf16").
fn bf16_rel(name: &str, tensor: &str) -> f64 {
    match (name, tensor) {
        // measured 1.1% (flow_pred), 0.7% (6 streamed blocks), 1.1% (pipeline latents)
        ("dit_block" | "dit_stream", _) | ("pipeline", "expected.latents") => 0.03,
        // measured 2.3% (hidden_states.2); audio_emb 1.1-1.6%
        ("audio", _) | ("pipeline", "expected.audio_emb") => 0.06,
        // measured 0.5-0.7% on the CPU (f32 activations), 1.6% on CUDA (true bf16 convolutions)
        ("vae", "expected.image_latent" | "expected.video_latent")
        | ("pipeline", "expected.ref_latent" | "expected.img_lat") => 0.04,
        // measured 12.8%: the tiny random decoder amplifies bf16 weight rounding
        ("vae", _) => 0.3,
        // measured 1.1% on the CPU (f32 activations), 3.1% on CUDA (true bf16 convolutions)
        ("taehv", _) => 0.08,
        _ => 0.03,
    }
}

/// bf16 frames: max |diff| in uint8 steps (measured 55: the bf16 latents' error, decoded by the
/// tiny VAE); most values move by a few steps, so the fraction is reported, not limited.
const BF16_FRAMES_MAX_DIFF: f64 = 128.0;
const BF16_FRAMES_FRACTION: f64 = 1.0;

/// Compares every `expected.*` tensor of the fixture with the output of the same name.
pub fn compare(fx: &Fixture, outputs: &[(String, Tensor)], dtype: DType) -> Result<Vec<TensorCheck>> {
    let mut checks = Vec::new();
    for name in fx.names().into_iter().filter(|n| n.starts_with("expected.")) {
        let want = fx.tensor(&name)?;
        let Some((_, got)) = outputs.iter().find(|(k, _)| *k == name) else {
            return Err(Error::Msg(format!(
                "{}.io.safetensors: {name} has no counterpart in this runner",
                fx.name
            )));
        };
        if got.dims() != want.dims() {
            return Err(Error::Msg(format!(
                "{name}: computed shape {:?}, the fixture has {:?}",
                got.dims(),
                want.dims()
            )));
        }
        checks.push(check(&name, got, &want, rule(&fx.name, &name, dtype))?);
    }
    Ok(checks)
}

fn check(name: &str, got: &Tensor, want: &Tensor, rule: Rule) -> Result<TensorCheck> {
    let max_err = fixture::max_abs_diff(got, want)? as f64;
    let mut note = None;
    let (tol, pass) = match rule {
        Rule::Exact => (0.0, max_err == 0.0),
        Rule::MaxAbs(atol) => (atol, max_err <= atol),
        Rule::RelToMax(rel) => {
            let scale = want.to_dtype(DType::F64)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
            let tol = rel * scale;
            note = Some(format!("max |expected| {scale:.3}"));
            (tol, max_err <= tol)
        }
        Rule::Uint8 { max_diff, max_fraction } => {
            let a = got.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
            let b = want.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
            let diff = (a - b)?.abs()?.flatten_all()?.to_vec1::<f64>()?;
            let differing = diff.iter().filter(|&&d| d > 0.0).count();
            let fraction = differing as f64 / diff.len().max(1) as f64;
            note = Some(format!("{:.4}% of values differ (limit {:.4}%)", fraction * 100.0, max_fraction * 100.0));
            (max_diff, max_err <= max_diff && (fraction < max_fraction || max_fraction >= 1.0 || differing == 0))
        }
    };
    Ok(TensorCheck { name: name.to_string(), max_err, tol, pass: pass && !max_err.is_nan(), note })
}

// ---- reading a fixture's parameters ------------------------------------------------------

fn bad_param(fx: &Fixture, key: &str, what: &str) -> Error {
    Error::Msg(format!("{}.fixture.json: `{key}` {what}", fx.name))
}

fn p_usize(fx: &Fixture, key: &str) -> Result<usize> {
    fx.params
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| bad_param(fx, key, "is missing or not a non-negative integer"))
}

fn p_i64(fx: &Fixture, key: &str) -> Result<i64> {
    fx.params
        .get(key)
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| bad_param(fx, key, "is missing or not an integer"))
}

fn p_f64_or(fx: &Fixture, key: &str, default: f64) -> Result<f64> {
    match fx.params.get(key) {
        None => Ok(default),
        Some(v) => v.as_f64().ok_or_else(|| bad_param(fx, key, "is not a number")),
    }
}

fn p_pairs(fx: &Fixture, key: &str) -> Result<Vec<[usize; 2]>> {
    let err = || bad_param(fx, key, "must be a list of [h, w] pairs");
    let list = fx.params.get(key).and_then(serde_json::Value::as_array).ok_or_else(err)?;
    list.iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([h, w]) => match (h.as_u64(), w.as_u64()) {
                (Some(h), Some(w)) => Ok([h as usize, w as usize]),
                _ => Err(err()),
            },
            _ => Err(err()),
        })
        .collect()
}

fn p_f32_list(fx: &Fixture, key: &str) -> Result<Option<Vec<f32>>> {
    let Some(v) = fx.params.get(key) else { return Ok(None) };
    let err = || bad_param(fx, key, "must be a list of numbers");
    v.as_array()
        .ok_or_else(err)?
        .iter()
        .map(|x| x.as_f64().map(|x| x as f32).ok_or_else(err))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The fixture's files of model `kind` ("dit", "vae", "wav2vec2", "taehv"): the weights named
/// in `model` / `models` (entries may carry a note after a space) and the config named in
/// `model_config`, else `<kind>.weights.safetensors` / `<kind>.config.json`.
fn model_files(fx: &Fixture, kind: &str) -> (PathBuf, PathBuf) {
    let names = |key: &str| -> Vec<String> {
        match fx.params.get(key) {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => vec![],
        }
    };
    let pick = |keys: &[&str]| {
        keys.iter()
            .flat_map(|k| names(k))
            .filter_map(|s| s.split_whitespace().next().map(str::to_string))
            .find(|s| s.starts_with(kind))
    };
    let weights = pick(&["model", "models"]).unwrap_or_else(|| format!("{kind}.weights.safetensors"));
    let config = pick(&["model_config"]).unwrap_or_else(|| format!("{kind}.config.json"));
    (fx.sibling(&config), fx.sibling(&weights))
}

fn input(fx: &Fixture, name: &str, dev: &Device) -> Result<Tensor> {
    fx.tensor(name)?.to_device(dev)
}

/// The sampler settings of a `dit_stream` / `pipeline` fixture.
pub fn generator_config(fx: &Fixture) -> Result<GeneratorConfig> {
    let steps = p_f32_list(fx, "denoising_step_list")?;
    let mut schedule = ScheduleConfig { shift: p_f64_or(fx, "scheduler_shift", 5.0)?, ..Default::default() };
    if let Some(s) = &steps {
        schedule.num_inference_steps = s.len();
    }
    Ok(GeneratorConfig {
        num_frame_per_block: p_usize(fx, "num_frame_per_block")?,
        local_attn_size: p_i64(fx, "local_attn_size")?,
        sink_size: p_usize(fx, "sink_size")?,
        schedule,
        denoising_steps: steps,
        refresh_timestep: p_f64_or(fx, "refresh_timestep", 0.0)? as f32,
        record_steps: false,
    })
}

fn load_dit(fx: &Fixture, opts: &ParityOptions) -> Result<Arc<CausalWanModel>> {
    let (config, weights) = model_files(fx, "dit");
    let cfg = DitConfig::from_json_file(&config)?;
    Ok(Arc::new(CausalWanModel::load(&cfg, &[weights], opts.dtype, &opts.device)?))
}

/// candle's CPU backend has no bf16 convolution (its im2col matmul refuses bf16), so a bf16
/// run on the CPU gives the convolutional decoders (Wan VAE, TAEHV) bf16-rounded weights and
/// float32 activations; on CUDA they run in bf16 throughout. docs/PARITY.md reports both.
pub fn conv_weights_only(opts: &ParityOptions) -> bool {
    opts.dtype == DType::BF16 && opts.device.is_cpu()
}

/// A checkpoint's tensors rounded to bf16 and handed out in float32.
struct Bf16Rounded(VarBuilder<'static>);

impl SimpleBackend for Bf16Rounded {
    fn get(&self, s: candle_core::Shape, name: &str, h: candle_nn::Init, dtype: DType, _: &Device) -> Result<Tensor> {
        self.0.get_with_hints_dtype(s, name, h, DType::BF16)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _: &Device) -> Result<Tensor> {
        self.0.get_unchecked_dtype(name, DType::BF16)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}

fn bf16_rounded_weights(weights: &Path, device: &Device) -> Result<VarBuilder<'static>> {
    let checkpoint = Checkpoint::open(weights).map_err(Error::wrap)?;
    let inner = checkpoint.var_builder(DType::BF16, device);
    Ok(VarBuilder::from_backend(Box::new(Bf16Rounded(inner)), DType::F32, device.clone()))
}

fn load_vae(config: &Path, weights: &Path, opts: &ParityOptions) -> Result<WanVae> {
    let cfg = WanVaeConfig::from_file(config)?;
    if conv_weights_only(opts) {
        WanVae::new(&cfg, bf16_rounded_weights(weights, &opts.device)?)
    } else {
        WanVae::load(&cfg, weights, opts.dtype, &opts.device)
    }
}

// ---- the fixtures ------------------------------------------------------------------------

/// Runs fixture `fx` and returns its outputs keyed by the fixture's `expected.*` names.
pub fn compute(fx: &Fixture, opts: &ParityOptions) -> Result<Vec<(String, Tensor)>> {
    let outputs = match fx.name.as_str() {
        "schedule" => schedule_outputs(fx)?,
        "image_preprocess" => image_preprocess_outputs(fx)?,
        "dit_block" => dit_block_outputs(fx, opts)?,
        "dit_stream" => dit_stream_outputs(fx, opts)?,
        "audio" => audio_outputs(fx, opts)?,
        "vae" => vae_outputs(fx, opts)?,
        "taehv" => taehv_outputs(fx, opts)?,
        "pipeline" => pipeline_outputs(fx, opts)?,
        other => return Err(Error::Msg(format!("unknown fixture {other:?}"))),
    };
    Ok(outputs.into_iter().map(|(k, v)| (format!("expected.{k}"), v)).collect())
}

type Outputs = Vec<(String, Tensor)>;

fn named(pairs: Vec<(&str, Tensor)>) -> Outputs {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn schedule_outputs(fx: &Fixture) -> Result<Outputs> {
    let sch = FlowMatchScheduler::from_json(&fx.params)?;
    let cpu = Device::Cpu;
    let v = |x: &[f32]| Tensor::new(x, &cpu);
    let steps = sch.denoising_step_list();
    let x0_sigmas: Vec<f32> = steps.iter().map(|&t| sch.sigma_x0(t) as f32).collect();
    let add_sigmas: Vec<f32> = steps.iter().skip(1).map(|&t| sch.sigma_at(t)).collect();
    // every forward of a block: the steps, then the cache refresh at t = 0
    let mut t_in = steps.clone();
    t_in.push(GeneratorConfig::default().refresh_timestep);
    let dim = p_f64_or(fx, "freq_dim", 256.0)? as usize;
    let t = v(&t_in)?;
    Ok(named(vec![
        ("scheduler_sigmas", v(sch.sigmas())?),
        ("scheduler_timesteps", v(sch.timesteps())?),
        ("denoising_step_list", v(&steps)?),
        // the bf16 deployment feeds the DiT the steps cast to bf16
        ("denoising_step_list_bf16", v(&steps)?.to_dtype(DType::BF16)?),
        ("sigma_x0_conversion", v(&x0_sigmas)?),
        ("sigma_add_noise", v(&add_sigmas)?),
        ("timestep_embedding_input", t.clone()),
        ("sinusoid_f32", schedule::sinusoidal_embedding(dim, &t)?),
        ("sinusoid_bf16_rounded", schedule::sinusoidal_embedding(dim, &t.to_dtype(DType::BF16)?)?),
    ]))
}

/// `[h, w, 3]` uint8 picture -> (bytes, [h, w]).
fn picture(fx: &Fixture, name: &str) -> Result<(Vec<u8>, [usize; 2])> {
    let t = fx.tensor(name)?;
    match t.dims() {
        &[h, w, 3] => Ok((t.flatten_all()?.to_dtype(DType::U8)?.to_vec1::<u8>()?, [h, w])),
        d => Err(Error::Msg(format!("{}: {name} must be [H, W, 3] uint8, got {d:?}", fx.name))),
    }
}

fn image_preprocess_outputs(fx: &Fixture) -> Result<Outputs> {
    let (rgb, [h, w]) = picture(fx, "input.image_uint8")?;
    let sizes = p_pairs(fx, "image_sizes")?;
    let target = match_size(&sizes, h, w).ok_or_else(|| bad_param(fx, "image_sizes", "is empty"))?;
    Ok(named(vec![("image", reference_image_tensor(&rgb, h, w, target, &Device::Cpu)?)]))
}

fn dit_block_outputs(fx: &Fixture, opts: &ParityOptions) -> Result<Outputs> {
    let dev = &opts.device;
    let model = load_dit(fx, opts)?;
    let x = input(fx, "input.x", dev)?;
    let (batch, _, _, lh, lw) = x.dims5()?;
    let kv_cfg = KvCacheConfig {
        local_attn_size: p_i64(fx, "local_attn_size")?,
        sink_size: p_usize(fx, "sink_size")?,
        frame_seq_length: model.config().frame_seq_length(lh, lw),
        batch,
    };
    let y = input(fx, "input.y", dev)?;
    let audio = input(fx, "input.audio_emb", dev)?;
    let prompt = model.prepare_prompt(&input(fx, "input.context", dev)?)?;
    let run = |timestep: &str| -> Result<Tensor> {
        let mut cache = model.new_kv_cache(kv_cfg)?;
        model.forward(&x, &y, &input(fx, timestep, dev)?, Some(&audio), &prompt, &mut cache, 0, None)
    };
    Ok(named(vec![("flow_pred", run("input.timestep")?), ("flow_pred_perframe_t", run("input.timestep_perframe")?)]))
}

fn dit_stream_outputs(fx: &Fixture, opts: &ParityOptions) -> Result<Outputs> {
    let dev = &opts.device;
    let dit = load_dit(fx, opts)?;
    let gcfg = generator_config(fx)?;
    let nfpb = gcfg.num_frame_per_block;
    let num_blocks = p_usize(fx, "num_blocks")?;
    let img_lat = input(fx, "input.img_lat", dev)?; // [B, C+1, F_total, h, w]
    let c = dit.config().out_dim;
    // the reference latent [B, 1, C, h, w] = frame 0 of the conditioning's latent channels
    let ref_latent = img_lat.narrow(1, 0, c)?.narrow(2, 0, 1)?.permute([0, 2, 1, 3, 4])?.contiguous()?;
    let noise = RecordedNoise {
        initial: fx.tensor("input.noise")?,
        renoise: fx.tensor("input.renoise")?,
        frames_per_block: nfpb,
    };
    let mut gen = StreamGenerator::new(dit, gcfg, &ref_latent, &input(fx, "input.prompt_embeds", dev)?, Box::new(noise))?;
    let audio = input(fx, "input.audio_emb", dev)?;
    let blocks = (0..num_blocks)
        .map(|b| gen.generate_block(Some(&audio.narrow(1, b * nfpb, nfpb)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(named(vec![("latents", Tensor::cat(&blocks, 1)?)]))
}

fn audio_outputs(fx: &Fixture, opts: &ParityOptions) -> Result<Outputs> {
    let (w2v_config, w2v_weights) = model_files(fx, "wav2vec2");
    let (dit_config, dit_weights) = model_files(fx, "dit");
    let cond = AudioConditioner::load(w2v_config, w2v_weights, dit_config, dit_weights, opts.dtype, &opts.device)?;
    let wave = fx.tensor("input.waveform")?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let trace = cond.trace(&wave, p_usize(fx, "num_latent_frames")?)?;
    let mut out = named(vec![
        ("input_values", trace.input_values.clone()),
        ("conv_features", trace.conv_features.clone()),
        ("conv_features_interp", trace.conv_features_interp.clone()),
        ("feature_projection", trace.encoder.projected_features.clone()),
        ("last_hidden_state", trace.encoder.last_hidden_state().clone()),
        // [1, 4F, C] -> the reference's [1, C, 4F, 1, 1]
        ("audio_proj_input", trace.audio_proj_input.transpose(1, 2)?.unsqueeze(3)?.unsqueeze(4)?),
        // [1, F, hidden] -> [1, F, 1, 1, hidden]
        ("audio_proj_output", trace.audio_proj_output.unsqueeze(2)?.unsqueeze(2)?),
        ("audio_emb", trace.audio_emb.clone()),
    ]);
    for (i, h) in trace.encoder.hidden_states.iter().enumerate() {
        out.push((format!("hidden_states.{i}"), h.clone()));
    }
    Ok(out)
}

fn vae_outputs(fx: &Fixture, opts: &ParityOptions) -> Result<Outputs> {
    let dev = &opts.device;
    let (config, weights) = model_files(fx, "vae");
    let vae = load_vae(&config, &weights, opts)?;
    let latents = input(fx, "input.latents", dev)?;
    let mut stream = vae.stream_decoder();
    let (streamed, per_latent) = one_latent_at_a_time(&latents, |l| stream.push(l))?;
    Ok(named(vec![
        ("image_latent", vae.encode(&input(fx, "input.image", dev)?)?),
        ("video_latent", vae.encode(&input(fx, "input.video", dev)?)?),
        ("decode", vae.decode(&latents)?),
        ("stream_decode", streamed),
        ("stream_frames_per_latent", per_latent),
    ]))
}

fn taehv_outputs(fx: &Fixture, opts: &ParityOptions) -> Result<Outputs> {
    let dev = &opts.device;
    let (config, weights) = model_files(fx, "taehv");
    let cfg = TaehvConfig::from_file(&config)?;
    let dec = if conv_weights_only(opts) {
        TaehvDecoder::new(&cfg, bf16_rounded_weights(&weights, &opts.device)?)?
    } else {
        TaehvDecoder::load(&cfg, &weights, opts.dtype, dev)?
    };
    let latents = input(fx, "input.latents", dev)?;
    let mut stream = dec.stream_decoder();
    let (streamed, per_latent) = one_latent_at_a_time(&latents, |l| stream.push(l))?;
    Ok(named(vec![
        ("decode_parallel", dec.decode(&latents)?),
        ("decode_streaming", streamed),
        ("stream_frames_per_latent", per_latent),
    ]))
}

/// Streams `latents` `[N, T, C, h, w]` through `push` one latent frame at a time: the frames
/// concatenated, and the number of frames each push returned (int64 `[T]`).
fn one_latent_at_a_time(latents: &Tensor, mut push: impl FnMut(&Tensor) -> Result<Tensor>) -> Result<(Tensor, Tensor)> {
    let n = latents.dim(1)?;
    let mut frames = Vec::with_capacity(n);
    let mut per_latent = Vec::with_capacity(n);
    for i in 0..n {
        let out = push(&latents.narrow(1, i, 1)?)?;
        per_latent.push(out.dim(1)? as i64);
        frames.push(out);
    }
    Ok((Tensor::cat(&frames, 1)?, Tensor::from_vec(per_latent, n, &Device::Cpu)?))
}

fn pipeline_outputs(fx: &Fixture, opts: &ParityOptions) -> Result<Outputs> {
    let (dit_config, dit_weights) = model_files(fx, "dit");
    let (vae_config, vae_weights) = model_files(fx, "vae");
    let (wav2vec2_config, wav2vec2_weights) = model_files(fx, "wav2vec2");
    let files = PipelineFiles { dit_config, dit_weights, vae_config, vae_weights, wav2vec2_config, wav2vec2_weights };
    let pipeline = if conv_weights_only(opts) {
        let dit = load_dit(fx, opts)?;
        let vae = load_vae(&files.vae_config, &files.vae_weights, opts)?;
        let audio = AudioConditioner::load(
            &files.wav2vec2_config,
            &files.wav2vec2_weights,
            &files.dit_config,
            &files.dit_weights,
            opts.dtype,
            &opts.device,
        )?;
        OfflinePipeline::new(dit, vae, audio)
    } else {
        OfflinePipeline::load(&files, opts.dtype, &opts.device)?
    };
    let out = run_pipeline_fixture(fx, &pipeline)?;
    Ok(named(vec![
        ("ref_image", out.ref_image),
        ("ref_latent", out.ref_latent),
        ("img_lat", out.img_lat),
        ("audio_emb", out.audio_emb),
        ("latents", out.latents),
        ("frames_uint8", out.frames_uint8),
    ]))
}

/// Runs the `pipeline` fixture's inputs (picture, waveform, prompt, recorded noise, sampler
/// settings) through `pipeline`.
pub fn run_pipeline_fixture(fx: &Fixture, pipeline: &OfflinePipeline) -> Result<crate::pipeline::PipelineOutput> {
    let (rgb, image_hw) = picture(fx, "input.image_uint8")?;
    let wave = fx.tensor("input.waveform")?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let generator = generator_config(fx)?;
    let noise = RecordedNoise {
        initial: fx.tensor("input.noise")?,
        renoise: fx.tensor("input.renoise")?,
        frames_per_block: generator.num_frame_per_block,
    };
    let req = PipelineRequest {
        image_rgb: &rgb,
        image_hw,
        image_sizes: p_pairs(fx, "image_sizes")?,
        waveform: &wave,
        prompt_embeds: fx.tensor("input.prompt_embeds")?,
        num_latent_frames: p_usize(fx, "num_latent_frames")?,
        generator,
    };
    pipeline.run(&req, Box::new(noise))
}
