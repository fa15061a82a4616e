//! Frame sizes, plane layouts, and constructor validation.

use std::time::Duration;

use livetalk_core::frame::{PixelFormat, VideoFrame, ALL_PIXEL_FORMATS};
use livetalk_core::Error;

#[test]
fn frame_sizes_for_720p() {
    let sizes: Vec<usize> = ALL_PIXEL_FORMATS
        .iter()
        .map(|f| f.frame_size(1280, 720).unwrap())
        .collect();
    let pixels = 1280 * 720;
    assert_eq!(
        sizes,
        [
            pixels * 3,
            pixels * 4,
            pixels * 4,
            pixels * 2,
            pixels * 3 / 2,
            pixels * 3 / 2
        ]
    );
}

#[test]
fn plane_layouts() {
    let i420 = PixelFormat::I420.plane_layout(8, 4).unwrap();
    let planes: Vec<_> = i420
        .planes()
        .iter()
        .map(|p| (p.offset, p.stride, p.rows))
        .collect();
    assert_eq!(planes, [(0, 8, 4), (32, 4, 2), (40, 4, 2)]);
    assert_eq!(i420.total_len(), 48);

    let nv12 = PixelFormat::Nv12.plane_layout(8, 4).unwrap();
    let planes: Vec<_> = nv12
        .planes()
        .iter()
        .map(|p| (p.offset, p.stride, p.rows))
        .collect();
    assert_eq!(planes, [(0, 8, 4), (32, 8, 2)]);

    let yuyv = PixelFormat::Yuyv.plane_layout(8, 3).unwrap();
    assert_eq!(yuyv.planes().len(), 1);
    assert_eq!(yuyv.planes()[0].stride, 16);
    assert_eq!(
        PixelFormat::Bgra.plane_layout(5, 3).unwrap().planes()[0].stride,
        20
    );
}

#[test]
fn plane_accessor_returns_each_plane() {
    let frame =
        VideoFrame::solid(4, 2, PixelFormat::I420, [255, 255, 255], Duration::ZERO).unwrap();
    assert_eq!(frame.plane(0).unwrap(), [235; 8]);
    assert_eq!(frame.plane(1).unwrap(), [128; 2]);
    assert_eq!(frame.plane(2).unwrap(), [128; 2]);
    assert!(frame.plane(3).is_none());
}

#[test]
fn dimensions_are_validated() {
    let cases = [
        (PixelFormat::Rgb24, 0, 10, "non-zero"),
        (PixelFormat::Rgba, 10, 0, "non-zero"),
        (PixelFormat::Bgra, 16_385, 2, "at most"),
        (PixelFormat::Yuyv, 3, 2, "even width"),
        (PixelFormat::I420, 4, 3, "even height"),
        (PixelFormat::Nv12, 5, 4, "even width"),
    ];
    for (format, width, height, reason) in cases {
        let err = format.frame_size(width, height).unwrap_err();
        assert!(
            matches!(err, Error::FrameDimensions { format: f, .. } if f == format),
            "{err}"
        );
        let message = err.to_string();
        assert!(message.contains(reason), "{message}");
        assert!(
            message.contains(&format!("{format} frame of {width}x{height}")),
            "{message}"
        );
        assert!(VideoFrame::zeroed(width, height, format, Duration::ZERO).is_err());
    }
    // Odd sizes are fine where nothing is subsampled.
    assert_eq!(PixelFormat::Rgb24.frame_size(3, 5).unwrap(), 45);
    assert_eq!(PixelFormat::Yuyv.frame_size(4, 5).unwrap(), 40);
}

#[test]
fn constructor_checks_the_buffer_length() {
    let err = VideoFrame::new(4, 4, PixelFormat::Nv12, vec![0; 23], Duration::ZERO).unwrap_err();
    assert!(
        matches!(
            err,
            Error::FrameDataSize {
                expected: 24,
                actual: 23,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.to_string(), "nv12 frame of 4x4 needs 24 bytes, got 23");
    let frame = VideoFrame::new(
        4,
        4,
        PixelFormat::Nv12,
        vec![7; 24],
        Duration::from_millis(5),
    )
    .unwrap();
    assert_eq!(frame.pts, Duration::from_millis(5));
    // A frame edited by hand is re-checked by validate().
    let mut edited = frame.clone();
    edited.width = 6;
    assert!(edited.validate().is_err());
    assert!(frame.validate().is_ok());
}

#[test]
fn solid_frames() {
    let white =
        VideoFrame::solid(2, 2, PixelFormat::Yuyv, [255, 255, 255], Duration::ZERO).unwrap();
    assert_eq!(white.data, [235, 128, 235, 128, 235, 128, 235, 128]);
    let red = VideoFrame::solid(2, 2, PixelFormat::Nv12, [255, 0, 0], Duration::ZERO).unwrap();
    assert_eq!(red.data, [81, 81, 81, 81, 90, 240]);
    let bgra = VideoFrame::solid(1, 1, PixelFormat::Bgra, [1, 2, 3], Duration::ZERO).unwrap();
    assert_eq!(bgra.data, [3, 2, 1, 255]);
    assert!(VideoFrame::solid(3, 2, PixelFormat::I420, [0, 0, 0], Duration::ZERO).is_err());
}

#[test]
fn format_names_parse_and_print() {
    for format in ALL_PIXEL_FORMATS {
        assert_eq!(format.name().parse::<PixelFormat>().unwrap(), format);
        assert_eq!(
            format
                .to_string()
                .to_uppercase()
                .parse::<PixelFormat>()
                .unwrap(),
            format
        );
    }
    assert_eq!("YUY2".parse::<PixelFormat>().unwrap(), PixelFormat::Yuyv);
    assert_eq!("yu12".parse::<PixelFormat>().unwrap(), PixelFormat::I420);
    let err = "mjpeg".parse::<PixelFormat>().unwrap_err();
    assert!(
        err.to_string().contains("unknown pixel format `mjpeg`"),
        "{err}"
    );
    assert_eq!(&PixelFormat::Yuyv.v4l2_fourcc(), b"YUYV");
    assert_eq!(&PixelFormat::I420.v4l2_fourcc(), b"YU12");
}

#[test]
fn debug_output_leaves_out_the_pixels() {
    let frame = VideoFrame::zeroed(640, 480, PixelFormat::Rgb24, Duration::ZERO).unwrap();
    let debug = format!("{frame:?}");
    assert!(
        debug.contains("data_len: 921600") && debug.len() < 200,
        "{debug}"
    );
}
