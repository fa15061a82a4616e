//! The idle placeholder: what the source shows while no engine feeds it (missing, stuck or
//! dead). A drawn figure on a dark slate with an orange bar, in colours no persona uses, so a
//! person and a test can both tell it from the avatar.

/// Slate background (RGB).
pub const BACKGROUND: [u8; 3] = [0x1d, 0x24, 0x30];
/// The figure: a head and shoulders (RGB).
pub const FIGURE: [u8; 3] = [0x5b, 0x6b, 0x85];
/// The bar along the bottom (RGB).
pub const ACCENT: [u8; 3] = [0xf2, 0x8c, 0x28];

/// A `width`×`height` BGRA placeholder.
pub fn placeholder_bgra(width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as f32, height as f32);
    let head = (w / 2.0, h * 0.40, h * 0.16);
    let shoulders = (w / 2.0, h * 0.95, (w * 0.24).min(h * 0.45), h * 0.30);
    let bar_from = height - (height / 30).max(1);
    let mut out = Vec::with_capacity(width as usize * height as usize * 4);
    for y in 0..height {
        for x in 0..width {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let in_head = (px - head.0).powi(2) + (py - head.1).powi(2) <= head.2 * head.2;
            let in_shoulders = ((px - shoulders.0) / shoulders.2).powi(2) + ((py - shoulders.1) / shoulders.3).powi(2) <= 1.0;
            let rgb = if y >= bar_from {
                ACCENT
            } else if in_head || in_shoulders {
                FIGURE
            } else {
                BACKGROUND
            };
            out.extend_from_slice(&[rgb[2], rgb[1], rgb[0], 255]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb_at(frame: &[u8], width: u32, x: u32, y: u32) -> [u8; 3] {
        let i = (y * width + x) as usize * 4;
        [frame[i + 2], frame[i + 1], frame[i]]
    }

    #[test]
    fn the_placeholder_has_its_three_colours_where_expected() {
        let (w, h) = (640, 360);
        let frame = placeholder_bgra(w, h);
        assert_eq!(frame.len(), (w * h * 4) as usize);
        assert_eq!(rgb_at(&frame, w, 5, 5), BACKGROUND);
        assert_eq!(rgb_at(&frame, w, w / 2, h * 2 / 5), FIGURE);
        assert_eq!(rgb_at(&frame, w, w / 2, h - 2), ACCENT);
        assert!(frame.chunks_exact(4).all(|p| p[3] == 255));
    }

    #[test]
    fn tiny_sizes_draw() {
        assert_eq!(placeholder_bgra(1, 1).len(), 4);
        assert_eq!(placeholder_bgra(3, 2).len(), 24);
    }
}
