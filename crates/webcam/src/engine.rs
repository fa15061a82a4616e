//! The "me" persona as an engine, and the router that lets one engine service show either the
//! avatar or the user's webcam.

use std::sync::Arc;
use std::time::Duration;

use livetalk_core::persona::{Background, Webcam};
use livetalk_core::{Persona, PixelFormat, VideoFrame};
use livetalk_engine::engine::{block_duration, AudioContext, AudioWindow, AvatarEngine, EngineError, Result};
use livetalk_vcam::compose::{Backdrop, Composer};

use crate::capture::{Capture, WebcamError};

/// Opens a webcam: [`Capture::open`] for real devices; tests and other sources give their own.
pub type WebcamOpener = Arc<dyn Fn(&Webcam) -> Result<Capture, WebcamError> + Send + Sync>;

/// The webcam is shown at this rate (the camera sinks run at 30 fps).
pub const WEBCAM_FPS: u32 = 30;
/// How long preparing waits for the first picture: the switch fades to the user only once the
/// camera really delivers, so the stream never shows a blank frame.
pub const FIRST_PICTURE_TIMEOUT: Duration = Duration::from_secs(5);
/// A camera that sends nothing for this long while shown is treated as failed (the service
/// then re-prepares, which reopens it).
const STALL_TIMEOUT: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_millis(20);

struct Showing {
    persona: String,
    capture: Capture,
    composer: Composer,
    seen: u64,
    last_new_picture: std::time::Instant,
    width: u32,
    height: u32,
}

/// Passes the user's webcam through: each frame is the newest camera picture fitted onto the
/// persona's backdrop at the persona's size (RGBA, like the CPU avatar, so switches cross-fade).
/// The device is open only while a webcam persona is prepared.
pub struct WebcamEngine {
    opener: WebcamOpener,
    showing: Option<Showing>,
}

impl WebcamEngine {
    /// Real webcams (nokhwa; without the `nokhwa` feature, preparing explains how to build it).
    pub fn new() -> Self {
        Self::with_opener(Arc::new(Capture::open))
    }

    pub fn with_opener(opener: WebcamOpener) -> Self {
        WebcamEngine {
            opener,
            showing: None,
        }
    }

    /// Closes the device.
    pub fn release(&mut self) {
        self.showing = None;
    }
}

impl Default for WebcamEngine {
    fn default() -> Self {
        Self::new()
    }
}

fn backdrop_of(persona: &Persona) -> [u8; 3] {
    let colour = match &persona.background {
        Some(Background::Colour(colour)) => *colour,
        _ => persona.look.clone().unwrap_or_default().background,
    };
    [colour.r, colour.g, colour.b]
}

impl AvatarEngine for WebcamEngine {
    fn name(&self) -> &str {
        "webcam"
    }

    fn prepare(&mut self, persona: &Persona) -> Result<()> {
        self.showing = None;
        let failed = |reason: String| EngineError::Prepare {
            persona: persona.name.clone(),
            reason,
        };
        let webcam = persona
            .webcam
            .as_ref()
            .ok_or_else(|| failed("the persona has no `webcam`".into()))?;
        let capture = (self.opener)(webcam).map_err(|e| failed(e.to_string()))?;
        let (seen, _) = capture
            .wait_newer(0, FIRST_PICTURE_TIMEOUT)
            .map_err(|e| failed(e.to_string()))?;
        let (width, height) = (persona.size.width, persona.size.height);
        let composer = Composer::new(width, height, PixelFormat::Rgba, &Backdrop::Colour(backdrop_of(persona)))
            .map_err(|e| failed(e.to_string()))?;
        self.showing = Some(Showing {
            persona: persona.name.clone(),
            capture,
            // Render shows the first picture too: it is "new" to the composer.
            seen: seen - 1,
            composer,
            last_new_picture: std::time::Instant::now(),
            width,
            height,
        });
        Ok(())
    }

    fn fps(&self) -> u32 {
        WEBCAM_FPS
    }

    fn frames_per_block(&self) -> usize {
        1
    }

    fn audio_context(&self) -> AudioContext {
        AudioContext::default()
    }

    fn render(&mut self, audio: &AudioWindow) -> Result<Vec<VideoFrame>> {
        let showing = self
            .showing
            .as_mut()
            .ok_or_else(|| EngineError::Render("no webcam persona is prepared".into()))?;
        let latest = showing
            .capture
            .latest()
            .map_err(|e| EngineError::Render(e.to_string()))?;
        let data = match latest {
            Some((seq, picture)) if seq != showing.seen => {
                showing.seen = seq;
                showing.last_new_picture = std::time::Instant::now();
                showing
                    .composer
                    .compose(&picture)
                    .map_err(|e| EngineError::Render(format!("webcam picture: {e}")))?
                    .to_vec()
            }
            // No new picture since the last frame: show the last one again, unless the camera
            // has gone quiet for good.
            _ => {
                if showing.last_new_picture.elapsed() > STALL_TIMEOUT {
                    return Err(EngineError::Render(format!(
                        "webcam {} sent no picture for {STALL_TIMEOUT:?} (persona `{}`)",
                        showing.capture.device(),
                        showing.persona
                    )));
                }
                showing
                    .composer
                    .last()
                    .map_err(|e| EngineError::Render(e.to_string()))?
                    .to_vec()
            }
        };
        Ok(vec![VideoFrame::new(
            showing.width,
            showing.height,
            PixelFormat::Rgba,
            data,
            audio.frame_pts(0),
        )?])
    }

    fn latency_budget(&self) -> Duration {
        block_duration(1, WEBCAM_FPS) + MARGIN
    }

    fn sibling(&self) -> Result<Option<Box<dyn AvatarEngine>>> {
        Ok(Some(Box::new(WebcamEngine::with_opener(self.opener.clone()))))
    }
}

/// Which of the router's engines renders.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Active {
    Avatar,
    Webcam,
}

/// The engine a service runs when personas may be avatars or the user's webcam: it prepares
/// webcam personas on a [`WebcamEngine`] and every other persona on the avatar engine, and
/// closes the webcam when an avatar persona takes over.
pub struct PersonaRouter {
    avatar: Box<dyn AvatarEngine>,
    webcam: WebcamEngine,
    active: Active,
}

impl PersonaRouter {
    pub fn new(avatar: Box<dyn AvatarEngine>, webcam: WebcamEngine) -> Self {
        PersonaRouter {
            avatar,
            webcam,
            active: Active::Avatar,
        }
    }

    fn engine(&self) -> &dyn AvatarEngine {
        match self.active {
            Active::Avatar => self.avatar.as_ref(),
            Active::Webcam => &self.webcam,
        }
    }
}

impl AvatarEngine for PersonaRouter {
    fn name(&self) -> &str {
        self.engine().name()
    }

    fn prepare(&mut self, persona: &Persona) -> Result<()> {
        if persona.webcam.is_some() {
            self.webcam.prepare(persona)?;
            self.active = Active::Webcam;
        } else {
            self.avatar.prepare(persona)?;
            self.active = Active::Avatar;
            self.webcam.release();
        }
        Ok(())
    }

    fn fps(&self) -> u32 {
        self.engine().fps()
    }

    fn frames_per_block(&self) -> usize {
        self.engine().frames_per_block()
    }

    fn audio_context(&self) -> AudioContext {
        self.engine().audio_context()
    }

    fn render(&mut self, audio: &AudioWindow) -> Result<Vec<VideoFrame>> {
        match self.active {
            Active::Avatar => self.avatar.render(audio),
            Active::Webcam => self.webcam.render(audio),
        }
    }

    fn latency_budget(&self) -> Duration {
        self.engine().latency_budget()
    }

    /// A router around the avatar's sibling; without one, switches prepare in place (the other
    /// side is untouched until the switch lands).
    fn sibling(&self) -> Result<Option<Box<dyn AvatarEngine>>> {
        Ok(self.avatar.sibling()?.map(|avatar| {
            Box::new(PersonaRouter::new(
                avatar,
                WebcamEngine::with_opener(self.webcam.opener.clone()),
            )) as Box<dyn AvatarEngine>
        }))
    }
}
