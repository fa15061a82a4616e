//! Pixel conversions: reference values from the standards, round trips between every pair of
//! formats, chroma averaging, and rejection of sizes a format cannot hold.

use std::time::Duration;

use livetalk_core::convert::{
    convert_buffer, convert_buffer_on, convert_frame, convert_into, rgb_pixel_to_yuv,
    yuv_pixel_to_rgb, Isa,
};
use livetalk_core::frame::{
    ColorMatrix, ColorRange, ColorSpec, PixelFormat, VideoFrame, ALL_PIXEL_FORMATS,
};
use livetalk_core::Error;

const BT601_FULL: ColorSpec = ColorSpec::new(ColorMatrix::Bt601, ColorRange::Full);
const BT709_FULL: ColorSpec = ColorSpec::new(ColorMatrix::Bt709, ColorRange::Full);
const ALL_SPECS: [ColorSpec; 4] = [
    ColorSpec::BT601_LIMITED,
    ColorSpec::BT709_LIMITED,
    BT601_FULL,
    BT709_FULL,
];

/// (RGB, Y, Cb, Cr) for 100% colour bars in BT.601 limited range (ITU-R BT.601 / BT.801).
const BARS_601_100: [([u8; 3], u8, u8, u8); 8] = [
    ([255, 255, 255], 235, 128, 128),
    ([255, 255, 0], 210, 16, 146),
    ([0, 255, 255], 170, 166, 16),
    ([0, 255, 0], 145, 54, 34),
    ([255, 0, 255], 106, 202, 222),
    ([255, 0, 0], 81, 90, 240),
    ([0, 0, 255], 41, 240, 110),
    ([0, 0, 0], 16, 128, 128),
];

/// 75% colour bars in BT.601 limited range (EBU/SMPTE bars, ITU-R BT.801). 75% of 255 is
/// 191.25, so 8-bit RGB 191 lands within one code value of the table.
const BARS_601_75: [([u8; 3], u8, u8, u8); 8] = [
    ([191, 191, 191], 180, 128, 128),
    ([191, 191, 0], 162, 44, 142),
    ([0, 191, 191], 131, 156, 44),
    ([0, 191, 0], 112, 72, 58),
    ([191, 0, 191], 84, 184, 198),
    ([191, 0, 0], 65, 100, 212),
    ([0, 0, 191], 35, 212, 114),
    ([0, 0, 0], 16, 128, 128),
];

/// 100% colour bars in BT.709 limited range (ITU-R BT.709 / SMPTE RP 219).
const BARS_709_100: [([u8; 3], u8, u8, u8); 8] = [
    ([255, 255, 255], 235, 128, 128),
    ([255, 255, 0], 219, 16, 138),
    ([0, 255, 255], 188, 154, 16),
    ([0, 255, 0], 173, 42, 26),
    ([255, 0, 255], 78, 214, 230),
    ([255, 0, 0], 63, 102, 240),
    ([0, 0, 255], 32, 240, 118),
    ([0, 0, 0], 16, 128, 128),
];

fn rgb_frame(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> VideoFrame {
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            data.extend_from_slice(&pixel(x, y));
        }
    }
    VideoFrame::new(
        width,
        height,
        PixelFormat::Rgb24,
        data,
        Duration::from_millis(125),
    )
    .unwrap()
}

/// A picture whose colour is constant over each 2×2 block (so chroma subsampling loses nothing)
/// and covers dark, light, saturated and grey colours.
fn block_picture() -> VideoFrame {
    rgb_frame(64, 48, |x, y| {
        let (bx, by) = (x / 2, y / 2);
        [
            (bx * 8 + by * 3) as u8 % 255,
            (by * 10 + 7) as u8,
            ((bx * bx + by * 5) % 256) as u8,
        ]
    })
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn yuv_of(frame: &VideoFrame) -> (u8, u8, u8) {
    let data = &frame.data;
    match frame.format {
        PixelFormat::Yuyv => (data[0], data[1], data[3]),
        PixelFormat::I420 => {
            let luma = (frame.width * frame.height) as usize;
            (data[0], data[luma], data[luma + luma / 4])
        }
        PixelFormat::Nv12 => {
            let luma = (frame.width * frame.height) as usize;
            (data[0], data[luma], data[luma + 1])
        }
        other => panic!("{other} is not YUV"),
    }
}

fn check_bars(bars: &[([u8; 3], u8, u8, u8)], spec: ColorSpec, tolerance: u8) {
    for &(rgb, y, u, v) in bars {
        let got = rgb_pixel_to_yuv(rgb, spec);
        let ok = got.0.abs_diff(y) <= tolerance
            && got.1.abs_diff(u) <= tolerance
            && got.2.abs_diff(v) <= tolerance;
        assert!(
            ok,
            "{spec:?} {rgb:?}: got {got:?}, standard says {:?}",
            (y, u, v)
        );
        // The frame paths use the same arithmetic as the pixel helper, in every YUV format.
        let frame = VideoFrame::solid(4, 2, PixelFormat::Rgb24, rgb, Duration::ZERO).unwrap();
        for format in [PixelFormat::Yuyv, PixelFormat::I420, PixelFormat::Nv12] {
            assert_eq!(
                yuv_of(&convert_frame(&frame, format, spec).unwrap()),
                got,
                "{format} {rgb:?}"
            );
        }
    }
}

#[test]
fn colour_bars_match_bt601_limited_exactly() {
    check_bars(&BARS_601_100, ColorSpec::BT601_LIMITED, 0);
}

#[test]
fn seventy_five_percent_bars_match_bt601_within_one_code() {
    check_bars(&BARS_601_75, ColorSpec::BT601_LIMITED, 1);
}

#[test]
fn colour_bars_match_bt709_limited_exactly() {
    check_bars(&BARS_709_100, ColorSpec::BT709_LIMITED, 0);
}

#[test]
fn full_range_uses_every_code_value() {
    // JFIF (BT.601 full range): white and black hit the ends, red follows the JPEG matrix.
    assert_eq!(
        rgb_pixel_to_yuv([255, 255, 255], BT601_FULL),
        (255, 128, 128)
    );
    assert_eq!(rgb_pixel_to_yuv([0, 0, 0], BT601_FULL), (0, 128, 128));
    assert_eq!(rgb_pixel_to_yuv([255, 0, 0], BT601_FULL), (76, 85, 255));
    assert_eq!(rgb_pixel_to_yuv([0, 0, 255], BT709_FULL), (18, 255, 116));
}

#[test]
fn greys_stay_grey_in_every_spec() {
    for spec in ALL_SPECS {
        for level in 0..=255u8 {
            let (y, u, v) = rgb_pixel_to_yuv([level; 3], spec);
            assert_eq!((u, v), (128, 128), "{spec:?} grey {level}");
            let back = yuv_pixel_to_rgb(y, u, v, spec);
            assert!(
                back.iter().all(|&c| c.abs_diff(level) <= 1),
                "{spec:?} grey {level} -> {y} -> {back:?}"
            );
        }
    }
}

#[test]
fn yuv_decodes_to_the_standard_rgb() {
    for &(rgb, y, u, v) in &BARS_601_100 {
        let back = yuv_pixel_to_rgb(y, u, v, ColorSpec::BT601_LIMITED);
        assert!(max_diff(&back, &rgb) <= 2, "{rgb:?} decoded as {back:?}");
    }
    // Below-black and above-white codes clamp instead of wrapping.
    assert_eq!(
        yuv_pixel_to_rgb(0, 128, 128, ColorSpec::BT601_LIMITED),
        [0, 0, 0]
    );
    assert_eq!(
        yuv_pixel_to_rgb(255, 128, 128, ColorSpec::BT601_LIMITED),
        [255, 255, 255]
    );
    // Out-of-gamut codes clamp per channel: G = 255 − 0.344·127 − 0.714·127 ≈ 121.
    assert_eq!(yuv_pixel_to_rgb(255, 255, 255, BT601_FULL), [255, 121, 255]);
}

/// Largest byte error of `a → b → a` for a block-constant picture, by the kinds of formats.
fn round_trip_bound(a: PixelFormat, b: PixelFormat, spec: ColorSpec) -> u8 {
    let full = spec.range == ColorRange::Full;
    match (a.is_rgb(), b.is_rgb()) {
        // Reordering bytes and moving samples lose nothing.
        (true, true) | (false, false) => 0,
        // RGB → YUV → RGB: limited range has 219 luma codes for 256 RGB levels.
        (true, false) => {
            if full {
                1
            } else {
                2
            }
        }
        // YUV (made from RGB, so in gamut) → RGB → YUV: one rounding each way.
        (false, true) => 1,
    }
}

#[test]
fn every_pair_round_trips_within_bounds() {
    let picture = block_picture();
    for spec in ALL_SPECS {
        for a in ALL_PIXEL_FORMATS {
            let start = convert_frame(&picture, a, spec).unwrap();
            for b in ALL_PIXEL_FORMATS {
                let there = convert_frame(&start, b, spec).unwrap();
                assert_eq!(there.data.len(), b.frame_size(64, 48).unwrap());
                assert_eq!(there.pts, picture.pts);
                let back = convert_frame(&there, a, spec).unwrap();
                let diff = max_diff(&start.data, &back.data);
                let bound = round_trip_bound(a, b, spec);
                assert!(
                    diff <= bound,
                    "{spec:?}: {a} -> {b} -> {a} differs by {diff} > {bound}"
                );
            }
        }
    }
}

#[test]
fn smooth_pictures_round_trip_closely_through_420() {
    // Not block-constant: chroma subsampling loses detail, but on a smooth gradient little.
    let gradient = rgb_frame(96, 64, |x, y| {
        [(x * 2 + 40) as u8, (y * 3 + 20) as u8, (x + y + 60) as u8]
    });
    for format in [PixelFormat::I420, PixelFormat::Nv12, PixelFormat::Yuyv] {
        let yuv = convert_frame(&gradient, format, ColorSpec::BT601_LIMITED).unwrap();
        let back = convert_frame(&yuv, PixelFormat::Rgb24, ColorSpec::BT601_LIMITED).unwrap();
        let diff = max_diff(&gradient.data, &back.data);
        assert!(diff <= 6, "{format}: gradient differs by {diff}");
    }
}

#[test]
fn chroma_is_the_average_of_the_block() {
    let (red, blue) = ([255, 0, 0], [0, 0, 255]);
    // Left column red, right column blue: every 2×2 block and horizontal pair is half and half.
    let picture = rgb_frame(2, 2, |x, _| if x == 0 { red } else { blue });
    let mean_colour = [128, 0, 128];
    let (_, u, v) = rgb_pixel_to_yuv(mean_colour, ColorSpec::BT601_LIMITED);
    for format in [PixelFormat::I420, PixelFormat::Nv12, PixelFormat::Yuyv] {
        let yuv = convert_frame(&picture, format, ColorSpec::BT601_LIMITED).unwrap();
        let (y0, cu, cv) = yuv_of(&yuv);
        assert_eq!(y0, rgb_pixel_to_yuv(red, ColorSpec::BT601_LIMITED).0);
        assert!(
            cu.abs_diff(u) <= 1 && cv.abs_diff(v) <= 1,
            "{format}: chroma {cu},{cv} vs mean {u},{v}"
        );
    }
    // Top row red, bottom row blue: 4:2:0 averages vertically, 4:2:2 keeps each row's colour.
    let rows = rgb_frame(2, 2, |_, y| if y == 0 { red } else { blue });
    let i420 = convert_frame(&rows, PixelFormat::I420, ColorSpec::BT601_LIMITED).unwrap();
    assert!(i420.data[4].abs_diff(u) <= 1 && i420.data[5].abs_diff(v) <= 1);
    let yuyv = convert_frame(&rows, PixelFormat::Yuyv, ColorSpec::BT601_LIMITED).unwrap();
    assert_eq!((yuyv.data[1], yuyv.data[3]), (90, 240));
    assert_eq!((yuyv.data[5], yuyv.data[7]), (240, 110));
    // And YUYV → I420 averages the two rows' chroma the same way.
    let via_yuyv = convert_frame(&yuyv, PixelFormat::I420, ColorSpec::BT601_LIMITED).unwrap();
    assert_eq!(
        &via_yuyv.data[4..],
        &[
            (90u16 + 240).div_ceil(2) as u8,
            (240u16 + 110).div_ceil(2) as u8
        ]
    );
}

#[test]
fn rgb_orders_and_alpha() {
    let picture = rgb_frame(
        2,
        1,
        |x, _| if x == 0 { [10, 20, 30] } else { [40, 50, 60] },
    );
    let spec = ColorSpec::default();
    let rgba = convert_frame(&picture, PixelFormat::Rgba, spec).unwrap();
    assert_eq!(rgba.data, [10, 20, 30, 255, 40, 50, 60, 255]);
    let bgra = convert_frame(&picture, PixelFormat::Bgra, spec).unwrap();
    assert_eq!(bgra.data, [30, 20, 10, 255, 60, 50, 40, 255]);
    // Input alpha is ignored, output alpha is opaque.
    let translucent =
        VideoFrame::new(1, 1, PixelFormat::Bgra, vec![1, 2, 3, 0], Duration::ZERO).unwrap();
    assert_eq!(
        convert_frame(&translucent, PixelFormat::Rgba, spec)
            .unwrap()
            .data,
        [3, 2, 1, 255]
    );
    assert_eq!(
        convert_frame(&translucent, PixelFormat::Rgb24, spec)
            .unwrap()
            .data,
        [3, 2, 1]
    );
}

#[test]
fn i420_and_nv12_hold_the_same_samples() {
    let picture = block_picture();
    let i420 = convert_frame(&picture, PixelFormat::I420, ColorSpec::default()).unwrap();
    let nv12 = convert_frame(&picture, PixelFormat::Nv12, ColorSpec::default()).unwrap();
    let luma = 64 * 48;
    let quarter = luma / 4;
    assert_eq!(i420.data[..luma], nv12.data[..luma]);
    for i in 0..quarter {
        assert_eq!(nv12.data[luma + 2 * i], i420.data[luma + i], "U sample {i}");
        assert_eq!(
            nv12.data[luma + 2 * i + 1],
            i420.data[luma + quarter + i],
            "V sample {i}"
        );
    }
}

#[test]
fn sizes_the_target_cannot_hold_are_rejected() {
    let odd = rgb_frame(3, 3, |_, _| [1, 2, 3]);
    for format in [PixelFormat::Yuyv, PixelFormat::I420, PixelFormat::Nv12] {
        let err = convert_frame(&odd, format, ColorSpec::default()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::FrameDimensions {
                    width: 3,
                    height: 3,
                    ..
                }
            ),
            "{format}: {err}"
        );
        assert!(err.to_string().contains("even width"), "{err}");
    }
    // 4:2:2 needs an even width only; 4:2:0 needs an even height too.
    let odd_height = rgb_frame(4, 3, |_, _| [1, 2, 3]);
    assert!(convert_frame(&odd_height, PixelFormat::Yuyv, ColorSpec::default()).is_ok());
    let err = convert_frame(&odd_height, PixelFormat::I420, ColorSpec::default()).unwrap_err();
    assert!(err.to_string().contains("even height"), "{err}");
    // RGB → RGB works at any size.
    assert!(convert_frame(&odd, PixelFormat::Bgra, ColorSpec::default()).is_ok());
}

#[test]
fn buffers_of_the_wrong_length_are_rejected() {
    let src = vec![0u8; 4 * 2 * 3];
    let mut short = vec![0u8; 4 * 2 * 2 - 1];
    let err = convert_buffer(
        &src,
        PixelFormat::Rgb24,
        &mut short,
        PixelFormat::Yuyv,
        4,
        2,
        ColorSpec::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::FrameDataSize {
                expected: 16,
                actual: 15,
                ..
            }
        ),
        "{err}"
    );
    let err = convert_buffer(
        &src[1..],
        PixelFormat::Rgb24,
        &mut [0; 16],
        PixelFormat::Yuyv,
        4,
        2,
        ColorSpec::default(),
    )
    .unwrap_err();
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
}

#[test]
fn convert_into_reuses_the_destination() {
    let picture = block_picture();
    let mut dst = VideoFrame::zeroed(64, 48, PixelFormat::Nv12, Duration::ZERO).unwrap();
    let buffer = dst.data.as_ptr();
    convert_into(&picture, &mut dst, ColorSpec::default()).unwrap();
    assert_eq!(
        dst.data.as_ptr(),
        buffer,
        "no new allocation for a right-sized buffer"
    );
    assert_eq!(dst.pts, picture.pts);
    assert_eq!(
        dst,
        convert_frame(&picture, PixelFormat::Nv12, ColorSpec::default()).unwrap()
    );

    let mut wrong = VideoFrame::zeroed(32, 48, PixelFormat::Nv12, Duration::ZERO).unwrap();
    let err = convert_into(&picture, &mut wrong, ColorSpec::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ConversionSizeMismatch {
                src_width: 64,
                dst_width: 32,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn solid_frames_in_every_format_decode_to_their_colour() {
    let colour = [200, 120, 40];
    for spec in ALL_SPECS {
        for format in ALL_PIXEL_FORMATS {
            let frame = VideoFrame::solid_with(6, 4, format, colour, spec, Duration::ZERO).unwrap();
            let rgb = convert_frame(&frame, PixelFormat::Rgb24, spec).unwrap();
            for pixel in rgb.data.chunks_exact(3) {
                assert!(
                    max_diff(pixel, &colour) <= 2,
                    "{spec:?} {format}: {pixel:?}"
                );
            }
        }
    }
}

#[test]
fn every_instruction_set_gives_the_same_bytes() {
    // Not block-constant, with widths that leave remainders after any vector width.
    let noise = rgb_frame(70, 38, |x, y| {
        let h = x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503);
        [h as u8, (h >> 8) as u8, (h >> 16) as u8]
    });
    let isas = Isa::available();
    assert!(isas.contains(&Isa::Baseline) && Isa::best() == *isas.last().unwrap());
    for spec in ALL_SPECS {
        for a in ALL_PIXEL_FORMATS {
            let src = convert_frame(&noise, a, spec).unwrap();
            for b in ALL_PIXEL_FORMATS {
                let size = b.frame_size(70, 38).unwrap();
                let outputs: Vec<Vec<u8>> = isas
                    .iter()
                    .map(|&isa| {
                        let mut dst = vec![0; size];
                        convert_buffer_on(isa, &src.data, a, &mut dst, b, 70, 38, spec).unwrap();
                        dst
                    })
                    .collect();
                for (isa, output) in isas.iter().zip(&outputs) {
                    assert!(
                        output == &outputs[0],
                        "{spec:?} {a} -> {b}: {isa:?} differs from baseline"
                    );
                }
            }
        }
    }
}
