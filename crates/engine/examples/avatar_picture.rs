//! Renders the preset personas side by side, mid-sentence, for the README:
//! `cargo run --release -p livetalk-engine --example avatar_picture -- [OUT.png] [PRESET.toml ...]`
//! (defaults: docs/avatar.png from presets/anna.toml and presets/kai.toml).
//!
//! With `--pngtuber PRESET.toml PREFIX` it instead writes the idle / talking / blink pictures of
//! the PNGTuber convention (PREFIX-idle.png, ...), drawn by our own avatar.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use livetalk_core::persona::{Background, Persona};
use livetalk_engine::avatar::bench::{frame_window, synthetic_speech};
use livetalk_engine::avatar::{CpuAvatar, EyePose, MouthPose, Pose};

const PANEL: (u32, u32) = (960, 540);
const FPS: f64 = 30.0;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--pngtuber") {
        let [_, preset, prefix] = args.as_slice() else { bail!("usage: --pngtuber PRESET.toml PREFIX") };
        return pngtuber_pictures(preset, prefix);
    }
    let out = args.first().cloned().unwrap_or_else(|| "docs/avatar.png".into());
    let presets: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec!["presets/anna.toml".into(), "presets/kai.toml".into()]
    };
    let (pw, ph) = PANEL;
    let mut sheet = image::RgbaImage::new(pw * presets.len() as u32, ph);
    for (i, path) in presets.iter().enumerate() {
        let look = load_look(path)?;
        let panel = render_mid_speech(&look, i as u64)?;
        for (x, y, px) in panel.enumerate_pixels() {
            sheet.put_pixel(x + i as u32 * pw, y, *px);
        }
    }
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    sheet.save(&out).with_context(|| format!("writing {out}"))?;
    println!("wrote {out}");
    Ok(())
}

/// Plays synthetic speech and keeps the first frame after two seconds with the mouth well open.
fn render_mid_speech(look: &livetalk_core::AvatarLook, seed: u64) -> Result<image::RgbaImage> {
    let (w, h) = PANEL;
    let mut avatar = CpuAvatar::new(look, w, h, seed)?;
    let audio = synthetic_speech(12.0, 5 + seed);
    let mut frame = vec![0u8; (w * h * 4) as usize];
    for i in 0..(10.0 * FPS) as usize {
        let t = Duration::from_secs_f64(i as f64 / FPS);
        avatar.render_frame(frame_window(&audio, t, FPS), t, &mut frame)?;
        let pose = avatar.last_pose().expect("a frame was rendered");
        if t.as_secs_f64() > 2.0 && avatar.mouth_openness() > 0.45 && pose.eyes.closure < 0.3 {
            return Ok(image::RgbaImage::from_raw(w, h, frame).expect("frame size"));
        }
    }
    bail!("no open-mouthed frame in ten seconds of speech")
}

fn load_look(path: &str) -> Result<livetalk_core::AvatarLook> {
    let persona = Persona::load(path).with_context(|| format!("loading {path}"))?;
    let mut look = persona.look.clone().unwrap_or_default();
    if let Some(Background::Colour(colour)) = persona.background {
        look.background = colour;
    }
    Ok(look)
}

/// Idle (resting smile), talking (mouth open) and blink (eyes shut) pictures, 640x640.
fn pngtuber_pictures(preset: &str, prefix: &str) -> Result<()> {
    let look = load_look(preset)?;
    let side = 640;
    let mut avatar = CpuAvatar::new(&look, side, side, 0)?;
    let mut frame = vec![0u8; (side * side * 4) as usize];
    avatar.render_frame(&[], Duration::ZERO, &mut frame)?;
    let rest = avatar.last_pose().expect("a frame was rendered");
    let rest = Pose { head: (0.0, 0.0), body_dy: 0.0, eyes: EyePose { closure: 0.1, gaze: (0.0, 0.0), brow_lift: 0.0 }, ..rest };
    let talking = Pose { mouth: MouthPose { openness: 0.7, width: 1.0, smile: 0.4, roundness: 0.0 }, ..rest };
    let blink = Pose { eyes: EyePose { closure: 1.0, ..rest.eyes }, ..rest };
    for (name, pose) in [("idle", rest), ("talking", talking), ("blink", blink)] {
        avatar.draw_pose(&pose, &mut frame);
        let out = format!("{prefix}-{name}.png");
        image::RgbaImage::from_raw(side, side, frame.clone()).expect("frame size").save(&out)?;
        println!("wrote {out}");
    }
    Ok(())
}
