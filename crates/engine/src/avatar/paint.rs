//! Small drawing helpers over tiny-skia: colours, a painter in design units, mirrored shapes, and
//! the premultiplied "over" blit used to composite cached layers into the output frame.

use livetalk_core::look::Rgb;
use tiny_skia::{
    FillRule, Mask, Paint, Path, PathBuilder, Pixmap, PixmapMut, Shader, Stroke, Transform,
};

/// Darkens (`factor < 1`) or lightens towards white (`factor > 1`).
pub(crate) fn shade(colour: Rgb, factor: f32) -> Rgb {
    let channel = |c: u8| {
        let c = c as f32;
        let v = if factor <= 1.0 { c * factor } else { c + (255.0 - c) * (factor - 1.0) };
        v.round().clamp(0.0, 255.0) as u8
    };
    Rgb::new(channel(colour.r), channel(colour.g), channel(colour.b))
}

/// Linear mix: `t = 0` gives `a`, `t = 1` gives `b`.
pub(crate) fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    let channel = |x: u8, y: u8| (x as f32 + (y as f32 - x as f32) * t).round() as u8;
    Rgb::new(channel(a.r, b.r), channel(a.g, b.g), channel(a.b, b.b))
}

pub(crate) fn colour(rgb: Rgb, alpha: f32) -> tiny_skia::Color {
    tiny_skia::Color::from_rgba8(rgb.r, rgb.g, rgb.b, (alpha.clamp(0.0, 1.0) * 255.0) as u8)
}

fn solid(rgb: Rgb, alpha: f32) -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color(colour(rgb, alpha));
    paint.anti_alias = true;
    paint
}

/// Draws into a pixmap in design units (see `layout`): `transform` maps design units to the
/// pixmap's pixels.
pub(crate) struct Painter<'a> {
    pub target: PixmapMut<'a>,
    pub transform: Transform,
}

impl<'a> Painter<'a> {
    pub fn new(target: PixmapMut<'a>, transform: Transform) -> Self {
        Self { target, transform }
    }

    pub fn fill(&mut self, path: &Path, rgb: Rgb) {
        self.fill_alpha(path, rgb, 1.0);
    }

    pub fn fill_alpha(&mut self, path: &Path, rgb: Rgb, alpha: f32) {
        let paint = solid(rgb, alpha);
        self.target.fill_path(path, &paint, FillRule::Winding, self.transform, None);
    }

    pub fn fill_masked(&mut self, path: &Path, rgb: Rgb, mask: &Mask) {
        let paint = solid(rgb, 1.0);
        self.target.fill_path(path, &paint, FillRule::Winding, self.transform, Some(mask));
    }

    /// Fills with a gradient whose coordinates are in design units.
    pub fn fill_shader(&mut self, path: &Path, shader: Shader<'static>, mask: Option<&Mask>) {
        let paint = Paint { shader, anti_alias: true, ..Paint::default() };
        self.target.fill_path(path, &paint, FillRule::Winding, self.transform, mask);
    }

    pub fn stroke(&mut self, path: &Path, rgb: Rgb, width: f32) {
        self.stroke_alpha(path, rgb, width, 1.0);
    }

    pub fn stroke_alpha(&mut self, path: &Path, rgb: Rgb, width: f32, alpha: f32) {
        let paint = solid(rgb, alpha);
        let stroke = Stroke {
            width,
            line_cap: tiny_skia::LineCap::Round,
            line_join: tiny_skia::LineJoin::Round,
            ..Stroke::default()
        };
        self.target.stroke_path(path, &paint, &stroke, self.transform, None);
    }
}

/// A point in design units.
pub(crate) type Pt = (f32, f32);

/// One cubic segment: two control points and the end point.
pub(crate) type Cubic = [Pt; 3];

/// A left–right symmetric closed shape: starts at `top` (on the centre line), follows `right`
/// down the right-hand side (ending on the centre line), then mirrors it back up the left.
pub(crate) fn symmetric_shape(top: Pt, right: &[Cubic]) -> Path {
    let mut pb = PathBuilder::new();
    pb.move_to(top.0, top.1);
    for [c1, c2, end] in right {
        pb.cubic_to(c1.0, c1.1, c2.0, c2.1, end.0, end.1);
    }
    // Walk the same segments backwards with x mirrored.
    let mut starts: Vec<Pt> = vec![top];
    starts.extend(right.iter().map(|seg| seg[2]));
    for (i, [c1, c2, _]) in right.iter().enumerate().rev() {
        let start = starts[i];
        pb.cubic_to(-c2.0, c2.1, -c1.0, c1.1, -start.0, start.1);
    }
    pb.close();
    pb.finish().expect("symmetric shape has segments")
}

/// An open or closed path of cubic segments starting at `start`.
pub(crate) fn cubic_path(start: Pt, segments: &[Cubic], close: bool) -> Path {
    let mut pb = PathBuilder::new();
    pb.move_to(start.0, start.1);
    for [c1, c2, end] in segments {
        pb.cubic_to(c1.0, c1.1, c2.0, c2.1, end.0, end.1);
    }
    if close {
        pb.close();
    }
    pb.finish().expect("path has segments")
}

pub(crate) fn ellipse(cx: f32, cy: f32, rx: f32, ry: f32) -> Path {
    let rect = tiny_skia::Rect::from_xywh(cx - rx, cy - ry, 2.0 * rx, 2.0 * ry)
        .expect("ellipse radii are positive");
    PathBuilder::from_oval(rect).expect("ellipse is non-empty")
}

/// A pixmap placed at an integer pixel position of the output frame.
pub(crate) struct Sprite {
    pub pixmap: Pixmap,
    pub x: i32,
    pub y: i32,
}

impl Sprite {
    /// An empty sprite covering the pixel box `[x0, x1) x [y0, y1)`.
    pub fn covering(x0: f32, y0: f32, x1: f32, y1: f32) -> Sprite {
        let (x, y) = (x0.floor() as i32, y0.floor() as i32);
        let w = (x1.ceil() as i32 - x).max(1) as u32;
        let h = (y1.ceil() as i32 - y).max(1) as u32;
        Sprite { pixmap: Pixmap::new(w, h).expect("sprite size is positive"), x, y }
    }

    /// A painter for this sprite whose design units map through `canvas` (design → frame pixels).
    pub fn painter(&mut self, canvas: Transform) -> Painter<'_> {
        let transform = canvas.post_translate(-self.x as f32, -self.y as f32);
        Painter::new(self.pixmap.as_mut(), transform)
    }

    /// Composites this sprite "over" an opaque RGBA8 frame, shifted by `(dx, dy)` pixels.
    pub fn blit(&self, frame: &mut [u8], frame_width: usize, frame_height: usize, dx: i32, dy: i32) {
        blit_over(frame, frame_width, frame_height, &self.pixmap, self.x + dx, self.y + dy);
    }
}

/// `dst = src + dst * (1 - src_alpha)` for premultiplied `src` onto an opaque RGBA8 `dst`.
pub(crate) fn blit_over(dst: &mut [u8], dw: usize, dh: usize, src: &Pixmap, x: i32, y: i32) {
    let (sw, sh) = (src.width() as i32, src.height() as i32);
    let x0 = x.max(0);
    let y0 = y.max(0);
    let x1 = (x + sw).min(dw as i32);
    let y1 = (y + sh).min(dh as i32);
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let span = (x1 - x0) as usize;
    let src_data = src.data();
    for row in y0..y1 {
        let s_off = (((row - y) * sw + (x0 - x)) * 4) as usize;
        let d_off = (row as usize * dw + x0 as usize) * 4;
        let s_row = &src_data[s_off..s_off + span * 4];
        let d_row = &mut dst[d_off..d_off + span * 4];
        for (s, d) in s_row.chunks_exact(4).zip(d_row.chunks_exact_mut(4)) {
            let alpha = s[3];
            if alpha == 255 {
                d.copy_from_slice(s);
            } else if alpha != 0 {
                let keep = 255 - alpha as u32;
                for c in 0..3 {
                    d[c] = s[c].saturating_add(div255(d[c] as u32 * keep));
                }
            }
        }
    }
}

/// Exact rounding division by 255 for values up to 255 * 255.
#[inline]
fn div255(v: u32) -> u8 {
    ((v + 128 + ((v + 128) >> 8)) >> 8) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn div255_matches_rounded_division() {
        for v in 0..=(255 * 255) {
            assert_eq!(div255(v) as u32, (v as f32 / 255.0).round() as u32, "{v}");
        }
    }

    #[test]
    fn shade_and_mix_hit_their_ends() {
        let c = Rgb::new(100, 50, 200);
        assert_eq!(shade(c, 1.0), c);
        assert_eq!(shade(c, 2.0), Rgb::new(255, 255, 255));
        assert_eq!(shade(c, 0.0), Rgb::new(0, 0, 0));
        assert_eq!(mix(c, Rgb::new(0, 0, 0), 1.0), Rgb::new(0, 0, 0));
    }
}
