//! Hair styles (a back part drawn behind the body, a front part over the face) and glasses.
//! Both parts move with the head.

use livetalk_core::look::{AvatarLook, HairStyle, Rgb};
use tiny_skia::{Path, PathBuilder, Transform};

use super::draw::linear;
use super::layout::Layout;
use super::paint::{cubic_path, ellipse, shade, symmetric_shape, Cubic, Painter, Pt, Sprite};

/// Hair behind the head and body: crown volume, and for long styles what falls behind the back.
pub(crate) fn back(layout: &Layout, look: &AvatarLook) -> Sprite {
    let f = &layout.face;
    let (fw, top, eye) = (f.half_width, f.top, f.eye_y);
    let (x0, y0) = layout.to_pixels(-fw - 90.0, top - 100.0);
    let (x1, y1) = layout.to_pixels(fw + 90.0, 630.0);
    let mut sprite = Sprite::covering(x0, y0, x1, y1);
    let mut p = sprite.painter(layout.canvas());
    let colour = shade(look.hair, 0.85);
    let shapes: Vec<Path> = match look.hair_style {
        HairStyle::Short => vec![symmetric_shape(
            (0.0, top - 30.0),
            &[
                [(fw * 0.75, top - 32.0), (fw + 12.0, top + 26.0), (fw + 5.0, eye - 56.0)],
                [(fw + 2.0, eye - 44.0), (fw * 0.5, eye - 40.0), (0.0, eye - 40.0)],
            ],
        )],
        HairStyle::Bob => vec![symmetric_shape(
            (0.0, top - 34.0),
            &[
                [(fw * 0.8, top - 36.0), (fw + 30.0, top + 20.0), (fw + 32.0, eye)],
                [(fw + 34.0, eye + 80.0), (fw + 32.0, 440.0), (fw + 16.0, 454.0)],
                [(fw * 0.6, 458.0), (fw * 0.3, 458.0), (0.0, 458.0)],
            ],
        )],
        HairStyle::Long => vec![symmetric_shape(
            (0.0, top - 34.0),
            &[
                [(fw * 0.8, top - 36.0), (fw + 34.0, top + 20.0), (fw + 36.0, eye + 10.0)],
                [(fw + 40.0, eye + 120.0), (fw + 58.0, 520.0), (fw + 66.0, 600.0)],
                [(fw + 40.0, 615.0), (fw * 0.5, 610.0), (0.0, 610.0)],
            ],
        )],
        HairStyle::Bun => vec![
            ellipse(0.0, top - 40.0, 48.0, 44.0),
            symmetric_shape(
                (0.0, top - 20.0),
                &[
                    [(fw * 0.7, top - 22.0), (fw + 10.0, top + 30.0), (fw + 6.0, eye - 28.0)],
                    [(fw + 4.0, eye), (fw * 0.5, eye), (0.0, eye)],
                ],
            ),
        ],
    };
    for shape in &shapes {
        p.fill(shape, colour);
        p.stroke(shape, shade(look.hair, 0.55), 2.5);
    }
    if look.hair_style == HairStyle::Bun {
        // Wraps around the bun.
        for (dy, w) in [(-58.0, 30.0), (-40.0, 40.0), (-22.0, 32.0)] {
            let arc = cubic_path(
                (-w, top + dy + 6.0),
                &[[(-w * 0.5, top + dy - 6.0), (w * 0.5, top + dy - 6.0), (w, top + dy + 6.0)]],
                false,
            );
            p.stroke_alpha(&arc, shade(look.hair, 1.4), 2.5, 0.45);
        }
    }
    sprite
}

/// Hair over the face (fringe, side locks, sideburns) and glasses.
pub(crate) fn front(layout: &Layout, look: &AvatarLook) -> Sprite {
    let f = &layout.face;
    let (fw, top) = (f.half_width, f.top);
    let (x0, y0) = layout.to_pixels(-fw - 90.0, top - 100.0);
    let (x1, y1) = layout.to_pixels(fw + 90.0, 640.0);
    let mut sprite = Sprite::covering(x0, y0, x1, y1);
    let mut p = sprite.painter(layout.canvas());
    let hair = look.hair;
    let fill = linear((0.0, top - 40.0), (0.0, f.chin), &[(0.0, shade(hair, 1.18), 1.0), (1.0, shade(hair, 0.92), 1.0)]);
    let shapes = front_shapes(layout, look.hair_style);
    let shadow = Transform::from_translate(1.5, 5.0);
    for shape in &shapes {
        if let Some(moved) = shape.clone().transform(shadow) {
            p.fill_alpha(&moved, Rgb::new(40, 20, 10), 0.16);
        }
    }
    for shape in &shapes {
        p.fill_shader(shape, fill.clone(), None);
        p.stroke(shape, shade(hair, 0.55), 2.5);
    }
    for strand in highlight_strands(layout, look.hair_style) {
        p.stroke_alpha(&strand, shade(hair, 1.5), 3.0, 0.35);
    }
    if look.glasses {
        glasses(&mut p, layout);
    }
    sprite
}

fn front_shapes(layout: &Layout, style: HairStyle) -> Vec<Path> {
    let f = &layout.face;
    let (fw, top, eye) = (f.half_width, f.top, f.eye_y);
    match style {
        HairStyle::Short => {
            vec![cubic_path(
                (-fw - 6.0, eye - 46.0),
                &[
                    [(-fw - 12.0, top - 8.0), (-fw * 0.5, top - 38.0), (0.0, top - 36.0)],
                    [(fw * 0.6, top - 34.0), (fw + 16.0, top + 8.0), (fw + 6.0, eye - 44.0)],
                    [(fw - 4.0, top + 52.0), (fw * 0.72, top + 36.0), (fw * 0.45, top + 44.0)],
                    [(fw * 0.25, top + 50.0), (fw * 0.05, top + 24.0), (-fw * 0.22, top + 44.0)],
                    [(-fw * 0.45, top + 62.0), (-fw * 0.78, top + 58.0), (-fw + 6.0, top + 74.0)],
                    [(-fw - 2.0, top + 86.0), (-fw - 4.0, eye - 58.0), (-fw - 6.0, eye - 46.0)],
                ],
                true,
            )]
        }
        HairStyle::Bob => vec![cubic_path(
            (-fw - 22.0, eye),
            &[
                [(-fw - 24.0, top + 10.0), (-fw * 0.6, top - 38.0), (0.0, top - 38.0)],
                [(fw * 0.6, top - 38.0), (fw + 24.0, top + 10.0), (fw + 22.0, eye)],
                [(fw + 28.0, eye + 80.0), (fw + 26.0, 432.0), (fw + 18.0, 454.0)],
                [(fw + 6.0, 460.0), (fw - 4.0, 456.0), (fw - 10.0, 444.0)],
                [(fw - 4.0, 400.0), (fw - 2.0, eye + 40.0), (fw - 8.0, eye - 12.0)],
                [(fw - 12.0, top + 72.0), (fw * 0.62, top + 86.0), (fw * 0.32, top + 88.0)],
                [(fw * 0.12, top + 90.0), (-fw * 0.1, top + 80.0), (-fw * 0.3, top + 90.0)],
                [(-fw * 0.6, top + 96.0), (-fw + 10.0, top + 72.0), (-fw + 8.0, eye - 12.0)],
                [(-fw + 2.0, eye + 40.0), (-fw + 4.0, 400.0), (-fw + 10.0, 444.0)],
                [(-fw + 4.0, 456.0), (-fw - 6.0, 460.0), (-fw - 18.0, 454.0)],
                [(-fw - 26.0, 432.0), (-fw - 28.0, eye + 80.0), (-fw - 22.0, eye)],
            ],
            true,
        )],
        HairStyle::Long => {
            let part = (-fw * 0.35, top - 30.0);
            let sweep: [Cubic; 7] = [
                [(fw * 0.35, top - 46.0), (fw + 30.0, top + 4.0), (fw + 30.0, eye)],
                [(fw + 32.0, eye + 100.0), (fw + 50.0, 500.0), (fw + 62.0, 590.0)],
                [(fw + 64.0, 610.0), (fw + 58.0, 622.0), (fw + 46.0, 628.0)],
                [(fw + 28.0, 590.0), (fw + 4.0, 520.0), (fw + 2.0, 450.0)],
                [(fw, 400.0), (fw - 6.0, eye + 40.0), (fw - 10.0, eye - 20.0)],
                [(fw - 14.0, top + 70.0), (fw * 0.45, top + 78.0), (fw * 0.1, top + 58.0)],
                [(-fw * 0.12, top + 44.0), (-fw * 0.28, top + 8.0), part],
            ];
            let short_side: [Cubic; 6] = [
                [(-fw * 0.75, top - 28.0), (-fw - 28.0, top + 18.0), (-fw - 28.0, eye)],
                [(-fw - 30.0, eye + 100.0), (-fw - 46.0, 500.0), (-fw - 58.0, 585.0)],
                [(-fw - 60.0, 605.0), (-fw - 54.0, 618.0), (-fw - 42.0, 622.0)],
                [(-fw - 26.0, 585.0), (-fw - 4.0, 520.0), (-fw - 2.0, 450.0)],
                [(-fw, 400.0), (-fw + 6.0, eye + 40.0), (-fw + 8.0, eye - 20.0)],
                [(-fw + 10.0, top + 60.0), (-fw * 0.6, top + 30.0), part],
            ];
            vec![cubic_path(part, &sweep, true), cubic_path(part, &short_side, true)]
        }
        HairStyle::Bun => vec![cubic_path(
            (-fw - 4.0, eye - 30.0),
            &[
                [(-fw - 8.0, top + 10.0), (-fw * 0.6, top - 24.0), (0.0, top - 24.0)],
                [(fw * 0.6, top - 24.0), (fw + 8.0, top + 10.0), (fw + 4.0, eye - 30.0)],
                [(fw - 6.0, top + 44.0), (fw * 0.5, top + 22.0), (fw * 0.12, top + 24.0)],
                [(-fw * 0.2, top + 16.0), (-fw * 0.8, top + 34.0), (-fw - 4.0, eye - 30.0)],
            ],
            true,
        )],
    }
}

/// Light strands that give the hair volume.
fn highlight_strands(layout: &Layout, style: HairStyle) -> Vec<Path> {
    let f = &layout.face;
    let (fw, top, eye) = (f.half_width, f.top, f.eye_y);
    let strand = |from: Pt, c1: Pt, c2: Pt, to: Pt| cubic_path(from, &[[c1, c2, to]], false);
    match style {
        HairStyle::Short => vec![
            strand((-fw * 0.6, top - 10.0), (-fw * 0.3, top - 26.0), (fw * 0.1, top - 24.0), (fw * 0.4, top - 14.0)),
            strand((-fw * 0.3, top + 8.0), (0.0, top - 6.0), (fw * 0.3, top - 2.0), (fw * 0.6, top + 14.0)),
        ],
        HairStyle::Bob => vec![
            strand((-fw * 0.5, top - 20.0), (-fw * 0.2, top - 30.0), (fw * 0.2, top - 30.0), (fw * 0.5, top - 20.0)),
            strand((fw + 14.0, eye - 20.0), (fw + 20.0, eye + 40.0), (fw + 18.0, 400.0), (fw + 10.0, 440.0)),
        ],
        HairStyle::Long => vec![
            strand((-fw * 0.2, top - 26.0), (fw * 0.3, top - 32.0), (fw * 0.75, top - 6.0), (fw + 6.0, top + 40.0)),
            strand((-fw * 0.1, top - 6.0), (fw * 0.3, top - 8.0), (fw * 0.6, top + 10.0), (fw * 0.75, top + 40.0)),
            strand((fw + 18.0, eye + 10.0), (fw + 22.0, eye + 100.0), (fw + 36.0, 500.0), (fw + 48.0, 590.0)),
            strand((-fw - 16.0, eye + 10.0), (-fw - 18.0, eye + 90.0), (-fw - 32.0, 480.0), (-fw - 44.0, 570.0)),
        ],
        HairStyle::Bun => vec![
            strand((-fw * 0.5, top - 6.0), (-fw * 0.2, top - 18.0), (fw * 0.2, top - 18.0), (fw * 0.5, top - 6.0)),
            strand((fw - 6.0, top + 40.0), (fw + 6.0, eye - 10.0), (fw - 2.0, eye + 50.0), (fw + 8.0, eye + 86.0)),
        ],
    }
}

fn glasses(p: &mut Painter, layout: &Layout) {
    let f = &layout.face;
    let frame = Rgb::new(0x2b, 0x2a, 0x33);
    let (hw, hh) = (f.eye_rx + 13.0, f.eye_ry + 10.0);
    let cy = f.eye_y + 3.0;
    for side in [-1.0f32, 1.0] {
        let cx = side * f.eye_dx;
        let lens = rounded_rect(cx - hw, cy - hh, cx + hw, cy + hh, 14.0);
        p.fill_alpha(&lens, Rgb::new(220, 235, 255), 0.12);
        let glint = cubic_path((cx + 4.0, cy - hh + 8.0), &[[(cx + 10.0, cy - 8.0), (cx + 12.0, cy - 2.0), (cx + hw - 8.0, cy - hh + 12.0)]], false);
        p.stroke_alpha(&glint, Rgb::new(255, 255, 255), 3.0, 0.3);
        p.stroke(&lens, frame, 4.5);
        let temple = cubic_path((cx + side * hw, cy - hh + 8.0), &[[(cx + side * (hw + 10.0), cy - hh + 6.0), (side * (f.half_width - 6.0), cy - hh + 8.0), (side * f.half_width, cy - hh + 10.0)]], false);
        p.stroke(&temple, frame, 4.0);
    }
    let inner = f.eye_dx - hw;
    let bridge = cubic_path((-inner, cy - 4.0), &[[(-inner * 0.4, cy - 14.0), (inner * 0.4, cy - 14.0), (inner, cy - 4.0)]], false);
    p.stroke(&bridge, frame, 4.0);
}

fn rounded_rect(l: f32, t: f32, r: f32, b: f32, radius: f32) -> Path {
    // Quarter circles as cubics (k = 0.5523 of the radius).
    let k = radius * 0.5523;
    let mut pb = PathBuilder::new();
    pb.move_to(l + radius, t);
    pb.line_to(r - radius, t);
    pb.cubic_to(r - radius + k, t, r, t + radius - k, r, t + radius);
    pb.line_to(r, b - radius);
    pb.cubic_to(r, b - radius + k, r - radius + k, b, r - radius, b);
    pb.line_to(l + radius, b);
    pb.cubic_to(l + radius - k, b, l, b - radius + k, l, b - radius);
    pb.line_to(l, t + radius);
    pb.cubic_to(l, t + radius - k, l + radius - k, t, l + radius, t);
    pb.close();
    pb.finish().expect("rounded rectangle")
}
