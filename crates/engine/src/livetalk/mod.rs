//! The LiveTalk streaming engine: 16 kHz audio in, 16 fps frames out, block after block, for
//! hours, behind [`crate::engine::AvatarEngine`].
//!
//! - [`audio_stream`]: wav2vec2 + AudioPack per block over a sliding window (left context,
//!   bounded lookahead);
//! - [`positions`]: RoPE positions that stay inside the reference's 1024-entry table forever;
//! - [`decode`]: per-block decoding (TAEHV streaming by default, the Wan VAE's cached decoder as
//!   an option);
//! - [`weights`]: the published files of a weights directory, or the tiny fixtures;
//! - [`engine`]: the engine itself, [`LiveTalkEngine`].
//!
//! The design and the measured figures are in `docs/STREAMING.md`.

pub mod audio_stream;
pub mod decode;
pub mod engine;
pub mod positions;
pub mod select;
pub mod weights;

pub use audio_stream::{AudioStreamConfig, StreamingAudio};
pub use decode::{BlockDecoder, DecoderKind};
pub use engine::{LiveTalkEngine, LiveTalkModels, LiveTalkOptions, StreamStats, LIVETALK_FPS};
pub use positions::PositionScheme;
pub use weights::{FixtureFiles, WeightFiles, WeightsError};
pub use select::{choose_engine, EngineChoice, EngineKind};
