//! Framing the model's square frames into the camera picture: the persona's backdrop fills the
//! camera frame, the avatar is scaled to fit (keeping its aspect) and centred on it, and the
//! result is converted to the camera's pixel format (BT.601 limited range).

use livetalk_core::frame::{ColorSpec, PixelFormat, VideoFrame};
use livetalk_core::{convert, Result};

/// What lies behind the avatar.
#[derive(Clone, Debug)]
pub enum Backdrop {
    Colour([u8; 3]),
    /// A picture of any size and format; scaled to cover the whole camera frame.
    Picture(VideoFrame),
}

/// Composes frames of any size into `width`×`height` camera frames of one pixel format.
pub struct Composer {
    width: u32,
    height: u32,
    format: PixelFormat,
    /// The backdrop already scaled to the camera size, RGB24.
    backdrop: Vec<u8>,
    /// RGB24 working canvas, then the camera-format output.
    canvas: Vec<u8>,
    output: Vec<u8>,
    /// Scaling tables for the last source size seen.
    scaler: Option<Scaler>,
}

impl Composer {
    pub fn new(width: u32, height: u32, format: PixelFormat, backdrop: &Backdrop) -> Result<Self> {
        let size = format.frame_size(width, height)?;
        let backdrop = match backdrop {
            Backdrop::Colour(rgb) => VideoFrame::solid(width, height, PixelFormat::Rgb24, *rgb, Default::default())?.data,
            Backdrop::Picture(picture) => {
                let rgb = to_rgb24(picture)?;
                let scaler = Scaler::new((picture.width, picture.height), (width, height), Fit::Cover);
                let mut canvas = vec![0; width as usize * height as usize * 3];
                scaler.draw(&rgb, &mut canvas, width);
                canvas
            }
        };
        Ok(Composer {
            width,
            height,
            format,
            canvas: backdrop.clone(),
            backdrop,
            output: vec![0; size],
            scaler: None,
        })
    }

    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The camera frame for `frame`: backdrop, avatar scaled to fit and centred, converted.
    pub fn compose(&mut self, frame: &VideoFrame) -> Result<&[u8]> {
        frame.validate()?;
        let source = (frame.width, frame.height);
        if self.scaler.as_ref().map(|s| s.source) != Some(source) {
            self.scaler = Some(Scaler::new(source, (self.width, self.height), Fit::Contain));
        }
        let rgb = to_rgb24(frame)?;
        self.canvas.copy_from_slice(&self.backdrop);
        if let Some(scaler) = &self.scaler {
            scaler.draw(&rgb, &mut self.canvas, self.width);
        }
        convert::convert_buffer(
            &self.canvas,
            PixelFormat::Rgb24,
            &mut self.output,
            self.format,
            self.width,
            self.height,
            ColorSpec::BT601_LIMITED,
        )?;
        Ok(&self.output)
    }

    /// The last composed camera frame (the backdrop alone before the first frame).
    pub fn last(&mut self) -> Result<&[u8]> {
        if self.scaler.is_none() {
            convert::convert_buffer(
                &self.backdrop,
                PixelFormat::Rgb24,
                &mut self.output,
                self.format,
                self.width,
                self.height,
                ColorSpec::BT601_LIMITED,
            )?;
        }
        Ok(&self.output)
    }
}

fn to_rgb24(frame: &VideoFrame) -> Result<std::borrow::Cow<'_, [u8]>> {
    if frame.format == PixelFormat::Rgb24 {
        Ok(std::borrow::Cow::Borrowed(&frame.data))
    } else {
        Ok(std::borrow::Cow::Owned(frame.convert(PixelFormat::Rgb24, ColorSpec::BT601_LIMITED)?.data))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fit {
    /// The whole source is visible, centred (bars show the backdrop).
    Contain,
    /// The source covers the whole target, centred (edges cropped).
    Cover,
}

/// Bilinear scaling with precomputed taps (16-bit fixed-point weights), into a centred rectangle.
struct Scaler {
    source: (u32, u32),
    /// Target rectangle: left, top, width, height (clipped to the canvas).
    rect: (usize, usize, usize, usize),
    x_taps: Vec<Tap>,
    y_taps: Vec<Tap>,
}

/// Source sample `i0` weighted (65536 - w), `i0 + 1` weighted `w`.
#[derive(Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    w: u32,
}

impl Scaler {
    fn new(source: (u32, u32), target: (u32, u32), fit: Fit) -> Self {
        let (sw, sh) = (source.0 as f64, source.1 as f64);
        let (tw, th) = (target.0 as f64, target.1 as f64);
        let scale = match fit {
            Fit::Contain => (tw / sw).min(th / sh),
            Fit::Cover => (tw / sw).max(th / sh),
        };
        // Scaled size, rounded to whole pixels; may exceed the target for Cover.
        let (dw, dh) = ((sw * scale).round() as i64, (sh * scale).round() as i64);
        let left = (target.0 as i64 - dw) / 2;
        let top = (target.1 as i64 - dh) / 2;
        let taps = |dst_len: i64, offset: i64, src_len: u32, limit: u32| -> (usize, Vec<Tap>) {
            let first = offset.max(0);
            let last = (offset + dst_len).min(limit as i64);
            let step = src_len as f64 / dst_len as f64;
            let taps = (first..last)
                .map(|d| {
                    // Pixel centres map onto pixel centres.
                    let s = ((d - offset) as f64 + 0.5) * step - 0.5;
                    let s = s.clamp(0.0, (src_len - 1) as f64);
                    let i0 = s.floor() as usize;
                    let i1 = (i0 + 1).min(src_len as usize - 1);
                    Tap { i0, i1, w: ((s - i0 as f64) * 65536.0).round() as u32 }
                })
                .collect();
            (first as usize, taps)
        };
        let (x0, x_taps) = taps(dw, left, source.0, target.0);
        let (y0, y_taps) = taps(dh, top, source.1, target.1);
        Scaler { source, rect: (x0, y0, x_taps.len(), y_taps.len()), x_taps, y_taps }
    }

    /// Draws the RGB24 `src` into the RGB24 `canvas` (of width `canvas_width`).
    fn draw(&self, src: &[u8], canvas: &mut [u8], canvas_width: u32) {
        let (x0, y0, w, _) = self.rect;
        let src_stride = self.source.0 as usize * 3;
        let dst_stride = canvas_width as usize * 3;
        let mut row = vec![0u32; self.source.0 as usize * 3];
        for (dy, ty) in self.y_taps.iter().enumerate() {
            // Vertical pass into a row of 16-bit-scaled values, then the horizontal pass.
            let (a, b) = (&src[ty.i0 * src_stride..][..src_stride], &src[ty.i1 * src_stride..][..src_stride]);
            for ((out, &pa), &pb) in row.iter_mut().zip(a).zip(b) {
                *out = pa as u32 * (65536 - ty.w) + pb as u32 * ty.w;
            }
            let dst_row = &mut canvas[(y0 + dy) * dst_stride + x0 * 3..][..w * 3];
            for (px, tx) in dst_row.chunks_exact_mut(3).zip(&self.x_taps) {
                for c in 0..3 {
                    let left = row[tx.i0 * 3 + c] as u64;
                    let right = row[tx.i1 * 3 + c] as u64;
                    let v = left * (65536 - tx.w) as u64 + right * tx.w as u64;
                    px[c] = ((v + (1 << 31)) >> 32) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A 512×512 RGB frame of four vertical bars (red, green, blue, white).
    fn bars() -> VideoFrame {
        let colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];
        let mut data = Vec::with_capacity(512 * 512 * 3);
        for _ in 0..512 {
            for x in 0..512 {
                data.extend_from_slice(&colours[x / 128]);
            }
        }
        VideoFrame::new(512, 512, PixelFormat::Rgb24, data, Duration::ZERO).unwrap()
    }

    fn rgb_at(composer: &mut Composer, frame: &VideoFrame, x: usize, y: usize) -> [u8; 3] {
        let w = composer.width;
        let h = composer.height;
        let out = composer.compose(frame).unwrap().to_vec();
        let rgb = VideoFrame::new(w, h, composer.format(), out, Duration::ZERO)
            .unwrap()
            .convert(PixelFormat::Rgb24, ColorSpec::BT601_LIMITED)
            .unwrap();
        let i = (y * w as usize + x) * 3;
        [rgb.data[i], rgb.data[i + 1], rgb.data[i + 2]]
    }

    #[test]
    fn square_frame_is_centred_and_scaled_to_the_camera_height() {
        let backdrop = Backdrop::Colour([30, 36, 48]);
        let mut composer = Composer::new(1280, 720, PixelFormat::Rgb24, &backdrop).unwrap();
        let frame = bars();
        // 512 → 720 square at x 280..1000; bars are 180 wide.
        for (x, want) in [(10, [30, 36, 48]), (279, [30, 36, 48]), (370, [255, 0, 0]), (550, [0, 255, 0]),
                          (730, [0, 0, 255]), (910, [255, 255, 255]), (1000, [30, 36, 48]), (1270, [30, 36, 48])] {
            assert_eq!(rgb_at(&mut composer, &frame, x, 360), want, "x={x}");
        }
        // Bar edges are blended, not jagged: the pixel at the red/green boundary mixes both.
        let edge = rgb_at(&mut composer, &frame, 460, 100);
        assert!(edge[0] > 20 && edge[1] > 20 && edge[2] == 0, "{edge:?}");
    }

    #[test]
    fn yuyv_and_i420_outputs_carry_the_bt601_limited_colours() {
        let backdrop = Backdrop::Colour([30, 36, 48]);
        for format in [PixelFormat::Yuyv, PixelFormat::I420] {
            let mut composer = Composer::new(640, 360, format, &backdrop).unwrap();
            let out = composer.compose(&bars()).unwrap();
            assert_eq!(out.len(), format.frame_size(640, 360).unwrap());
            // Luma of the red bar centre (x=185 after 360/512 scaling: square at 140..500) is 81.
            let y = match format {
                PixelFormat::Yuyv => out[(180 * 640 + 185) * 2],
                _ => out[180 * 640 + 185],
            };
            assert_eq!(y, convert::rgb_pixel_to_yuv([255, 0, 0], ColorSpec::BT601_LIMITED).0);
            assert_eq!(y, 81);
        }
    }

    #[test]
    fn picture_backdrop_covers_the_frame_and_last_shows_it_before_any_frame() {
        // A 2×1 picture: left half dark, right half light, stretched to cover 320×180.
        let picture = VideoFrame::new(2, 1, PixelFormat::Rgb24, vec![0, 0, 0, 200, 200, 200], Duration::ZERO).unwrap();
        let mut composer = Composer::new(320, 180, PixelFormat::Rgb24, &Backdrop::Picture(picture)).unwrap();
        let out = composer.last().unwrap();
        assert_eq!(&out[..3], &[0, 0, 0]);
        let right = (179 * 320 + 319) * 3;
        assert_eq!(&out[right..right + 3], &[200, 200, 200]);
    }

    #[test]
    fn frames_with_inconsistent_buffers_are_errors_not_panics() {
        let mut composer = Composer::new(320, 180, PixelFormat::Yuyv, &Backdrop::Colour([0, 0, 0])).unwrap();
        let mut frame = bars();
        frame.data.truncate(100);
        assert!(composer.compose(&frame).is_err());
        assert!(Composer::new(321, 180, PixelFormat::Yuyv, &Backdrop::Colour([0, 0, 0])).is_err());
    }
}
