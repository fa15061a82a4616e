//! Engines behind one interface.

pub mod generator;
