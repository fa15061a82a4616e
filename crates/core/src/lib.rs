//! Core types shared by every part of livetalk.
pub mod look;
