//! A persona's reference picture made from a photo: the largest face (SeetaFace's frontal
//! detector, through the pure-Rust `rustface`) centred in a 512×512 square, and a CPU-avatar
//! look whose colours are sampled from the photo (skin, hair, shirt, backdrop).

use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{bail, Result};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, RgbImage};
use livetalk_core::look::{AvatarLook, HairStyle, Rgb};

/// Side of the reference picture (what the LiveTalk model is trained on).
pub const PORTRAIT_SIDE: u32 = 512;
/// Photos smaller than this on either side hold too little of a face to be useful.
pub const MIN_PHOTO_SIDE: u32 = 128;
/// SeetaFace frontal face detector v1.0 (BSD-2-Clause, models/face/LICENSE.seetaface), 1.2 MB.
static FACE_MODEL: &[u8] = include_bytes!("../../../models/face/seeta_fd_frontal_v1.0.bin");
/// Detection runs on a copy at most this large: faces in a portrait are big, and it keeps a
/// 12-megapixel phone photo at a fraction of a second.
const DETECTION_SIDE: u32 = 640;
/// The square crop is this many face heights: head, hair and shoulders.
const CROP_FACE_HEIGHTS: f32 = 2.6;

/// A face in photo pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f64,
}

impl FaceBox {
    pub fn centre(&self) -> (f32, f32) {
        (self.x + self.width / 2.0, self.y + self.height / 2.0)
    }
}

/// Faces found in `photo`, largest first.
pub fn detect_faces(photo: &DynamicImage) -> Result<Vec<FaceBox>> {
    let (width, height) = (photo.width(), photo.height());
    let scale = (DETECTION_SIDE as f32 / width.max(height) as f32).min(1.0);
    let gray: GrayImage = if scale < 1.0 {
        let (w, h) = ((width as f32 * scale) as u32, (height as f32 * scale) as u32);
        photo.resize_exact(w.max(1), h.max(1), FilterType::Triangle).to_luma8()
    } else {
        photo.to_luma8()
    };
    let model = rustface::read_model(FACE_MODEL)
        .map_err(|e| anyhow::anyhow!("the built-in face detector model is unreadable: {e}"))?;
    // The detector indexes arrays by its own arithmetic: a panic is a failed detection, not a crash.
    let faces = catch_unwind(AssertUnwindSafe(|| {
        let mut detector = rustface::create_detector_with_model(model);
        detector.set_min_face_size(40);
        detector.set_score_thresh(2.0);
        detector.set_pyramid_scale_factor(0.8);
        detector.set_slide_window_step(4, 4);
        let image = rustface::ImageData::new(&gray, gray.width(), gray.height());
        detector.detect(&image)
    }))
    .map_err(|_| anyhow::anyhow!("the face detector failed on this picture"))?;
    let mut boxes: Vec<FaceBox> = faces
        .iter()
        .map(|face| {
            let b = face.bbox();
            FaceBox {
                x: b.x() as f32 / scale,
                y: b.y() as f32 / scale,
                width: b.width() as f32 / scale,
                height: b.height() as f32 / scale,
                score: face.score(),
            }
        })
        .collect();
    boxes.sort_by(|a, b| (b.width * b.height).total_cmp(&(a.width * a.height)));
    Ok(boxes)
}

/// The picture and look made from a photo.
pub struct Portrait {
    /// `PORTRAIT_SIDE`² RGB.
    pub picture: RgbImage,
    /// The face the crop is centred on; `None`: no face was found and the centre was taken.
    pub face: Option<FaceBox>,
    /// The crop in photo pixels: left, top, side.
    pub crop: (u32, u32, u32),
    pub look: AvatarLook,
}

/// Crops `photo` around its largest face (or its centre when there is none) and samples a look.
pub fn make_portrait(photo: &DynamicImage) -> Result<Portrait> {
    let (width, height) = (photo.width(), photo.height());
    if width < MIN_PHOTO_SIDE || height < MIN_PHOTO_SIDE {
        bail!(
            "the picture is {width}x{height}: it must be at least {MIN_PHOTO_SIDE}x{MIN_PHOTO_SIDE} \
             (a portrait of {PORTRAIT_SIDE}x{PORTRAIT_SIDE} or more works best)"
        );
    }
    let face = detect_faces(photo)?.into_iter().next();
    let crop = match &face {
        Some(face) => face_crop(face, width, height),
        None => {
            let side = width.min(height);
            ((width - side) / 2, (height - side) / 2, side)
        }
    };
    let rgb = photo.to_rgb8();
    let (left, top, side) = crop;
    let square = image::imageops::crop_imm(&rgb, left, top, side, side).to_image();
    let picture =
        image::imageops::resize(&square, PORTRAIT_SIDE, PORTRAIT_SIDE, FilterType::Lanczos3);
    let look = sample_look(&rgb, face.as_ref(), crop);
    Ok(Portrait {
        picture,
        face,
        crop,
        look,
    })
}

/// A square of `CROP_FACE_HEIGHTS` face heights centred on the face (a little below its
/// centre, for the chin and shoulders), shrunk to fit and shifted inside the photo.
fn face_crop(face: &FaceBox, width: u32, height: u32) -> (u32, u32, u32) {
    let side = (face.height * CROP_FACE_HEIGHTS)
        .round()
        .clamp(MIN_PHOTO_SIDE as f32, width.min(height) as f32) as u32;
    let (cx, cy) = face.centre();
    let cy = cy + face.height * 0.15;
    let place = |centre: f32, limit: u32| {
        (centre - side as f32 / 2.0)
            .round()
            .clamp(0.0, (limit - side) as f32) as u32
    };
    (place(cx, width), place(cy, height), side)
}

/// The median colour of a rectangle (clipped to the picture), if any of it is inside.
fn median_colour(rgb: &RgbImage, x0: f32, y0: f32, x1: f32, y1: f32) -> Option<Rgb> {
    let clip = |v: f32, limit: u32| v.round().clamp(0.0, limit as f32) as u32;
    let (x0, x1) = (clip(x0, rgb.width()), clip(x1, rgb.width()));
    let (y0, y1) = (clip(y0, rgb.height()), clip(y1, rgb.height()));
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let mut channels: [Vec<u8>; 3] = Default::default();
    for y in y0..y1 {
        for x in x0..x1 {
            let pixel = rgb.get_pixel(x, y);
            for (channel, value) in channels.iter_mut().zip(pixel.0) {
                channel.push(value);
            }
        }
    }
    let median = |values: &mut Vec<u8>| {
        values.sort_unstable();
        values[values.len() / 2]
    };
    let [r, g, b] = &mut channels;
    Some(Rgb::new(median(r), median(g), median(b)))
}

fn distance(a: Rgb, b: Rgb) -> f32 {
    let d = |x: u8, y: u8| (x as f32 - y as f32).powi(2);
    (d(a.r, b.r) + d(a.g, b.g) + d(a.b, b.b)).sqrt()
}

/// Colours from the photo: the backdrop from the crop's top corners, and with a face its
/// skin (the cheeks), hair (above the brow), shirt (below the chin); hair that also shows
/// beside the cheeks makes the long style.
fn sample_look(rgb: &RgbImage, face: Option<&FaceBox>, crop: (u32, u32, u32)) -> AvatarLook {
    let mut look = AvatarLook::default();
    let (left, top, side) = (crop.0 as f32, crop.1 as f32, crop.2 as f32);
    let corner = side * 0.12;
    let corners = [
        median_colour(rgb, left, top, left + corner, top + corner),
        median_colour(rgb, left + side - corner, top, left + side, top + corner),
    ];
    if let [Some(a), Some(b)] = corners {
        let mean = |x: u8, y: u8| ((x as u16 + y as u16) / 2) as u8;
        look.background = Rgb::new(mean(a.r, b.r), mean(a.g, b.g), mean(a.b, b.b));
    }
    let Some(face) = face else { return look };
    let (x, y, w, h) = (face.x, face.y, face.width, face.height);
    if let Some(skin) = median_colour(rgb, x + w * 0.3, y + h * 0.45, x + w * 0.7, y + h * 0.7) {
        look.skin = skin;
    }
    if let Some(hair) = median_colour(rgb, x + w * 0.3, y - h * 0.2, x + w * 0.7, y - h * 0.02) {
        // A bald head or a forehead reaching the crop's edge reads as skin: keep the default.
        if distance(hair, look.skin) > 40.0 {
            look.hair = hair;
            let beside = [
                median_colour(rgb, x - w * 0.2, y + h * 0.6, x - w * 0.02, y + h * 1.0),
                median_colour(rgb, x + w * 1.02, y + h * 0.6, x + w * 1.2, y + h * 1.0),
            ];
            if beside.iter().flatten().any(|c| distance(*c, hair) < 35.0) {
                look.hair_style = HairStyle::Long;
            }
        }
    }
    if let Some(shirt) = median_colour(rgb, x, y + h * 1.6, x + w, y + h * 2.0) {
        look.shirt = shirt;
    }
    look
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_is_centred_on_the_face_and_stays_inside() {
        let face = FaceBox { x: 400.0, y: 300.0, width: 100.0, height: 100.0, score: 5.0 };
        let (left, top, side) = face_crop(&face, 1000, 800);
        assert_eq!(side, 260);
        assert_eq!((left + side / 2, top + side / 2), (450, 365));
        // A face at the edge: the square is shifted inside, never out of the photo.
        let edge = FaceBox { x: 0.0, y: 0.0, width: 100.0, height: 100.0, score: 5.0 };
        assert_eq!(face_crop(&edge, 1000, 800), (0, 0, 260));
        // A face too big for the photo: the square is the photo's short side.
        let big = FaceBox { x: 50.0, y: 50.0, width: 300.0, height: 300.0, score: 5.0 };
        assert_eq!(face_crop(&big, 400, 300).2, 300);
    }

    #[test]
    fn flat_pictures_have_no_face_and_a_sampled_backdrop() {
        let photo = DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 200, image::Rgb([10, 120, 200])));
        let portrait = make_portrait(&photo).unwrap();
        assert!(portrait.face.is_none());
        assert_eq!(portrait.crop, (50, 0, 200));
        assert_eq!(portrait.picture.dimensions(), (PORTRAIT_SIDE, PORTRAIT_SIDE));
        assert_eq!(portrait.look.background, Rgb::new(10, 120, 200));
        let tiny = DynamicImage::ImageRgb8(RgbImage::new(100, 400));
        let message = make_portrait(&tiny).err().unwrap().to_string();
        assert!(message.contains("100x400") && message.contains("at least 128x128"), "{message}");
    }
}
