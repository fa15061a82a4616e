//! The candle `VarBuilder` backend over a [`Checkpoint`]: tensors are read from the map when a
//! module asks for them, shape-checked from the header before any data is copied, converted to
//! the builder's dtype, and every error names the file and the tensor.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use super::{Checkpoint, CheckpointError};

struct CheckpointBackend(Checkpoint);

fn to_candle(error: CheckpointError) -> candle_core::Error {
    candle_core::Error::Msg(error.to_string())
}

impl SimpleBackend for CheckpointBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let checkpoint = &self.0;
        let header = checkpoint.header(name).ok_or_else(|| {
            to_candle(CheckpointError::tensor(
                checkpoint.path(),
                name,
                "missing (the model asked for it)",
            ))
        })?;
        if header.shape != shape.dims() {
            let reason = format!(
                "has shape {:?}, the model expects {:?}",
                header.shape,
                shape.dims()
            );
            return Err(to_candle(CheckpointError::tensor(
                checkpoint.path(),
                name,
                reason,
            )));
        }
        checkpoint.load(name, dtype, device).map_err(to_candle)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.load(name, dtype, device).map_err(to_candle)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.header(name).is_some()
    }
}

pub(crate) fn var_builder(
    checkpoint: Checkpoint,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(CheckpointBackend(checkpoint)),
        dtype,
        device.clone(),
    )
}
