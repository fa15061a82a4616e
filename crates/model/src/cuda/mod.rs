//! CUDA-only fast paths of the model (feature `cuda`): fused attention through cuDNN. Every path
//! here has a portable candle equivalent that the CPU tests run; these are chosen at run time
//! when the tensors live on a CUDA device and the library is present.

mod cudnn_ffi;
mod cudnn_graph;
pub mod conv;
pub mod sdpa;
pub mod fused;
pub mod cupti;
pub mod lt_matmul;
