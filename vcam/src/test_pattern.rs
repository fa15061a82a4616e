//! The known test persona the end-to-end tests write and read back: a 512×512 frame (the model's
//! size) of eight colour bars over a strip of eight black/white blocks that spell the frame
//! number (bit 7 on the left), so a reader can check colours and see frames advance.

use std::time::Duration;

use livetalk_core::frame::{PixelFormat, VideoFrame};

pub const SIZE: u32 = 512;
/// Rows 0..BARS_HEIGHT hold the bars; the rest the frame-number blocks.
pub const BARS_HEIGHT: u32 = 448;
pub const BAR_COLOURS: [[u8; 3]; 8] = [
    [255, 255, 255],
    [255, 255, 0],
    [0, 255, 255],
    [0, 255, 0],
    [255, 0, 255],
    [255, 0, 0],
    [0, 0, 255],
    [0, 0, 0],
];
/// The backdrop the tests compose the pattern onto.
pub const BACKDROP: [u8; 3] = [30, 36, 48];

/// Frame `number` of the pattern, stamped with `pts`.
pub fn frame(number: u64, pts: Duration) -> VideoFrame {
    let bar_width = (SIZE / 8) as usize;
    let mut data = Vec::with_capacity((SIZE * SIZE * 3) as usize);
    for y in 0..SIZE {
        for x in 0..SIZE as usize {
            let i = x / bar_width;
            let rgb = if y < BARS_HEIGHT {
                BAR_COLOURS[i]
            } else if (number >> (7 - i)) & 1 == 1 {
                [255, 255, 255]
            } else {
                [0, 0, 0]
            };
            data.extend_from_slice(&rgb);
        }
    }
    VideoFrame { width: SIZE, height: SIZE, format: PixelFormat::Rgb24, data, pts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_number_blocks() {
        let f = frame(0b1010_0001, Duration::ZERO);
        f.validate().unwrap();
        let px = |x: usize, y: usize| &f.data[(y * 512 + x) * 3..][..3];
        assert_eq!(px(32, 10), [255, 255, 255]);
        assert_eq!(px(64 * 5 + 32, 400), [255, 0, 0]);
        assert_eq!(px(32, 480), [255, 255, 255], "bit 7 set");
        assert_eq!(px(64 + 32, 480), [0, 0, 0], "bit 6 clear");
        assert_eq!(px(7 * 64 + 32, 480), [255, 255, 255], "bit 0 set");
    }
}
