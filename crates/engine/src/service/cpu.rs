//! The embedded CPU avatar as an [`AvatarEngine`]: the drawn cartoon person of
//! [`crate::avatar::CpuAvatar`], or the persona's PNGTuber pictures when it has them.
//!
//! One frame per block at 30 fps, RGBA at the persona's size. Each frame is driven by its own
//! 1/30 s of audio plus 20 ms before it (no lookahead, so no added latency). A persona's
//! background colour replaces the look's; a background picture is left to the sinks' composer.

use std::time::Duration;

use livetalk_core::persona::Background;
use livetalk_core::{Persona, PixelFormat, VideoFrame};

use crate::avatar::{AvatarError, CpuAvatar, PngTuber};
use crate::engine::{AudioContext, AudioWindow, AvatarEngine, EngineError, Result};

/// Output rate of the CPU avatar.
pub const CPU_AVATAR_FPS: u32 = 30;
/// Audio before each frame that the voice analysis also sees.
const CONTEXT_BEFORE: usize = 320;
/// What one frame may take to draw, with room to spare on a slow core.
const EXPECTED_RENDER_TIME: Duration = Duration::from_millis(20);
const MARGIN: Duration = Duration::from_millis(50);

enum Renderer {
    Drawn(Box<CpuAvatar>),
    Pictures(Box<PngTuber>),
}

/// The CPU avatar engine; `seed` fixes blinks, glances and head motion, so offline output is
/// reproducible.
pub struct CpuAvatarEngine {
    seed: u64,
    renderer: Option<(Renderer, u32, u32)>,
}

impl CpuAvatarEngine {
    pub fn new(seed: u64) -> Self {
        CpuAvatarEngine {
            seed,
            renderer: None,
        }
    }
}

impl AvatarEngine for CpuAvatarEngine {
    fn name(&self) -> &str {
        "cpu-avatar"
    }

    fn prepare(&mut self, persona: &Persona) -> Result<()> {
        self.renderer = None;
        let (width, height) = (persona.size.width, persona.size.height);
        let mut look = persona.look.clone().unwrap_or_default();
        if let Some(Background::Colour(colour)) = &persona.background {
            look.background = *colour;
        }
        let failed = |error: AvatarError| EngineError::Prepare {
            persona: persona.name.clone(),
            reason: error.to_string(),
        };
        let renderer = match &persona.pngtuber {
            Some(pictures) => Renderer::Pictures(Box::new(
                PngTuber::from_files(
                    &pictures.idle,
                    Some(&pictures.talking),
                    pictures.blink.as_deref(),
                    width,
                    height,
                    look.background,
                    self.seed,
                )
                .map_err(failed)?,
            )),
            None => Renderer::Drawn(Box::new(
                CpuAvatar::new(&look, width, height, self.seed).map_err(failed)?,
            )),
        };
        self.renderer = Some((renderer, width, height));
        Ok(())
    }

    fn fps(&self) -> u32 {
        CPU_AVATAR_FPS
    }

    fn frames_per_block(&self) -> usize {
        1
    }

    fn audio_context(&self) -> AudioContext {
        AudioContext {
            before: CONTEXT_BEFORE,
            after: 0,
        }
    }

    fn render(&mut self, audio: &AudioWindow) -> Result<Vec<VideoFrame>> {
        let Some((renderer, width, height)) = &mut self.renderer else {
            return Err(EngineError::Render(
                "the CPU avatar has no persona prepared".into(),
            ));
        };
        let pts = audio.frame_pts(0);
        let mut rgba = vec![0u8; *width as usize * *height as usize * 4];
        let drawn = match renderer {
            Renderer::Drawn(avatar) => avatar.render_frame(audio.samples(), pts, &mut rgba),
            Renderer::Pictures(pictures) => pictures
                .render_frame(audio.samples(), pts, &mut rgba)
                .map(|_| ()),
        };
        drawn.map_err(|e| EngineError::Render(e.to_string()))?;
        Ok(vec![VideoFrame::new(
            *width,
            *height,
            PixelFormat::Rgba,
            rgba,
            pts,
        )?])
    }

    fn latency_budget(&self) -> Duration {
        crate::engine::block_duration(1, CPU_AVATAR_FPS) + EXPECTED_RENDER_TIME + MARGIN
    }

    fn sibling(&self) -> Result<Option<Box<dyn AvatarEngine>>> {
        Ok(Some(Box::new(CpuAvatarEngine::new(self.seed))))
    }
}
