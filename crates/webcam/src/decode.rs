//! Webcam buffers as [`VideoFrame`]s. YUV layouts are kept as they are (the composer converts
//! them once, BT.601 limited range as webcams send them); MJPEG is decoded with `image`.

use std::time::Duration;

use livetalk_core::{PixelFormat, VideoFrame};

use crate::capture::WebcamError;

/// How the webcam encodes a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Yuyv,
    Nv12,
    Mjpeg,
    Gray,
    Rgb,
    Bgr,
}

/// One webcam buffer of `width`×`height` as a frame (pts zero: the engine stamps it).
pub fn decode(
    format: SourceFormat,
    width: u32,
    height: u32,
    data: &[u8],
) -> Result<VideoFrame, WebcamError> {
    let bad = |reason: String| WebcamError::Decode(format!("{format:?} {width}x{height}: {reason}"));
    let frame = |pixel_format: PixelFormat, bytes: Vec<u8>| {
        let expected = pixel_format
            .frame_size(width, height)
            .map_err(|e| bad(e.to_string()))?;
        if bytes.len() < expected {
            return Err(bad(format!("{} bytes, a whole frame needs {expected}", bytes.len())));
        }
        let mut bytes = bytes;
        bytes.truncate(expected); // drivers may pad the buffer to a page
        VideoFrame::new(width, height, pixel_format, bytes, Duration::ZERO).map_err(|e| bad(e.to_string()))
    };
    match format {
        SourceFormat::Yuyv => frame(PixelFormat::Yuyv, data.to_vec()),
        SourceFormat::Nv12 => frame(PixelFormat::Nv12, data.to_vec()),
        SourceFormat::Rgb => frame(PixelFormat::Rgb24, data.to_vec()),
        SourceFormat::Bgr => frame(
            PixelFormat::Rgb24,
            data.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect(),
        ),
        SourceFormat::Gray => frame(
            PixelFormat::Rgb24,
            data.iter().flat_map(|&v| [v, v, v]).collect(),
        ),
        SourceFormat::Mjpeg => {
            let picture = image::load_from_memory_with_format(data, image::ImageFormat::Jpeg)
                .map_err(|e| bad(format!("not a JPEG picture: {e}")))?
                .to_rgb8();
            let (w, h) = picture.dimensions();
            VideoFrame::new(w, h, PixelFormat::Rgb24, picture.into_raw(), Duration::ZERO)
                .map_err(|e| bad(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_decodes_to_a_valid_frame() {
        let yuyv = decode(SourceFormat::Yuyv, 4, 2, &[128; 4 * 2 * 2 + 100]).unwrap();
        assert_eq!((yuyv.format, yuyv.data.len()), (PixelFormat::Yuyv, 16));
        let bgr = decode(SourceFormat::Bgr, 2, 1, &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(bgr.data, [3, 2, 1, 6, 5, 4]);
        let gray = decode(SourceFormat::Gray, 2, 1, &[7, 9]).unwrap();
        assert_eq!(gray.data, [7, 7, 7, 9, 9, 9]);
        let nv12 = decode(SourceFormat::Nv12, 4, 2, &[16; 12]).unwrap();
        assert_eq!(nv12.format, PixelFormat::Nv12);
        let mut jpeg = Vec::new();
        image::RgbImage::from_pixel(8, 8, image::Rgb([200, 40, 40]))
            .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let decoded = decode(SourceFormat::Mjpeg, 8, 8, &jpeg).unwrap();
        assert_eq!((decoded.width, decoded.height), (8, 8));
        assert!(decoded.data[0] > 150 && decoded.data[1] < 90, "{:?}", &decoded.data[..3]);
    }

    #[test]
    fn short_or_broken_buffers_are_errors() {
        let message = decode(SourceFormat::Yuyv, 640, 480, &[0; 100]).unwrap_err().to_string();
        assert!(message.contains("Yuyv 640x480") && message.contains("100 bytes"), "{message}");
        let message = decode(SourceFormat::Mjpeg, 8, 8, b"nope").unwrap_err().to_string();
        assert!(message.contains("not a JPEG"), "{message}");
    }
}
