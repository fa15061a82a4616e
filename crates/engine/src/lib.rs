//! Engines behind one interface.

pub mod generator;
pub mod livetalk;
pub mod parity;
pub mod pipeline;
pub mod avatar;
pub mod bench;
pub mod gpu_profile;
pub mod engine;
pub mod service;
pub mod timeline;
