//! Idle frames: what the bus shows before the engine's first frame and when the engine has
//! failed before producing any. After the first real frame the keeper repeats the last good
//! frame instead (the avatar holds still rather than vanishing).

use std::time::Duration;

use livetalk_core::persona::Background;
use livetalk_core::{Persona, PixelFormat, VideoFrame};

/// Used when the persona's background is a picture (decoding it here is not worth it).
const NEUTRAL_BACKDROP: [u8; 3] = [0x26, 0x2b, 0x35];

/// A frame of the persona's size filled with its background colour (never black).
pub fn placeholder_frame(persona: &Persona, format: PixelFormat, pts: Duration) -> VideoFrame {
    let rgb = match &persona.background {
        Some(Background::Colour(colour)) => [colour.r, colour.g, colour.b],
        Some(Background::Picture(_)) => NEUTRAL_BACKDROP,
        // The drawn avatar's own backdrop colour, so the switch to real frames is gentle.
        None => {
            let look = persona.look.clone().unwrap_or_default();
            [look.background.r, look.background.g, look.background.b]
        }
    };
    let size = persona.size;
    VideoFrame::solid(size.width, size.height, format, rgb, pts)
        .or_else(|_| VideoFrame::solid(640, 360, PixelFormat::Rgba, rgb, pts))
        .expect("a 640x360 RGBA frame is always valid")
}
