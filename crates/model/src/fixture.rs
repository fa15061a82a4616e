//! Reading the parity fixtures (`fixtures/NAME.io.safetensors` + `fixtures/NAME.fixture.json`).
//!
//! ```no_run
//! use livetalk_model::fixture::{self, Fixture};
//! let fx = Fixture::load(fixture::fixtures_dir(), "dit_block").unwrap();
//! let x = fx.tensor("input.x").unwrap();              // always on the CPU, dtype as stored
//! let f = fx.params["latent_frames"].as_u64().unwrap();
//! let want = fx.tensor("expected.flow_pred").unwrap();
//! let err = fixture::max_abs_diff(&x, &want).unwrap();
//! ```
//!
//! The API is deliberately small and stable; several test suites share it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Error, Result, Tensor};

/// Environment variable that points the tests at another fixture directory
/// (a fixture set with other sizes, for instance).
pub const FIXTURES_DIR_ENV: &str = "LIVETALK_FIXTURES_DIR";

/// The fixture directory: `$LIVETALK_FIXTURES_DIR` if set, else `<workspace>/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(FIXTURES_DIR_ENV) {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// One fixture: its tensors (loaded on the CPU) and its JSON parameters.
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    /// The parsed `NAME.fixture.json`.
    pub params: serde_json::Value,
    tensors: HashMap<String, Tensor>,
}

impl Fixture {
    /// Loads `dir/NAME.io.safetensors` and `dir/NAME.fixture.json`.
    pub fn load(dir: impl AsRef<Path>, name: &str) -> Result<Fixture> {
        let dir = dir.as_ref().to_path_buf();
        let st = dir.join(format!("{name}.io.safetensors"));
        let js = dir.join(format!("{name}.fixture.json"));
        let tensors = candle_core::safetensors::load(&st, &Device::Cpu)
            .map_err(|e| e.context(format!("loading {}", st.display())))?;
        let params = read_json(&js)?;
        Ok(Fixture { name: name.to_string(), dir, params, tensors })
    }

    /// The tensor `name` (e.g. `input.x`, `expected.flow_pred`, `intermediate.t_emb`), on the CPU,
    /// in its stored dtype.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        self.tensors.get(name).cloned().ok_or_else(|| {
            Error::Msg(format!("fixture {}: no tensor named {name:?}", self.name))
        })
    }

    /// Whether the fixture holds a tensor `name`.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }

    /// A path next to the fixture (e.g. the `model` / `model_config` files named in `params`).
    pub fn sibling(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// Reads and parses a JSON file (e.g. `dit.config.json`).
pub fn read_json(path: impl AsRef<Path>) -> Result<serde_json::Value> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Msg(format!("reading {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::Msg(format!("parsing {}: {e}", path.display())))
}

/// max |a - b| over all elements, computed in f64 (any dtype / device; shapes must match);
/// NaN when any difference is NaN.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        return Err(Error::Msg(format!(
            "max_abs_diff: shape mismatch {:?} vs {:?}",
            a.dims(),
            b.dims()
        )));
    }
    if a.elem_count() == 0 {
        return Ok(0.0);
    }
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let diff = (a - b)?.abs()?.flatten_all()?;
    // NaN anywhere -> NaN (max may skip NaNs)
    if diff.sum_all()?.to_scalar::<f64>()?.is_nan() {
        return Ok(f32::NAN);
    }
    let d = diff.max(0)?.to_scalar::<f64>()?;
    Ok(d as f32)
}

/// Err with a readable message when `max_abs_diff(got, want) > atol`; returns the error otherwise.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, atol: f32) -> Result<f32> {
    let d = max_abs_diff(got, want).map_err(|e| e.context(what.to_string()))?;
    if d.is_nan() || d > atol {
        return Err(Error::Msg(format!("{what}: max abs diff {d:e} > atol {atol:e}")));
    }
    Ok(d)
}
