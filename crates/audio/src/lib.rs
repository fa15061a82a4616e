//! Audio in and out.
