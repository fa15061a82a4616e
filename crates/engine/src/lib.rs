//! Engines behind one interface.

pub mod generator;
pub mod avatar;
