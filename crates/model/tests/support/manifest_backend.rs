//! A VarBuilder backend over a golden manifest (`fixtures/manifests/*.manifest.json`): every
//! tensor is a broadcast zero of the manifest's shape (nothing is allocated), and the names the
//! model asked for are recorded. With `open_random` the tensors are materialised random values
//! on a device instead (full-size speed runs without the real files). Shared by the vae and
//! taehv tests.

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
        Self::open_with(file, dtype, &Device::Cpu, None)
    }

    /// Random N(0, std^2) weights of the manifest's shapes on `device`.
    #[allow(dead_code)]
    pub fn open_random(
        file: &str,
        dtype: DType,
        device: &Device,
        std: f64,
    ) -> anyhow::Result<Self> {
        Self::open_with(file, dtype, device, Some(std))
    }

    fn open_with(
        file: &str,
        dtype: DType,
        device: &Device,
        random_std: Option<f64>,
    ) -> anyhow::Result<Self> {
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
            random_std,
        };
        let vb = VarBuilder::from_backend(Box::new(backend), dtype, device.clone());
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
    random_std: Option<f64>,
}

impl Backend {
    fn zeros(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let Some(shape) = self.shapes.get(name) else {
            candle_core::bail!("{name}: not in the manifest")
        };
        self.used.lock().unwrap().push(name.to_string());
        match self.random_std {
            Some(std) => Tensor::randn(0f32, std as f32, shape.as_slice(), dev)?.to_dtype(dtype),
            None => Tensor::zeros((), dtype, dev)?.broadcast_as(shape.as_slice()),
        }
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
