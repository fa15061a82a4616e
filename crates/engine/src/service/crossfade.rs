//! The cross-fade from the old persona's last frame to the new persona's first frames.
//!
//! Frames are blended byte by byte. That is a linear blend for every pixel format the pipeline
//! has (RGB, RGBA, BGRA and the YUV layouts alike, since Y'CbCr is affine in R'G'B'), so no
//! conversion is needed. Frames of another size or format cannot be blended: the switch is then
//! a cut, which still never shows a black frame.

use std::sync::Arc;
use std::time::Duration;

use livetalk_core::VideoFrame;

/// How long the cross-fade lasts.
pub const CROSSFADE: Duration = Duration::from_millis(300);

/// A fade in progress: `from` is held still while the new frames fade in over `total` frames.
#[derive(Debug, Clone)]
pub(crate) struct Crossfade {
    from: Arc<VideoFrame>,
    done: usize,
    total: usize,
}

impl Crossfade {
    /// A fade from `from` lasting `duration` at `fps` (at least one frame).
    pub fn new(from: Arc<VideoFrame>, duration: Duration, fps: u32) -> Self {
        let total = (duration.as_secs_f64() * fps as f64).round().max(1.0) as usize;
        Crossfade {
            from,
            done: 0,
            total,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done >= self.total
    }

    /// Blends the next frame of the new stream in place; the weight of the new frame grows
    /// from 1/(total+1) to total/(total+1), so neither end repeats a frame exactly.
    pub fn apply(&mut self, frame: &mut VideoFrame) {
        if self.is_done() {
            return;
        }
        self.done += 1;
        let from = &self.from;
        if (from.width, from.height, from.format) != (frame.width, frame.height, frame.format)
            || from.data.len() != frame.data.len()
        {
            self.done = self.total;
            return;
        }
        let weight = (self.done as u32 * 256 / (self.total as u32 + 1)).min(256);
        blend(&from.data, &mut frame.data, weight);
    }
}

/// `to = from·(256−w)/256 + to·w/256`, rounded.
fn blend(from: &[u8], to: &mut [u8], weight: u32) {
    let keep = 256 - weight;
    for (out, &old) in to.iter_mut().zip(from) {
        *out = ((old as u32 * keep + *out as u32 * weight + 128) >> 8) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livetalk_core::PixelFormat;

    #[test]
    fn fades_monotonically_between_the_two_frames() {
        let old = VideoFrame::solid(4, 2, PixelFormat::Rgb24, [200, 0, 0], Duration::ZERO).unwrap();
        let mut fade = Crossfade::new(Arc::new(old), Duration::from_millis(300), 10);
        let mut reds = Vec::new();
        while !fade.is_done() {
            let mut new =
                VideoFrame::solid(4, 2, PixelFormat::Rgb24, [0, 0, 100], Duration::ZERO).unwrap();
            fade.apply(&mut new);
            reds.push(new.data[0]);
            assert!(new.data[0] > 0 && new.data[0] < 200);
        }
        assert_eq!(reds.len(), 3);
        assert!(reds.windows(2).all(|w| w[0] > w[1]), "{reds:?}");
    }

    #[test]
    fn other_size_is_a_cut() {
        let old = VideoFrame::solid(4, 2, PixelFormat::Rgb24, [200, 0, 0], Duration::ZERO).unwrap();
        let mut fade = Crossfade::new(Arc::new(old), Duration::from_millis(300), 10);
        let mut new =
            VideoFrame::solid(2, 2, PixelFormat::Rgb24, [0, 0, 100], Duration::ZERO).unwrap();
        let before = new.clone();
        fade.apply(&mut new);
        assert_eq!(new, before);
        assert!(fade.is_done());
    }
}
