//! Conversion benchmark: 1280×720 at 30 fps leaves 33 ms a frame for everything, so each
//! conversion on the camera path should take a small part of that. Speed is measured here,
//! never asserted in a unit test:
//!
//!     cargo run --release -p livetalk-core --example convert_bench

use std::time::{Duration, Instant};

use livetalk_core::convert::{convert_buffer_on, convert_into, Isa};
use livetalk_core::frame::{ColorSpec, PixelFormat, VideoFrame};

const BUDGET_PER_FRAME: Duration = Duration::from_millis(33);

fn picture(format: PixelFormat) -> VideoFrame {
    let rgb: Vec<u8> = (0..1280u32 * 720 * 3)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let frame = VideoFrame::new(1280, 720, PixelFormat::Rgb24, rgb, Duration::ZERO).unwrap();
    frame.convert(format, ColorSpec::default()).unwrap()
}

fn main() {
    let pairs = [
        (PixelFormat::Rgba, PixelFormat::Yuyv),
        (PixelFormat::Bgra, PixelFormat::Nv12),
        (PixelFormat::Rgb24, PixelFormat::I420),
        (PixelFormat::I420, PixelFormat::Rgba),
        (PixelFormat::Yuyv, PixelFormat::Bgra),
        (PixelFormat::Nv12, PixelFormat::Yuyv),
        (PixelFormat::Rgba, PixelFormat::Bgra),
    ];
    for (from, to) in pairs {
        let src = picture(from);
        let mut dst = VideoFrame::zeroed(1280, 720, to, Duration::ZERO).unwrap();
        const RUNS: u32 = 10;
        // One untimed run first: it faults in the destination's pages.
        convert_into(&src, &mut dst, ColorSpec::default()).unwrap();
        let started = Instant::now();
        for _ in 0..RUNS {
            convert_into(&src, &mut dst, ColorSpec::default()).unwrap();
        }
        let per_frame = started.elapsed() / RUNS;
        println!(
            "{from} -> {to}: {:.2} ms per 1280x720 frame",
            per_frame.as_secs_f64() * 1e3
        );
        report_each_isa(&src, to);
        println!(
            "{from} -> {to}: {:.1}% of the 30 fps frame budget",
            100.0 * per_frame.as_secs_f64() / BUDGET_PER_FRAME.as_secs_f64()
        );
    }
}

/// Prints the time of each instruction-set variant, for comparing them.
fn report_each_isa(src: &VideoFrame, to: PixelFormat) {
    let mut dst = vec![0; to.frame_size(src.width, src.height).unwrap()];
    for isa in Isa::available() {
        let run = |dst: &mut [u8]| {
            convert_buffer_on(
                isa,
                &src.data,
                src.format,
                dst,
                to,
                src.width,
                src.height,
                ColorSpec::default(),
            )
            .unwrap()
        };
        run(&mut dst);
        let started = Instant::now();
        for _ in 0..10 {
            run(&mut dst);
        }
        println!(
            "    {isa:?}: {:.2} ms",
            started.elapsed().as_secs_f64() * 1e3 / 10.0
        );
    }
}
