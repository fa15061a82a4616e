//! The PNGTuber convention for a user's own pictures: an idle picture, a talking picture (shown
//! while the voice is active) and a blink picture (shown briefly every few seconds while idle),
//! with a small bounce while talking. Pictures are scaled to the output once.

use std::path::Path;
use std::time::Duration;

use image::{imageops::FilterType, RgbaImage};
use livetalk_core::look::Rgb;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::analysis::{smoothing, VoiceAnalyzer, VoiceFrame};
use super::{check_buffer, check_size, AvatarError};

/// Free space around the picture, as a fraction of the output height (room for the bounce).
const MARGIN: f32 = 0.05;
/// Highest bounce, as a fraction of the output height.
const BOUNCE: f32 = 0.025;
const BOUNCES_PER_SECOND: f32 = 2.5;
const BLINK: Duration = Duration::from_millis(150);

/// Which picture a frame shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PngTuberState {
    Idle,
    Talking,
    Blink,
}

pub struct PngTuber {
    width: u32,
    height: u32,
    background: Rgb,
    /// Full opaque frames (picture over background) for idle, talking and blink.
    idle: Vec<u8>,
    talking: Vec<u8>,
    blink: Option<Vec<u8>>,
    analyzer: VoiceAnalyzer,
    rng: ChaCha8Rng,
    next_blink: f64,
    blink_started: f64,
    activity: f32,
    last_t: Option<f64>,
    last: Option<(PngTuberState, VoiceFrame)>,
}

impl PngTuber {
    /// Loads the pictures (PNG or JPEG); `talking` and `blink` are optional.
    pub fn from_files(
        idle: &Path,
        talking: Option<&Path>,
        blink: Option<&Path>,
        width: u32,
        height: u32,
        background: Rgb,
        seed: u64,
    ) -> Result<Self, AvatarError> {
        let load = |path: &Path| {
            image::open(path)
                .map(|img| img.to_rgba8())
                .map_err(|e| AvatarError::Picture { path: path.display().to_string(), reason: e.to_string() })
        };
        let talking = talking.map(load).transpose()?;
        let blink = blink.map(load).transpose()?;
        Self::from_images(&load(idle)?, talking.as_ref(), blink.as_ref(), width, height, background, seed)
    }

    pub fn from_images(
        idle: &RgbaImage,
        talking: Option<&RgbaImage>,
        blink: Option<&RgbaImage>,
        width: u32,
        height: u32,
        background: Rgb,
        seed: u64,
    ) -> Result<Self, AvatarError> {
        check_size(width, height)?;
        let frame = |img: &RgbaImage| compose(img, width, height, background);
        let idle_frame = frame(idle)?;
        let talking = match talking {
            Some(img) => frame(img)?,
            None => idle_frame.clone(),
        };
        let blink = blink.map(frame).transpose()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let next_blink = rng.gen_range(1.0..4.0);
        Ok(Self {
            width,
            height,
            background,
            idle: idle_frame,
            talking,
            blink,
            analyzer: VoiceAnalyzer::default(),
            rng,
            next_blink,
            blink_started: f64::NEG_INFINITY,
            activity: 0.0,
            last_t: None,
            last: None,
        })
    }

    /// Renders the frame at `t` from the audio around it into `out_rgba`.
    pub fn render_frame(&mut self, audio: &[f32], t: Duration, out_rgba: &mut [u8]) -> Result<PngTuberState, AvatarError> {
        check_buffer(self.width, self.height, out_rgba.len())?;
        let now = t.as_secs_f64();
        let dt = self.last_t.map_or(f32::INFINITY, |prev| (now - prev).max(0.0) as f32);
        self.last_t = Some(now);
        let voice = self.analyzer.analyze(audio, t);
        while now >= self.next_blink {
            self.blink_started = self.next_blink;
            self.next_blink += self.rng.gen_range(2.0..6.0);
        }
        let blinking = now - self.blink_started < BLINK.as_secs_f64();
        let state = match (voice.speaking, blinking && self.blink.is_some()) {
            (true, _) => PngTuberState::Talking,
            (false, true) => PngTuberState::Blink,
            (false, false) => PngTuberState::Idle,
        };
        let target = if voice.speaking { 1.0 } else { 0.0 };
        self.activity += (target - self.activity) * smoothing(dt, Duration::from_millis(120));
        let hop = (std::f32::consts::PI * BOUNCES_PER_SECOND * now as f32).sin().abs();
        let lift = (BOUNCE * self.height as f32 * hop * self.activity).round() as usize;

        let source = match state {
            PngTuberState::Idle => &self.idle,
            PngTuberState::Talking => &self.talking,
            PngTuberState::Blink => self.blink.as_ref().unwrap_or(&self.idle),
        };
        // Bounce by shifting rows up; the rows it uncovers are plain background.
        let row = self.width as usize * 4;
        let shifted = lift.min(self.height as usize) * row;
        let kept = out_rgba.len() - shifted;
        out_rgba[..kept].copy_from_slice(&source[shifted..]);
        let bg = [self.background.r, self.background.g, self.background.b, 255];
        for px in out_rgba[kept..].chunks_exact_mut(4) {
            px.copy_from_slice(&bg);
        }
        self.last = Some((state, voice));
        Ok(state)
    }

    /// The picture and voice analysis of the last frame.
    pub fn last(&self) -> Option<(PngTuberState, VoiceFrame)> {
        self.last
    }
}

/// Scales `img` to fit inside the output (keeping its aspect ratio, leaving a margin), centres it
/// and blends it over the background into an opaque RGBA8 frame.
fn compose(img: &RgbaImage, width: u32, height: u32, background: Rgb) -> Result<Vec<u8>, AvatarError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(AvatarError::Picture { path: "(image)".into(), reason: "the picture is empty".into() });
    }
    let room_w = width as f32 * (1.0 - 2.0 * MARGIN);
    let room_h = height as f32 * (1.0 - 2.0 * MARGIN);
    let scale = (room_w / img.width() as f32).min(room_h / img.height() as f32);
    let (sw, sh) = (((img.width() as f32 * scale).round() as u32).max(1), ((img.height() as f32 * scale).round() as u32).max(1));
    let scaled = image::imageops::resize(img, sw, sh, FilterType::CatmullRom);
    let (ox, oy) = ((width - sw) / 2, (height - sh) / 2);
    let mut frame = Vec::with_capacity(width as usize * height as usize * 4);
    for _ in 0..width as usize * height as usize {
        frame.extend_from_slice(&[background.r, background.g, background.b, 255]);
    }
    for (x, y, px) in scaled.enumerate_pixels() {
        let i = (((oy + y) * width + ox + x) * 4) as usize;
        let a = px[3] as u32;
        for c in 0..3 {
            let bg = frame[i + c] as u32;
            frame[i + c] = ((px[c] as u32 * a + bg * (255 - a) + 127) / 255) as u8;
        }
    }
    Ok(frame)
}
