//! The embedded CPU avatar: a cartoon person drawn with tiny-skia and animated from audio.
//!
//! Static parts (background, body, head, hair, glasses) are rendered once per look and size into
//! cached layers; a frame copies the background, composites the layers at this frame's head and
//! body offsets and redraws only the eyes and mouth. That keeps 720p well above 60 fps on one
//! core (see [`bench`]).

pub mod analysis;
pub mod animation;
pub mod bench;
mod draw;
mod features;
mod hair;
mod layout;
pub mod meter;
mod paint;
pub mod pngtuber;

use std::time::Duration;

use livetalk_core::look::AvatarLook;
use tiny_skia::Pixmap;

pub use analysis::{AnalysisConfig, MouthShape, VoiceAnalyzer, VoiceFrame, SAMPLE_RATE};
pub use animation::Pose;
pub use features::{EyePose, MouthPose, MOUTH_INTERIOR};
pub use meter::MouthMeter;
pub use pngtuber::PngTuber;

use animation::Animator;
use features::Features;
use layout::Layout;
use paint::Sprite;

/// Largest supported output side, pixels.
pub const MAX_SIDE: u32 = 8192;
/// Smallest supported output side, pixels.
pub const MIN_SIDE: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum AvatarError {
    #[error("avatar size {width}x{height} is not supported (each side must be {MIN_SIDE}..={MAX_SIDE} pixels)")]
    Size { width: u32, height: u32 },
    #[error("frame buffer holds {got} bytes, but {width}x{height} RGBA needs {expected}")]
    Buffer { width: u32, height: u32, expected: usize, got: usize },
    #[error("frames must have 3 (RGB) or 4 (RGBA) channels, not {0}")]
    Channels(usize),
    #[error("PNGTuber picture {path}: {reason}")]
    Picture { path: String, reason: String },
}

pub(crate) fn check_size(width: u32, height: u32) -> Result<(), AvatarError> {
    let ok = |side: u32| (MIN_SIDE..=MAX_SIDE).contains(&side);
    if ok(width) && ok(height) {
        Ok(())
    } else {
        Err(AvatarError::Size { width, height })
    }
}

pub(crate) fn check_buffer(width: u32, height: u32, got: usize) -> Result<(), AvatarError> {
    let expected = width as usize * height as usize * 4;
    if got == expected {
        Ok(())
    } else {
        Err(AvatarError::Buffer { width, height, expected, got })
    }
}

/// The drawn avatar for one look and output size.
pub struct CpuAvatar {
    layout: Layout,
    background: Pixmap,
    hair_back: Sprite,
    body: Sprite,
    head: Sprite,
    front: Sprite,
    features: Features,
    analyzer: VoiceAnalyzer,
    animator: Animator,
    last: Option<(VoiceFrame, Pose)>,
}

impl CpuAvatar {
    /// Prepares the cached layers; `seed` fixes blinks, glances and head motion.
    pub fn new(look: &AvatarLook, width: u32, height: u32, seed: u64) -> Result<Self, AvatarError> {
        check_size(width, height)?;
        let layout = Layout::new(look, width, height);
        Ok(Self {
            background: draw::background(&layout, look),
            hair_back: hair::back(&layout, look),
            body: draw::body(&layout, look),
            head: draw::head(&layout, look),
            front: hair::front(&layout, look),
            features: Features::new(&layout, look),
            analyzer: VoiceAnalyzer::default(),
            animator: Animator::new(seed),
            layout,
            last: None,
        })
    }

    pub fn width(&self) -> u32 {
        self.layout.width
    }

    pub fn height(&self) -> u32 {
        self.layout.height
    }

    /// Renders the frame at `t` into `out_rgba` (width × height × 4 bytes, opaque RGBA8).
    /// `audio` is the 16 kHz mono audio around the frame's time (about one frame's worth).
    pub fn render_frame(&mut self, audio: &[f32], t: Duration, out_rgba: &mut [u8]) -> Result<(), AvatarError> {
        check_buffer(self.layout.width, self.layout.height, out_rgba.len())?;
        let voice = self.analyzer.analyze(audio, t);
        let pose = self.animator.update(t, &voice);
        self.draw_pose(&pose, out_rgba);
        self.last = Some((voice, pose));
        Ok(())
    }

    /// Draws a given pose (no audio analysis, no animation state change).
    pub fn draw_pose(&mut self, pose: &Pose, out_rgba: &mut [u8]) {
        let (w, h) = (self.layout.width as usize, self.layout.height as usize);
        out_rgba.copy_from_slice(self.background.data());
        let head = self.layout.shift_pixels(pose.head.0, pose.head.1);
        let body = self.layout.shift_pixels(0.0, pose.body_dy);
        self.hair_back.blit(out_rgba, w, h, head.0, head.1);
        self.body.blit(out_rgba, w, h, body.0, body.1);
        self.head.blit(out_rgba, w, h, head.0, head.1);
        self.features.render(&self.layout, pose.eyes, pose.mouth, out_rgba, head);
        self.front.blit(out_rgba, w, h, head.0, head.1);
    }

    /// Mouth openness (0..=1) of the last rendered frame.
    pub fn mouth_openness(&self) -> f32 {
        self.last.map_or(0.0, |(_, pose)| pose.mouth.openness)
    }

    /// Voice analysis of the last rendered frame.
    pub fn last_voice(&self) -> Option<VoiceFrame> {
        self.last.map(|(voice, _)| voice)
    }

    /// Pose of the last rendered frame.
    pub fn last_pose(&self) -> Option<Pose> {
        self.last.map(|(_, pose)| pose)
    }
}
