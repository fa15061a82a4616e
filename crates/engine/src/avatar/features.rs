//! The parts that change every frame: eyes (with brows, gaze and eyelids) and the mouth. Each is
//! redrawn into its own small sprite and composited at the head's offset.

use livetalk_core::look::{AvatarLook, Rgb};
use tiny_skia::{FillRule, Mask, Path, PathBuilder};

use super::draw::{linear, radial};
use super::layout::Layout;
use super::paint::{cubic_path, ellipse, mix, shade, Painter, Pt, Sprite};

/// The usual colour of the inside of the mouth; the mouth meter looks for it.
pub const MOUTH_INTERIOR: Rgb = Rgb::new(0x3d, 0x10, 0x18);
/// The inside of the mouth for looks whose skin or lips come close to [`MOUTH_INTERIOR`].
const MOUTH_INTERIOR_DEEP: Rgb = Rgb::new(0x0a, 0x02, 0x05);
/// Largest RGB distance at which the meter counts a pixel as mouth interior.
const INTERIOR_TOLERANCE: f32 = 48.0;
/// RGB distance from the look's colours at which the usual interior colour is kept.
const CLEAR_GAP: f32 = 64.0;
/// The line between the lips, relative to the lip colour.
const SEAM_SHADE: f32 = 0.6;

/// The mouth-interior colour for a look and the distance within which a pixel counts as it:
/// the usual dark red, or a deeper one when the skin, its shadows or the lips come close to it (so
/// the mouth meter works for every skin tone).
pub(crate) fn mouth_interior(look: &AvatarLook) -> (Rgb, f32) {
    let nearest = |c: Rgb| {
        [look.skin, shade(look.skin, 0.62), look.lips, shade(look.lips, SEAM_SHADE)]
            .iter()
            .map(|&other| colour_distance(c, other))
            .fold(f32::MAX, f32::min)
    };
    let (usual, deep) = (nearest(MOUTH_INTERIOR), nearest(MOUTH_INTERIOR_DEEP));
    let (colour, gap) = if usual >= CLEAR_GAP || usual >= deep {
        (MOUTH_INTERIOR, usual)
    } else {
        (MOUTH_INTERIOR_DEEP, deep)
    };
    (colour, (gap * 0.6).min(INTERIOR_TOLERANCE))
}
const TEETH: Rgb = Rgb::new(0xfd, 0xfb, 0xf6);
const EYE_WHITE: Rgb = Rgb::new(0xfc, 0xfb, 0xf8);
const PUPIL: Rgb = Rgb::new(0x1c, 0x14, 0x16);
const WHITE: Rgb = Rgb::new(255, 255, 255);

/// What the eyes do this frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EyePose {
    /// 0 = open, 1 = shut.
    pub closure: f32,
    /// Where the irises point, each in -1..1 (x to the viewer's right, y down).
    pub gaze: (f32, f32),
    /// 0 = resting brows, 1 = raised.
    pub brow_lift: f32,
}

/// What the mouth does this frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MouthPose {
    /// 0 = closed, 1 = fully open.
    pub openness: f32,
    /// Width relative to the resting mouth (narrower for rounded vowels).
    pub width: f32,
    /// How far the corners turn up, 0..1.
    pub smile: f32,
    /// 0 = wide oval opening, 1 = round "o".
    pub roundness: f32,
}

impl MouthPose {
    pub const RESTING: MouthPose = MouthPose { openness: 0.0, width: 1.0, smile: 1.0, roundness: 0.0 };
}

/// Sprites and masks for one look and size, reused every frame.
pub(crate) struct Features {
    eyes: [EyeSprite; 2],
    mouth: Sprite,
    mouth_mask: Mask,
    interior: Rgb,
    interior_tolerance: f32,
    skin: Rgb,
    lips: Rgb,
    iris: Rgb,
    brow: Rgb,
    lash: Rgb,
}

struct EyeSprite {
    sprite: Sprite,
    /// The eye opening (white of the eye), clipping the iris and the lid.
    almond: Mask,
    /// -1 = the eye on the viewer's left, +1 = right.
    side: f32,
}

impl Features {
    pub fn new(layout: &Layout, look: &AvatarLook) -> Self {
        let f = &layout.face;
        let canvas = layout.canvas();
        let eyes = [-1.0f32, 1.0].map(|side| {
            let cx = side * f.eye_dx;
            let (x0, y0) = layout.to_pixels(cx - f.eye_rx - 16.0, f.brow_y - f.brow_weight - 16.0);
            let (x1, y1) = layout.to_pixels(cx + f.eye_rx + 16.0, f.eye_y + f.eye_ry + 10.0);
            let sprite = Sprite::covering(x0, y0, x1, y1);
            let mut almond = Mask::new(sprite.pixmap.width(), sprite.pixmap.height()).expect("eye size");
            let local = canvas.post_translate(-sprite.x as f32, -sprite.y as f32);
            almond.fill_path(&almond_path(layout, side), FillRule::Winding, true, local);
            EyeSprite { sprite, almond, side }
        });
        let reach = f.mouth_half_width * 1.3 + 10.0;
        let (x0, y0) = layout.to_pixels(-reach, f.mouth_y - 22.0);
        let (x1, y1) = layout.to_pixels(reach, f.mouth_y + f.max_opening + f.lower_lip + 16.0);
        let mouth = Sprite::covering(x0, y0, x1, y1);
        let mouth_mask = Mask::new(mouth.pixmap.width(), mouth.pixmap.height()).expect("mouth size");
        let dark = Rgb::new(0x1e, 0x12, 0x10);
        let brow_base = if luminance(look.hair) > 140.0 { shade(look.hair, 0.65) } else { shade(look.hair, 0.9) };
        let (interior, interior_tolerance) = mouth_interior(look);
        Self {
            eyes,
            mouth,
            mouth_mask,
            interior,
            interior_tolerance,
            skin: look.skin,
            lips: look.lips,
            iris: look.eyes,
            brow: brow_base,
            lash: mix(look.hair, dark, 0.7),
        }
    }

    /// Redraws eyes and mouth for this frame's pose, then composites them shifted by `(dx, dy)`.
    pub fn render(
        &mut self,
        layout: &Layout,
        eyes: EyePose,
        mouth: MouthPose,
        frame: &mut [u8],
        shift: (i32, i32),
    ) {
        let (w, h) = (layout.width as usize, layout.height as usize);
        for i in 0..2 {
            self.draw_eye(layout, i, eyes);
            self.eyes[i].sprite.blit(frame, w, h, shift.0, shift.1);
        }
        self.draw_mouth(layout, mouth);
        self.mouth.blit(frame, w, h, shift.0, shift.1);
    }

    fn draw_eye(&mut self, layout: &Layout, index: usize, pose: EyePose) {
        let f = &layout.face;
        let eye = &mut self.eyes[index];
        let side = eye.side;
        let cx = side * f.eye_dx;
        eye.sprite.pixmap.fill(tiny_skia::Color::TRANSPARENT);
        let mut p = eye.sprite.painter(layout.canvas());

        brow(&mut p, layout, side, pose.brow_lift, self.brow);
        let almond = almond_path(layout, side);
        let top = f.eye_y - f.eye_ry * 1.6;
        p.fill_shader(
            &almond,
            linear((0.0, top), (0.0, f.eye_y + 2.0), &[(0.0, mix(EYE_WHITE, self.skin, 0.45), 1.0), (1.0, EYE_WHITE, 1.0)]),
            None,
        );

        let r = f.iris_r;
        let (ix, iy) = (cx + pose.gaze.0 * f.eye_rx * 0.42, f.eye_y + 1.0 + pose.gaze.1 * f.eye_ry * 0.3);
        let iris = ellipse(ix, iy, r, r);
        p.fill_shader(
            &iris,
            radial((ix, iy + r * 0.25), r, &[(0.0, shade(self.iris, 1.35), 1.0), (0.7, self.iris, 1.0), (1.0, shade(self.iris, 0.5), 1.0)]),
            Some(&eye.almond),
        );
        p.fill_masked(&ellipse(ix, iy, r * 0.46, r * 0.46), PUPIL, &eye.almond);
        p.fill_masked(&ellipse(ix + r * 0.34, iy - r * 0.38, r * 0.27, r * 0.27), WHITE, &eye.almond);
        p.fill_masked(&ellipse(ix - r * 0.32, iy + r * 0.36, r * 0.12, r * 0.12), WHITE, &eye.almond);

        // The upper lid comes down to `closure` (the lid is part of the face, so skin-coloured).
        let lid_edge = lid_curve(layout, side, pose.closure);
        let mut lid = PathBuilder::new();
        let (inner, rest) = lid_edge;
        lid.move_to(inner.0, inner.1);
        let [c1, c2, outer] = rest;
        lid.cubic_to(c1.0, c1.1, c2.0, c2.1, outer.0, outer.1);
        lid.line_to(outer.0, top - 4.0);
        lid.line_to(inner.0, top - 4.0);
        lid.close();
        p.fill_masked(&lid.finish().expect("lid"), shade(self.skin, 0.97), &eye.almond);

        let crease_y = f.eye_y - f.eye_ry * 1.75 + pose.closure * 3.0;
        let crease = cubic_path(
            (cx - side * f.eye_rx * 0.7, crease_y + 4.0),
            &[[(cx - side * f.eye_rx * 0.2, crease_y - 2.0), (cx + side * f.eye_rx * 0.5, crease_y - 1.0), (cx + side * f.eye_rx * 0.95, crease_y + 5.0)]],
            false,
        );
        p.stroke_alpha(&crease, shade(self.skin, 0.7), 2.0, 0.45);
        let lower = lower_curve(layout, side);
        p.stroke_alpha(&lower, shade(self.skin, 0.55), 1.6, 0.35);
        let lash = cubic_path(inner, &[rest], false);
        p.stroke(&lash, self.lash, 3.6);
        let flick = cubic_path(outer, &[[(outer.0 + side * 3.0, outer.1 - 1.0), (outer.0 + side * 6.0, outer.1 - 3.0), (outer.0 + side * 8.0, outer.1 - 7.0)]], false);
        p.stroke(&flick, self.lash, 3.0);
    }

    fn draw_mouth(&mut self, layout: &Layout, pose: MouthPose) {
        let f = &layout.face;
        let g = MouthGeometry::new(layout, pose);
        self.mouth.pixmap.fill(tiny_skia::Color::TRANSPARENT);
        let local = layout.canvas().post_translate(-self.mouth.x as f32, -self.mouth.y as f32);
        let mut p = Painter::new(self.mouth.pixmap.as_mut(), local);
        let line = shade(self.lips, SEAM_SHADE);

        if g.opening > 0.6 {
            let interior = g.interior();
            self.mouth_mask.clear();
            self.mouth_mask.fill_path(&interior, FillRule::Winding, true, local);
            p.fill(&interior, self.interior);
            // Upper teeth show as a strip under the upper lip.
            let teeth_h = (g.opening * 0.3).min(7.0);
            let (l, r) = (g.left, g.right);
            let teeth = cubic_path(
                (l.0 * 0.8, l.1 - 6.0),
                &[
                    [(l.0 * 0.4, g.upper_ctrl - 6.0), (r.0 * 0.4, g.upper_ctrl - 6.0), (r.0 * 0.8, r.1 - 6.0)],
                    [(r.0 * 0.8, r.1 + teeth_h), (r.0 * 0.4, g.upper_ctrl * 0.75 + teeth_h), (0.0, g.upper_ctrl * 0.75 + teeth_h)],
                    [(l.0 * 0.4, g.upper_ctrl * 0.75 + teeth_h), (l.0 * 0.8, l.1 + teeth_h), (l.0 * 0.8, l.1 - 6.0)],
                ],
                true,
            );
            p.fill_masked(&teeth, TEETH, &self.mouth_mask);
            let tongue_y = f.mouth_y + g.lower_ctrl * 0.75;
            let tongue = ellipse(0.0, tongue_y + 2.0, g.half_width * 0.55, (g.opening * 0.32).max(2.0));
            p.fill_masked(&tongue, mix(self.lips, self.interior, 0.25), &self.mouth_mask);
        }
        p.fill(&g.lower_lip(f.lower_lip), self.lips);
        let shine_y = f.mouth_y + g.lower_ctrl * 0.75 + f.lower_lip * 0.5;
        p.fill_alpha(&ellipse(g.half_width * 0.15, shine_y, g.half_width * 0.3, f.lower_lip * 0.22), WHITE, 0.3);
        p.fill(&g.upper_lip(f.upper_lip), shade(self.lips, 0.86));
        let seam = cubic_path(g.left, &[[(g.left.0 * 0.5, f.mouth_y + g.upper_ctrl), (g.right.0 * 0.5, f.mouth_y + g.upper_ctrl), g.right]], false);
        p.stroke(&seam, line, if g.opening > 0.6 { 1.2 } else { 2.2 });
        // Dimples deepen with the smile.
        for corner in [g.left, g.right] {
            let side = corner.0.signum();
            let dimple = cubic_path(
                (corner.0 + side * 1.0, corner.1 - 5.0),
                &[[(corner.0 + side * 5.0, corner.1 - 2.0), (corner.0 + side * 5.0, corner.1 + 2.0), (corner.0 + side * 2.0, corner.1 + 5.0)]],
                false,
            );
            p.stroke_alpha(&dimple, shade(self.skin, 0.62), 2.0, 0.25 + 0.45 * pose.smile);
        }
    }

    /// The mouth sprite's pixel box at rest (the mouth meter searches around it).
    pub fn mouth_box(&self) -> (i32, i32, i32, i32) {
        let (w, h) = (self.mouth.pixmap.width() as i32, self.mouth.pixmap.height() as i32);
        (self.mouth.x, self.mouth.y, self.mouth.x + w, self.mouth.y + h)
    }

    /// The mouth-interior colour and the meter's tolerance around it.
    pub fn interior(&self) -> (Rgb, f32) {
        (self.interior, self.interior_tolerance)
    }

    /// Mostly-covered interior pixels of the mouth sprite as last drawn.
    pub fn interior_pixel_count(&self) -> f32 {
        self.mouth
            .pixmap
            .pixels()
            .iter()
            .filter(|px| {
                let c = px.demultiply();
                px.alpha() > 128 && colour_distance(Rgb::new(c.red(), c.green(), c.blue()), self.interior) < self.interior_tolerance
            })
            .count() as f32
    }
}

pub(crate) fn colour_distance(a: Rgb, b: Rgb) -> f32 {
    let d = |x: u8, y: u8| (x as f32 - y as f32).powi(2);
    (d(a.r, b.r) + d(a.g, b.g) + d(a.b, b.b)).sqrt()
}

fn luminance(c: Rgb) -> f32 {
    0.299 * c.r as f32 + 0.587 * c.g as f32 + 0.114 * c.b as f32
}

/// Inner and outer corner of an eye (inner is towards the nose).
fn eye_corners(layout: &Layout, side: f32) -> (Pt, Pt) {
    let f = &layout.face;
    let cx = side * f.eye_dx;
    ((cx - side * f.eye_rx, f.eye_y + 1.0), (cx + side * f.eye_rx, f.eye_y - 2.0))
}

/// The upper lid edge for `closure` 0 (open, resting) .. 1 (shut along the lower lid).
fn lid_curve(layout: &Layout, side: f32, closure: f32) -> (Pt, [Pt; 3]) {
    let f = &layout.face;
    let (inner, outer) = eye_corners(layout, side);
    let rx = f.eye_rx;
    let lerp = |open: f32, shut: f32| open + (shut - open) * closure.clamp(0.0, 1.0);
    let c1 = (inner.0 + side * rx * 0.3, lerp(f.eye_y - f.eye_ry * 1.45, f.eye_y + f.eye_ry * 1.15));
    let c2 = (outer.0 - side * rx * 0.35, lerp(f.eye_y - f.eye_ry * 1.4, f.eye_y + f.eye_ry * 1.2));
    (inner, [c1, c2, outer])
}

fn lower_curve(layout: &Layout, side: f32) -> Path {
    let f = &layout.face;
    let (inner, outer) = eye_corners(layout, side);
    let rx = f.eye_rx;
    cubic_path(
        outer,
        &[[(outer.0 - side * rx * 0.35, f.eye_y + f.eye_ry * 1.2), (inner.0 + side * rx * 0.3, f.eye_y + f.eye_ry * 1.15), inner]],
        false,
    )
}

fn almond_path(layout: &Layout, side: f32) -> Path {
    let f = &layout.face;
    let (inner, [c1, c2, outer]) = lid_curve(layout, side, 0.0);
    let rx = f.eye_rx;
    cubic_path(
        inner,
        &[
            [c1, c2, outer],
            [(outer.0 - side * rx * 0.35, f.eye_y + f.eye_ry * 1.2), (inner.0 + side * rx * 0.3, f.eye_y + f.eye_ry * 1.15), inner],
        ],
        true,
    )
}

/// A tapered brow: thick towards the nose, thin at the tail.
fn brow(p: &mut Painter, layout: &Layout, side: f32, lift: f32, colour: Rgb) {
    let f = &layout.face;
    let cx = side * f.eye_dx;
    let y = f.brow_y - lift * 7.0;
    let w = f.brow_weight;
    let inner = (cx - side * f.eye_rx * 0.95, y + 5.0);
    let outer = (cx + side * f.eye_rx * 1.2, y + 6.0);
    let peak = (cx + side * f.eye_rx * 0.35, y - 4.0);
    let path = cubic_path(
        (inner.0, inner.1 - w * 0.5),
        &[
            [(inner.0 + side * 8.0, peak.1 - w * 0.55), (peak.0 - side * 6.0, peak.1 - w * 0.55), peak],
            [(peak.0 + side * 8.0, peak.1 - w * 0.2), (outer.0 - side * 6.0, outer.1 - 4.0), outer],
            [(outer.0 - side * 8.0, outer.1 - 2.0), (peak.0 + side * 8.0, peak.1 + w * 0.45), (peak.0, peak.1 + w * 0.5)],
            [(peak.0 - side * 6.0, peak.1 + w * 0.5), (inner.0 + side * 8.0, inner.1 + w * 0.5), (inner.0, inner.1 + w * 0.5)],
        ],
        true,
    );
    p.fill(&path, colour);
}

/// The mouth's curves for one pose, in design units.
struct MouthGeometry {
    left: Pt,
    right: Pt,
    half_width: f32,
    opening: f32,
    /// Control-point heights (relative to the mouth centre) of the inner lip edges.
    upper_ctrl: f32,
    lower_ctrl: f32,
    /// Horizontal reach of the inner edges' control points (rounder = further out).
    reach: f32,
    centre_y: f32,
}

impl MouthGeometry {
    fn new(layout: &Layout, pose: MouthPose) -> Self {
        let f = &layout.face;
        let half_width = f.mouth_half_width * pose.width;
        let opening = pose.openness.clamp(0.0, 1.0) * f.max_opening;
        let lift = pose.smile * 5.0 * (1.0 - pose.openness * 0.5);
        let y = f.mouth_y - lift;
        Self {
            left: (-half_width, y),
            right: (half_width, y),
            half_width,
            opening,
            upper_ctrl: lift * 0.45 - opening * 0.35,
            lower_ctrl: lift * 0.45 + opening * 1.3,
            reach: 0.5 + 0.45 * pose.roundness,
            centre_y: f.mouth_y,
        }
    }

    fn inner_edge(&self, pb: &mut PathBuilder, ctrl: f32, left_to_right: bool) {
        let (a, b) = if left_to_right { (self.left, self.right) } else { (self.right, self.left) };
        let cy = self.centre_y + ctrl;
        pb.cubic_to(a.0 * self.reach, cy, b.0 * self.reach, cy, b.0, b.1);
    }

    fn interior(&self) -> Path {
        let mut pb = PathBuilder::new();
        pb.move_to(self.left.0, self.left.1);
        self.inner_edge(&mut pb, self.upper_ctrl, true);
        self.inner_edge(&mut pb, self.lower_ctrl, false);
        pb.close();
        pb.finish().expect("mouth interior")
    }

    fn upper_lip(&self, thickness: f32) -> Path {
        let (l, r, hw) = (self.left, self.right, self.half_width);
        let top = self.centre_y + self.upper_ctrl * 0.75 - thickness;
        let mut pb = PathBuilder::new();
        pb.move_to(l.0, l.1);
        pb.cubic_to(l.0 + hw * 0.25, l.1 - thickness * 0.5, -hw * 0.5, top, -hw * 0.22, top);
        // Cupid's bow.
        pb.quad_to(0.0, top + thickness * 0.4, hw * 0.22, top);
        pb.cubic_to(hw * 0.5, top, r.0 - hw * 0.25, r.1 - thickness * 0.5, r.0, r.1);
        self.inner_edge(&mut pb, self.upper_ctrl, false);
        pb.close();
        pb.finish().expect("upper lip")
    }

    fn lower_lip(&self, thickness: f32) -> Path {
        let (l, r) = (self.left, self.right);
        let bottom = self.centre_y + self.lower_ctrl + thickness * 1.35;
        let mut pb = PathBuilder::new();
        pb.move_to(l.0, l.1);
        self.inner_edge(&mut pb, self.lower_ctrl, true);
        pb.cubic_to(r.0 * 0.75, bottom, l.0 * 0.75, bottom, l.0, l.1);
        pb.close();
        pb.finish().expect("lower lip")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interior_colour_keeps_clear_of_dark_skin() {
        let light = AvatarLook::default();
        let (colour, tolerance) = mouth_interior(&light);
        assert_eq!(colour, MOUTH_INTERIOR);
        assert!(tolerance > 40.0, "{tolerance}");
        let dark = AvatarLook { skin: Rgb::new(0x4a, 0x2a, 0x20), ..AvatarLook::default() };
        let (colour, tolerance) = mouth_interior(&dark);
        assert_eq!(colour, MOUTH_INTERIOR_DEEP);
        assert!(tolerance > 20.0, "{tolerance}");
    }
}
