//! The one error type of `livetalk-core`: every variant names what was wrong and where, so a
//! caller can show it to the user unchanged.

use std::path::PathBuf;

use crate::frame::PixelFormat;

/// Errors returned by the core types. Bad input never panics; it comes back as one of these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A frame or conversion was asked for with dimensions the format cannot hold.
    #[error("{format} frame of {width}x{height}: {reason}")]
    FrameDimensions {
        format: PixelFormat,
        width: u32,
        height: u32,
        reason: &'static str,
    },

    /// A frame's byte buffer does not match its dimensions and format.
    #[error("{format} frame of {width}x{height} needs {expected} bytes, got {actual}")]
    FrameDataSize {
        format: PixelFormat,
        width: u32,
        height: u32,
        expected: usize,
        actual: usize,
    },

    /// A conversion's destination does not have the source's dimensions.
    #[error("cannot convert a {src_width}x{src_height} frame into a {dst_width}x{dst_height} one")]
    ConversionSizeMismatch {
        src_width: u32,
        src_height: u32,
        dst_width: u32,
        dst_height: u32,
    },

    /// A name that should be a pixel format is not one.
    #[error("unknown pixel format `{0}` (known: rgb24, rgba, bgra, yuyv, i420, nv12)")]
    UnknownPixelFormat(String),

    /// Audio samples inconsistent with their channel count or rate.
    #[error("audio chunk: {0}")]
    InvalidAudio(String),

    /// A persona preset that could not be parsed (TOML syntax, unknown or mistyped field).
    #[error("persona preset {}: {message}", path.display())]
    PersonaSyntax { path: PathBuf, message: String },

    /// A persona preset whose field holds a value that cannot be used.
    #[error("persona preset {}: field `{field}`: {message}", path.display())]
    PersonaField {
        path: PathBuf,
        field: String,
        message: String,
    },

    /// A persona name that no loaded preset has.
    #[error("{}", unknown_persona_message(name, known, broken))]
    UnknownPersona {
        name: String,
        known: Vec<String>,
        /// Preset files found but rejected, so the user knows why a persona may be missing.
        broken: Vec<PathBuf>,
    },

    /// Reading a file or folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

fn unknown_persona_message(name: &str, known: &[String], broken: &[PathBuf]) -> String {
    let mut message = if known.is_empty() {
        format!("unknown persona `{name}`: no persona presets were found")
    } else {
        format!(
            "unknown persona `{name}`; known personas: {}",
            known.join(", ")
        )
    };
    if !broken.is_empty() {
        let files: Vec<String> = broken.iter().map(|p| p.display().to_string()).collect();
        message.push_str(&format!(
            " ({} preset file(s) failed to load: {})",
            broken.len(),
            files.join(", ")
        ));
    }
    message
}
