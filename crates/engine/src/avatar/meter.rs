//! Measures how open the avatar's mouth is from a rendered (or decoded video) frame, so tests can
//! check that the picture, not just the internal state, follows the voice.
//!
//! It counts mouth-interior-coloured pixels in a box around the mouth that allows for the widest
//! head sway, relative to the interior area of a fully open mouth drawn for the same look and
//! size. Lossy video keeps the interior's colour within the tolerance except at its edges. The
//! interior colour is chosen per look to stay clear of its skin and lips.

use livetalk_core::look::{AvatarLook, Rgb};

use super::features::{colour_distance, Features, MouthPose};
use super::layout::{Layout, MAX_HEAD_SHIFT};
use super::{check_size, AvatarError};

#[derive(Debug, Clone)]
pub struct MouthMeter {
    width: u32,
    height: u32,
    /// Search box in pixels: x0, y0, x1, y1 (exclusive ends).
    search: (usize, usize, usize, usize),
    /// Interior pixels of a fully open mouth.
    full_open_pixels: f32,
    interior: Rgb,
    tolerance: f32,
}

impl MouthMeter {
    pub fn new(look: &AvatarLook, width: u32, height: u32) -> Result<Self, AvatarError> {
        check_size(width, height)?;
        let layout = Layout::new(look, width, height);
        let mut features = Features::new(&layout, look);
        let wide_open = MouthPose { openness: 1.0, width: 1.0, smile: 0.35, roundness: 0.0 };
        let mut scratch = vec![0u8; width as usize * height as usize * 4];
        let closed_eyes = super::EyePose { closure: 0.0, gaze: (0.0, 0.0), brow_lift: 0.0 };
        features.render(&layout, closed_eyes, wide_open, &mut scratch, (0, 0));
        let full_open_pixels = features.interior_pixel_count().max(1.0);
        let (x0, y0, x1, y1) = features.mouth_box();
        let (mx, my) = layout.shift_pixels(MAX_HEAD_SHIFT.0, MAX_HEAD_SHIFT.1);
        let clamp = |v: i32, hi: u32| v.clamp(0, hi as i32) as usize;
        let search = (clamp(x0 - mx - 2, width), clamp(y0 - my - 2, height), clamp(x1 + mx + 2, width), clamp(y1 + my + 2, height));
        let (interior, tolerance) = features.interior();
        Ok(Self { width, height, search, full_open_pixels, interior, tolerance })
    }

    /// Openness in 0..=1 measured from an RGBA8 frame.
    pub fn measure_rgba(&self, rgba: &[u8]) -> Result<f32, AvatarError> {
        self.measure(rgba, 4)
    }

    /// Openness in 0..=1 measured from an RGB8 frame (e.g. decoded video).
    pub fn measure_rgb(&self, rgb: &[u8]) -> Result<f32, AvatarError> {
        self.measure(rgb, 3)
    }

    fn measure(&self, pixels: &[u8], channels: usize) -> Result<f32, AvatarError> {
        let expected = self.width as usize * self.height as usize * channels;
        if pixels.len() != expected {
            return Err(AvatarError::Buffer { width: self.width, height: self.height, expected, got: pixels.len() });
        }
        let (x0, y0, x1, y1) = self.search;
        let stride = self.width as usize * channels;
        let mut count = 0usize;
        for row in y0..y1 {
            let line = &pixels[row * stride + x0 * channels..row * stride + x1 * channels];
            count += line
                .chunks_exact(channels)
                .filter(|px| colour_distance(Rgb::new(px[0], px[1], px[2]), self.interior) < self.tolerance)
                .count();
        }
        Ok((count as f32 / self.full_open_pixels).min(1.0))
    }
}

/// One-shot helper: mouth openness measured from an RGB (3 channels) or RGBA (4) frame of `look`
/// rendered at `width` × `height`.
pub fn measure_mouth_openness(
    look: &AvatarLook,
    width: u32,
    height: u32,
    pixels: &[u8],
    channels: usize,
) -> Result<f32, AvatarError> {
    let meter = MouthMeter::new(look, width, height)?;
    match channels {
        3 => meter.measure_rgb(pixels),
        4 => meter.measure_rgba(pixels),
        _ => Err(AvatarError::Channels(channels)),
    }
}
