//! A VarBuilder backend over a golden manifest (`fixtures/manifests/*.manifest.json`): every
//! tensor is a broadcast zero of the manifest's shape (nothing is allocated), and the names the
//! model asked for are recorded. Shared by the vae and taehv tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

/// A manifest opened as a model source.
pub struct ManifestModel {
    /// The manifest's `config` (the real model's architecture).
    pub config: serde_json::Value,
    pub shapes: BTreeMap<String, Vec<usize>>,
    pub vb: VarBuilder<'static>,
    used: Arc<Mutex<Vec<String>>>,
}

impl ManifestModel {
    pub fn open(file: &str, dtype: DType) -> anyhow::Result<Self> {
        let path = livetalk_model::fixture::fixtures_dir()
            .join("manifests")
            .join(file);
        let m = livetalk_model::fixture::read_json(path)?;
        let shapes: BTreeMap<String, Vec<usize>> = m["tensors"]
            .as_object()
            .expect("manifest tensors")
            .iter()
            .map(|(k, v)| {
                let dims = v["shape"].as_array().expect("shape").iter();
                (
                    k.clone(),
                    dims.map(|d| d.as_u64().expect("dim") as usize).collect(),
                )
            })
            .collect();
        let used = Arc::new(Mutex::new(Vec::new()));
        let backend = Backend {
            shapes: shapes.clone(),
            used: used.clone(),
        };
        let vb = VarBuilder::from_backend(Box::new(backend), dtype, Device::Cpu);
        Ok(Self {
            config: m["config"].clone(),
            shapes,
            vb,
            used,
        })
    }

    /// The names the model asked for, sorted.
    pub fn used(&self) -> Vec<String> {
        let mut used = self.used.lock().unwrap().clone();
        used.sort();
        used
    }
}

struct Backend {
    shapes: BTreeMap<String, Vec<usize>>,
    used: Arc<Mutex<Vec<String>>>,
}

impl Backend {
    fn zeros(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let Some(shape) = self.shapes.get(name) else {
            candle_core::bail!("{name}: not in the manifest")
        };
        self.used.lock().unwrap().push(name.to_string());
        Tensor::zeros((), dtype, dev)?.broadcast_as(shape.as_slice())
    }
}

impl SimpleBackend for Backend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.zeros(name, dtype, dev)?;
        if t.dims() != s.dims() {
            candle_core::bail!(
                "{name}: manifest {:?}, the model asks {:?}",
                t.dims(),
                s.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.zeros(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }
}
