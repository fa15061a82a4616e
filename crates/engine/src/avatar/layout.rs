//! Where everything sits, in design units: a 720-unit-tall canvas with x = 0 on the centre line
//! and y growing downwards. One `Layout` per look and output size; drawing, animation and the
//! mouth meter all read it, so they agree on positions.

use livetalk_core::look::{AvatarLook, FaceShape};
use tiny_skia::Transform;

/// Design height of the canvas.
pub(crate) const DESIGN_HEIGHT: f32 = 720.0;
/// Widest head sway, design units (the mouth meter's search box allows for it).
pub(crate) const MAX_HEAD_SHIFT: (f32, f32) = (9.0, 8.0);

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub width: u32,
    pub height: u32,
    /// Pixels per design unit.
    pub scale: f32,
    /// Pixel position of the design origin (centre line, top of the design canvas).
    pub origin: (f32, f32),
    pub face: FaceGeometry,
}

/// Face proportions resolved from the look's sliders.
#[derive(Debug, Clone)]
pub(crate) struct FaceGeometry {
    pub half_width: f32,
    pub top: f32,
    pub chin: f32,
    /// Jaw corner as a fraction of `half_width` (small = pointed).
    pub jaw: f32,
    pub eye_y: f32,
    pub eye_dx: f32,
    pub eye_rx: f32,
    pub eye_ry: f32,
    pub iris_r: f32,
    pub brow_y: f32,
    pub brow_weight: f32,
    pub nose_y: f32,
    pub mouth_y: f32,
    pub mouth_half_width: f32,
    pub upper_lip: f32,
    pub lower_lip: f32,
    /// Interior height of a fully open mouth.
    pub max_opening: f32,
    pub neck_half_width: f32,
}

impl FaceGeometry {
    fn new(face: &FaceShape) -> Self {
        let half_width = face.width.lerp(104.0, 132.0);
        let eye_size = face.eye_size.lerp(0.82, 1.2);
        let lips = face.lip_fullness.lerp(0.7, 1.35);
        Self {
            half_width,
            top: 150.0,
            chin: 458.0,
            jaw: face.jaw.lerp(0.58, 0.86),
            eye_y: 305.0,
            eye_dx: face.eye_spacing.lerp(0.40, 0.50) * half_width,
            eye_rx: 27.0 * eye_size,
            eye_ry: 16.5 * eye_size,
            iris_r: 15.5 * eye_size,
            brow_y: 305.0 - 40.0 - 14.0 * (eye_size - 1.0),
            brow_weight: face.brow_weight.lerp(3.5, 9.0),
            nose_y: 360.0,
            mouth_y: 400.0,
            mouth_half_width: face.mouth_width.lerp(24.0, 36.0),
            upper_lip: 6.5 * lips,
            lower_lip: 9.0 * lips,
            max_opening: 30.0,
            neck_half_width: half_width * 0.42,
        }
    }
}

impl Layout {
    pub fn new(look: &AvatarLook, width: u32, height: u32) -> Self {
        // Fit the design canvas by height, but keep the shoulders (about 700 units wide) in frame
        // on narrow outputs.
        let scale = (height as f32 / DESIGN_HEIGHT).min(width as f32 / 700.0);
        let origin = (width as f32 / 2.0, height as f32 - DESIGN_HEIGHT * scale);
        Self { width, height, scale, origin, face: FaceGeometry::new(&look.face) }
    }

    /// Design units → output pixels.
    pub fn canvas(&self) -> Transform {
        Transform::from_row(self.scale, 0.0, 0.0, self.scale, self.origin.0, self.origin.1)
    }

    /// A design-unit point in output pixels.
    pub fn to_pixels(&self, x: f32, y: f32) -> (f32, f32) {
        (self.origin.0 + x * self.scale, self.origin.1 + y * self.scale)
    }

    /// A design-unit shift rounded to whole pixels (layers are composited on the pixel grid).
    pub fn shift_pixels(&self, dx: f32, dy: f32) -> (i32, i32) {
        ((dx * self.scale).round() as i32, (dy * self.scale).round() as i32)
    }
}
