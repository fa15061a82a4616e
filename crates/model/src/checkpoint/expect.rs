//! What one checkpoint file must hold, derived from a manifest, and the comparison of a
//! checkpoint's header with it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::DType;

use super::{dtype_name, CheckpointError, Manifest, TensorHeader};

/// How shapes are checked.
#[derive(Debug, Clone)]
pub enum ShapeRule {
    /// Exactly the manifest's shapes (the published files).
    Exact,
    /// The manifest's shapes with every size substituted through the map (tiny fixtures).
    Scaled(DimMap),
    /// Only the number of dimensions.
    RankOnly,
}

/// Maps the real model's sizes to a smaller configuration's: built from the two configs, e.g.
/// `dim` 1536 -> 64. Sizes not in the map are the same in both (kernel sizes, 16 latent
/// channels, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DimMap(BTreeMap<usize, usize>);

impl DimMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `real -> small`. A real size mapped twice to different values is a config the map
    /// cannot express; the error says which.
    pub fn with(mut self, real: usize, small: usize) -> Result<Self, String> {
        match self.0.insert(real, small) {
            Some(previous) if previous != small => {
                Err(format!("size {real} maps to both {previous} and {small}"))
            }
            _ => Ok(self),
        }
    }

    /// Adds `real[f] -> small[f]` for each named numeric field of two JSON configs.
    pub fn from_configs(
        real: &serde_json::Value,
        small: &serde_json::Value,
        fields: &[&str],
    ) -> Result<Self, String> {
        let mut map = Self::new();
        for field in fields {
            let value = |config: &serde_json::Value| {
                config
                    .get(field)
                    .and_then(serde_json::Value::as_u64)
                    .map(|v| v as usize)
            };
            match (value(real), value(small)) {
                (Some(r), Some(s)) => map = map.with(r, s)?,
                _ => return Err(format!("config field '{field}' missing or not a number")),
            }
        }
        Ok(map)
    }

    pub fn apply(&self, shape: &[usize]) -> Vec<usize> {
        shape.iter().map(|d| *self.0.get(d).unwrap_or(d)).collect()
    }
}

/// One thing wrong with a checkpoint, relative to what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing {
        tensor: String,
    },
    Unexpected {
        tensor: String,
    },
    Rank {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    Shape {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    Dtype {
        tensor: String,
        expected: DType,
        found: DType,
    },
}

impl Problem {
    pub fn tensor(&self) -> &str {
        match self {
            Problem::Missing { tensor }
            | Problem::Unexpected { tensor }
            | Problem::Rank { tensor, .. }
            | Problem::Shape { tensor, .. }
            | Problem::Dtype { tensor, .. } => tensor,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing { tensor } => write!(f, "tensor '{tensor}' is missing"),
            Problem::Unexpected { tensor } => write!(f, "unexpected tensor '{tensor}'"),
            Problem::Rank {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "tensor '{tensor}' has {} dimensions {found:?}, expected {} like {expected:?}",
                found.len(),
                expected.len()
            ),
            Problem::Shape {
                tensor,
                expected,
                found,
            } => {
                write!(
                    f,
                    "tensor '{tensor}' has shape {found:?}, expected {expected:?}"
                )
            }
            Problem::Dtype {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "tensor '{tensor}' has dtype {}, expected {}",
                dtype_name(*found),
                dtype_name(*expected)
            ),
        }
    }
}

/// The tensors one file must hold: built from a manifest, narrowed for smaller configurations.
#[derive(Debug, Clone)]
pub struct Expected {
    manifest_path: PathBuf,
    tensors: BTreeMap<String, (Vec<usize>, Option<DType>)>,
    shapes: ShapeRule,
    check_dtypes: bool,
    /// Keys whose first dimension may be a multiple of the manifest's (TAEHV TGrow weights:
    /// the loader keeps the last rows).
    dim0_may_grow: BTreeSet<String>,
}

impl Expected {
    /// Full mode: every manifest tensor, exact shapes, dtypes where the manifest gives them.
    pub fn full(manifest: &Manifest) -> Self {
        let tensors = manifest
            .tensors
            .iter()
            .map(|(name, t)| (name.clone(), (t.shape.clone(), manifest.dtype(name))))
            .collect();
        Self {
            manifest_path: manifest.path.clone(),
            tensors,
            shapes: ShapeRule::Exact,
            check_dtypes: true,
            dim0_may_grow: BTreeSet::new(),
        }
    }

    /// Keeps the layer-indexed keys `<family>N.…` only for `N < count` (a model with fewer
    /// layers than the real one).
    pub fn limit_layers(mut self, family: &str, count: usize) -> Self {
        self.tensors
            .retain(|name, _| match layer_index(name, family) {
                Some(index) => index < count,
                None => true,
            });
        self
    }

    /// Keeps only the keys starting with one of `prefixes` (a file holding part of the model).
    pub fn only_prefixes(mut self, prefixes: &[&str]) -> Self {
        self.tensors
            .retain(|name, _| prefixes.iter().any(|p| name.starts_with(p)));
        self
    }

    /// For files that store the model under a prefix (`model.blocks.0…`): the checkpoint's keys
    /// are `prefix + manifest key`. Apply after the rules that select manifest keys.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        let prefixed = |name: String| format!("{prefix}{name}");
        self.tensors = std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(name, spec)| (prefixed(name), spec))
            .collect();
        self.dim0_may_grow = std::mem::take(&mut self.dim0_may_grow)
            .into_iter()
            .map(prefixed)
            .collect();
        self
    }

    pub fn shapes(mut self, rule: ShapeRule) -> Self {
        self.shapes = rule;
        self
    }

    pub fn ignore_dtypes(mut self) -> Self {
        self.check_dtypes = false;
        self
    }

    pub fn allow_larger_dim0<S: AsRef<str>>(mut self, keys: &[S]) -> Self {
        self.dim0_may_grow
            .extend(keys.iter().map(|k| k.as_ref().to_string()));
        self
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The shape a tensor must have under the shape rule (`None` when only the rank counts).
    pub fn expected_shape(&self, name: &str) -> Option<Vec<usize>> {
        let (shape, _) = self.tensors.get(name)?;
        match &self.shapes {
            ShapeRule::Exact => Some(shape.clone()),
            ShapeRule::Scaled(map) => Some(map.apply(shape)),
            ShapeRule::RankOnly => None,
        }
    }

    /// Every problem, in key order.
    pub fn problems<'a>(
        &self,
        headers: impl IntoIterator<Item = (&'a str, &'a TensorHeader)>,
    ) -> Vec<Problem> {
        let found: BTreeMap<&str, &TensorHeader> = headers.into_iter().collect();
        let names: BTreeSet<&str> = found.keys().copied().chain(self.names()).collect();
        names
            .into_iter()
            .filter_map(|name| match (self.tensors.get(name), found.get(name)) {
                (Some(_), None) => Some(Problem::Missing {
                    tensor: name.to_string(),
                }),
                (None, Some(_)) => Some(Problem::Unexpected {
                    tensor: name.to_string(),
                }),
                (Some((shape, dtype)), Some(header)) => self.compare(name, shape, *dtype, header),
                (None, None) => None,
            })
            .collect()
    }

    fn compare(
        &self,
        name: &str,
        manifest_shape: &[usize],
        dtype: Option<DType>,
        header: &TensorHeader,
    ) -> Option<Problem> {
        let tensor = name.to_string();
        if header.shape.len() != manifest_shape.len() {
            let expected = self
                .expected_shape(name)
                .unwrap_or_else(|| manifest_shape.to_vec());
            return Some(Problem::Rank {
                tensor,
                expected,
                found: header.shape.clone(),
            });
        }
        if let Some(expected) = self.expected_shape(name) {
            if !self.shape_fits(name, &expected, &header.shape) {
                return Some(Problem::Shape {
                    tensor,
                    expected,
                    found: header.shape.clone(),
                });
            }
        }
        match dtype {
            Some(expected) if self.check_dtypes && expected != header.dtype => {
                Some(Problem::Dtype {
                    tensor,
                    expected,
                    found: header.dtype,
                })
            }
            _ => None,
        }
    }

    fn shape_fits(&self, name: &str, expected: &[usize], found: &[usize]) -> bool {
        if expected == found {
            return true;
        }
        let grows = self.dim0_may_grow.contains(name);
        match (expected.split_first(), found.split_first()) {
            (Some((&e0, e_rest)), Some((&f0, f_rest))) if grows => {
                e_rest == f_rest && e0 > 0 && f0 >= e0 && f0 % e0 == 0
            }
            _ => false,
        }
    }

    /// The first problem as an error naming `file`, the tensor and the manifest.
    pub fn check<'a>(
        &self,
        file: &Path,
        headers: impl IntoIterator<Item = (&'a str, &'a TensorHeader)>,
    ) -> Result<(), CheckpointError> {
        let mut problems = self.problems(headers).into_iter();
        match problems.next() {
            None => Ok(()),
            Some(problem) => Err(CheckpointError::Mismatch {
                file: file.to_path_buf(),
                manifest: self.manifest_path.clone(),
                problem: Box::new(problem),
                more: problems.count(),
            }),
        }
    }
}

/// `N` for keys `<family>N.…`, e.g. `layer_index("blocks.12.ffn.0.weight", "blocks.") == 12`.
fn layer_index(name: &str, family: &str) -> Option<usize> {
    let rest = name.strip_prefix(family)?;
    let digits = rest.split('.').next()?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_index_reads_the_number_after_the_family() {
        assert_eq!(layer_index("blocks.12.ffn.0.weight", "blocks."), Some(12));
        assert_eq!(layer_index("blocks.x.weight", "blocks."), None);
        assert_eq!(layer_index("head.head.weight", "blocks."), None);
    }

    #[test]
    fn dim_map_refuses_ambiguous_sizes() {
        let map = DimMap::new()
            .with(1536, 64)
            .unwrap()
            .with(4096, 32)
            .unwrap();
        assert_eq!(map.apply(&[1536, 4096, 3]), vec![64, 32, 3]);
        assert!(map.with(1536, 65).unwrap_err().contains("1536"));
    }
}
