//! The cached layers: background, body (neck and shirt) and head (ears, face, nose, blush).
//! Each is rendered once per look and size; a frame only composites them at their offsets.

use livetalk_core::look::{AvatarLook, Rgb};
use tiny_skia::{
    GradientStop, LinearGradient, Pixmap, Point, RadialGradient, Shader, SpreadMode, Transform,
};

use super::layout::{Layout, DESIGN_HEIGHT};
use super::paint::{cubic_path, ellipse, mix, shade, symmetric_shape, Painter, Sprite};

pub(crate) fn linear(from: (f32, f32), to: (f32, f32), stops: &[(f32, Rgb, f32)]) -> Shader<'static> {
    LinearGradient::new(
        Point::from_xy(from.0, from.1),
        Point::from_xy(to.0, to.1),
        gradient_stops(stops),
        SpreadMode::Pad,
        Transform::identity(),
    )
    .expect("linear gradient has distinct ends and stops")
}

pub(crate) fn radial(centre: (f32, f32), radius: f32, stops: &[(f32, Rgb, f32)]) -> Shader<'static> {
    let c = Point::from_xy(centre.0, centre.1);
    RadialGradient::new(c, c, radius, gradient_stops(stops), SpreadMode::Pad, Transform::identity())
        .expect("radial gradient has a radius and stops")
}

fn gradient_stops(stops: &[(f32, Rgb, f32)]) -> Vec<GradientStop> {
    stops.iter().map(|&(at, rgb, alpha)| GradientStop::new(at, super::paint::colour(rgb, alpha))).collect()
}

/// The opaque background of the whole frame, as RGBA8 bytes.
pub(crate) fn background(layout: &Layout, look: &AvatarLook) -> Pixmap {
    let mut pixmap = Pixmap::new(layout.width, layout.height).expect("frame size is positive");
    let bg = look.background;
    let mut painter = Painter::new(pixmap.as_mut(), layout.canvas());
    // Design-unit rectangle wide enough for any aspect ratio.
    let half = layout.width as f32 / layout.scale / 2.0 + 2.0;
    let top = -layout.origin.1 / layout.scale - 2.0;
    let whole = tiny_skia::PathBuilder::from_rect(
        tiny_skia::Rect::from_ltrb(-half, top, half, DESIGN_HEIGHT + 2.0).expect("frame rect"),
    );
    painter.fill_shader(
        &whole,
        linear((0.0, top), (0.0, DESIGN_HEIGHT), &[(0.0, shade(bg, 1.12), 1.0), (1.0, shade(bg, 0.86), 1.0)]),
        None,
    );
    // Soft out-of-focus lights, like a room behind the person.
    for &(x, y, r, a) in &[
        (-420.0, 120.0, 90.0, 0.22),
        (-300.0, 300.0, 55.0, 0.16),
        (-520.0, 420.0, 70.0, 0.14),
        (380.0, 90.0, 70.0, 0.18),
        (470.0, 260.0, 110.0, 0.15),
        (300.0, 470.0, 50.0, 0.12),
    ] {
        let light = shade(bg, 1.45);
        painter.fill_shader(
            &ellipse(x, y, r, r),
            radial((x, y), r, &[(0.0, light, a), (0.7, light, a * 0.8), (1.0, light, 0.0)]),
            None,
        );
    }
    // A warm glow behind the head lifts it off the background.
    let glow = mix(shade(bg, 1.3), Rgb::new(255, 244, 228), 0.3);
    painter.fill_shader(
        &ellipse(0.0, 300.0, 380.0, 380.0),
        radial((0.0, 300.0), 380.0, &[(0.0, glow, 0.8), (1.0, glow, 0.0)]),
        None,
    );
    pixmap
}

/// Neck, shirt and collar; moves with breathing.
pub(crate) fn body(layout: &Layout, look: &AvatarLook) -> Sprite {
    let f = &layout.face;
    let nw = f.neck_half_width;
    let (x0, y0) = layout.to_pixels(-360.0, f.eye_y);
    let (x1, y1) = layout.to_pixels(360.0, DESIGN_HEIGHT + 30.0);
    let mut sprite = Sprite::covering(x0, y0, x1, y1.min(layout.height as f32 + 40.0));
    let mut p = sprite.painter(layout.canvas());
    let skin = look.skin;

    let neck = symmetric_shape(
        (0.0, f.eye_y + 40.0),
        &[
            [(nw * 0.9, f.eye_y + 40.0), (nw, f.chin - 40.0), (nw * 1.02, f.chin + 20.0)],
            [(nw * 1.05, 500.0), (nw + 10.0, 515.0), (nw + 30.0, 530.0)],
            [(nw, 560.0), (nw * 0.5, 560.0), (0.0, 560.0)],
        ],
    );
    p.fill(&neck, shade(skin, 0.96));
    // Shadow the head casts on the neck.
    p.fill_shader(
        &ellipse(0.0, f.chin - 4.0, nw * 1.1, 30.0),
        radial((0.0, f.chin - 4.0), nw * 1.1, &[(0.0, shade(skin, 0.72), 1.0), (0.75, shade(skin, 0.78), 1.0), (1.0, shade(skin, 0.9), 0.0)]),
        None,
    );
    p.stroke_alpha(&neck, shade(skin, 0.72), 2.0, 0.6);

    let shirt = look.shirt;
    let torso = symmetric_shape(
        (0.0, 552.0),
        &[
            [(nw * 0.6, 552.0), (nw + 4.0, 530.0), (nw + 6.0, 500.0)],
            [(nw + 50.0, 514.0), (245.0, 518.0), (290.0, 566.0)],
            [(318.0, 600.0), (332.0, 660.0), (338.0, DESIGN_HEIGHT + 30.0)],
            [(200.0, DESIGN_HEIGHT + 30.0), (100.0, DESIGN_HEIGHT + 30.0), (0.0, DESIGN_HEIGHT + 30.0)],
        ],
    );
    p.fill_shader(
        &torso,
        linear((0.0, 500.0), (0.0, DESIGN_HEIGHT), &[(0.0, shade(shirt, 1.12), 1.0), (1.0, shade(shirt, 0.82), 1.0)]),
        None,
    );
    p.stroke(&torso, shade(shirt, 0.62), 2.5);
    let collar = cubic_path(
        (-nw - 6.0, 500.0),
        &[[(-nw - 4.0, 532.0), (-nw * 0.6, 554.0), (0.0, 554.0)], [(nw * 0.6, 554.0), (nw + 4.0, 532.0), (nw + 6.0, 500.0)]],
        false,
    );
    p.stroke(&collar, shade(shirt, 0.78), 10.0);
    p.stroke_alpha(&collar, shade(shirt, 1.25), 2.0, 0.6);
    sprite
}

/// Ears, face, nose, blush and earrings; moves with the head.
pub(crate) fn head(layout: &Layout, look: &AvatarLook) -> Sprite {
    let f = &layout.face;
    let fw = f.half_width;
    let (x0, y0) = layout.to_pixels(-fw - 40.0, f.top - 10.0);
    let (x1, y1) = layout.to_pixels(fw + 40.0, f.chin + 10.0);
    let mut sprite = Sprite::covering(x0, y0, x1, y1);
    let mut p = sprite.painter(layout.canvas());
    let skin = look.skin;
    let outline = shade(skin, 0.7);

    for side in [-1.0f32, 1.0] {
        ear(&mut p, layout, look, side);
    }

    let face = face_outline(layout);
    p.fill_shader(
        &face,
        radial(
            (-fw * 0.18, f.eye_y - 10.0),
            fw * 1.45,
            &[(0.0, shade(skin, 1.06), 1.0), (0.6, skin, 1.0), (1.0, shade(skin, 0.88), 1.0)],
        ),
        None,
    );
    p.stroke(&face, outline, 2.5);

    if look.blush {
        let blush = mix(skin, Rgb::new(255, 105, 120), 0.55);
        for side in [-1.0f32, 1.0] {
            let (cx, cy) = (side * fw * 0.6, f.nose_y + 10.0);
            p.fill_shader(
                &ellipse(cx, cy, 30.0, 30.0),
                radial((cx, cy), 30.0, &[(0.0, blush, 0.5), (1.0, blush, 0.0)]),
                None,
            );
        }
    }
    nose(&mut p, layout, skin);
    sprite
}

/// The face silhouette: round crown, cheeks, jaw corner set by the look, chin.
pub(crate) fn face_outline(layout: &Layout) -> tiny_skia::Path {
    let f = &layout.face;
    let fw = f.half_width;
    let jaw_x = fw * f.jaw;
    symmetric_shape(
        (0.0, f.top),
        &[
            [(fw * 0.6, f.top), (fw, f.top + 58.0), (fw, f.eye_y - 5.0)],
            [(fw, f.eye_y + 45.0), (jaw_x + fw * 0.08, f.chin - 78.0), (jaw_x, f.chin - 42.0)],
            [(jaw_x - fw * 0.1, f.chin - 16.0), (fw * 0.34, f.chin), (0.0, f.chin)],
        ],
    )
}

fn ear(p: &mut Painter, layout: &Layout, look: &AvatarLook, side: f32) {
    let f = &layout.face;
    let x = side * (f.half_width - 6.0);
    let y = f.eye_y - 6.0;
    let ear = cubic_path(
        (x, y),
        &[
            [(x + side * 26.0, y - 18.0), (x + side * 32.0, y + 34.0), (x + side * 8.0, y + 58.0)],
            [(x + side * 2.0, y + 62.0), (x - side * 6.0, y + 50.0), (x - side * 6.0, y + 40.0)],
        ],
        true,
    );
    p.fill(&ear, shade(look.skin, 0.95));
    p.stroke(&ear, shade(look.skin, 0.7), 2.5);
    let inner = cubic_path(
        (x + side * 4.0, y + 6.0),
        &[[(x + side * 20.0, y), (x + side * 22.0, y + 30.0), (x + side * 8.0, y + 42.0)]],
        false,
    );
    p.stroke_alpha(&inner, shade(look.skin, 0.7), 3.0, 0.7);
    if look.earrings {
        let gold = Rgb::new(0xe8, 0xb8, 0x4a);
        let (ex, ey) = (x + side * 8.0, y + 66.0);
        p.fill(&ellipse(ex, ey, 5.0, 5.0), gold);
        p.fill(&ellipse(ex, ey + 12.0, 7.0, 7.0), shade(gold, 1.15));
        p.stroke(&ellipse(ex, ey + 12.0, 7.0, 7.0), shade(gold, 0.7), 1.5);
        p.fill_alpha(&ellipse(ex - 2.0, ey + 10.0, 2.0, 2.0), Rgb::new(255, 255, 255), 0.8);
    }
}

fn nose(p: &mut Painter, layout: &Layout, skin: Rgb) {
    let y = layout.face.nose_y;
    let line = shade(skin, 0.68);
    // A hint of the bridge on the shadow side.
    let bridge = cubic_path((7.0, y - 48.0), &[[(10.0, y - 30.0), (15.0, y - 14.0), (13.0, y - 4.0)]], false);
    p.stroke_alpha(&bridge, line, 2.5, 0.35);
    let tip = cubic_path((-9.0, y + 4.0), &[[(-5.0, y + 10.0), (5.0, y + 10.0), (9.0, y + 4.0)]], false);
    p.stroke(&tip, line, 3.0);
    for side in [-1.0f32, 1.0] {
        let wing = cubic_path(
            (side * 11.0, y - 6.0),
            &[[(side * 19.0, y - 2.0), (side * 17.0, y + 7.0), (side * 10.0, y + 6.0)]],
            false,
        );
        p.stroke_alpha(&wing, line, 2.5, 0.8);
    }
    p.fill_alpha(&ellipse(-3.0, y - 8.0, 4.0, 2.5), shade(skin, 1.3), 0.35);
}
