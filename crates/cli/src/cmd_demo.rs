//! `livetalk demo`: render a persona speaking into a video file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use livetalk_core::Persona;
use livetalk_engine::avatar::CpuAvatar;

use crate::avi::AviWriter;
use crate::{drive, presets, PersonaArgs};

#[derive(clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub persona: PersonaArgs,
    #[command(flatten)]
    pub drive: drive::DriveArgs,
    /// Output file. `.avi` (Motion-JPEG + PCM) is written directly; other extensions
    /// (`.mp4`, `.mkv`, `.webm`) are transcoded from it with ffmpeg when ffmpeg is installed.
    #[arg(long, short, default_value = "livetalk-demo.avi")]
    pub out: PathBuf,
    /// Output size WIDTHxHEIGHT (default: the persona's size).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    /// Frames per second of the output file.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub fps: u32,
    /// Seed for blinks and head motion (the same seed gives the same video).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(|| format!("size {text:?} is not WIDTHxHEIGHT"))?;
    let parse = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("size {text:?} is not WIDTHxHEIGHT"));
    let (w, h) = (parse(w)?, parse(h)?);
    if w < 16 || h < 16 || w > 4096 || h > 4096 || w % 2 == 1 || h % 2 == 1 {
        return Err(format!("size {w}x{h} must be even and between 16 and 4096 per side"));
    }
    Ok((w, h))
}

pub fn demo(args: DemoArgs) -> Result<()> {
    let lib = presets::library(&args.persona.preset_dirs)?;
    let persona = lib.get(&args.persona.persona)?.clone();
    let target = OutputTarget::check(&args.out)?;
    let drive = drive::resolve(args.drive.text.as_deref(), args.drive.audio.as_deref(), &persona.voice)?;
    let (width, height) = args.size.unwrap_or((persona.size.width, persona.size.height));

    let summary = render_avi(&persona, &drive, target.avi_path(), width, height, args.fps, args.seed)?;
    target.finish()?;
    println!(
        "wrote {}: {} frames at {} fps ({:.2} s), {width}x{height}, persona {}, driven by {}",
        args.out.display(),
        summary.frames,
        args.fps,
        summary.frames as f64 / args.fps as f64,
        persona.name,
        drive.description
    );
    Ok(())
}

pub struct RenderSummary {
    pub frames: u64,
}

/// Renders the whole clip into an AVI file at `path` (written as `path.partial`, renamed at the end).
fn render_avi(
    persona: &Persona,
    drive: &drive::Drive,
    path: &Path,
    width: u32,
    height: u32,
    fps: u32,
    seed: u64,
) -> Result<RenderSummary> {
    let look = persona.look.clone().unwrap_or_default();
    let mut avatar = CpuAvatar::new(&look, width, height, seed).with_context(|| format!("persona {}", persona.name))?;
    let audio_rate = drive.original.sample_rate;
    // Half a second of idle after the speech, so the clip ends with a closed mouth.
    let frames = ((drive.original.duration_secs() + 0.5) * fps as f64).ceil() as u64;
    let mut writer = AviWriter::create(path, width, height, fps, audio_rate)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let result = (|| -> Result<()> {
        let mut rgba = vec![0u8; width as usize * height as usize * 4];
        let mut rgb = vec![0u8; width as usize * height as usize * 3];
        let mut jpeg = Vec::new();
        let engine = &drive.engine.samples;
        let engine_rate = drive.engine.sample_rate as f64;
        for i in 0..frames {
            let t = i as f64 / fps as f64;
            // The analysis window is centred on the frame's time, one frame long.
            let half = engine_rate / fps as f64 / 2.0;
            let window = slice_clamped(engine, (t * engine_rate - half) as i64, (t * engine_rate + half) as i64);
            avatar.render_frame(window, Duration::from_secs_f64(t), &mut rgba)?;
            for (dst, src) in rgb.chunks_exact_mut(3).zip(rgba.chunks_exact(4)) {
                dst.copy_from_slice(&src[..3]);
            }
            jpeg.clear();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
                .encode(&rgb, width, height, image::ExtendedColorType::Rgb8)
                .context("encoding a JPEG frame")?;
            let a0 = (i * audio_rate as u64 / fps as u64) as i64;
            let a1 = ((i + 1) * audio_rate as u64 / fps as u64) as i64;
            let mut pcm = slice_clamped(&drive.original.samples, a0, a1).to_vec();
            pcm.resize((a1 - a0) as usize, 0.0);
            writer.write_frame(&jpeg, &pcm).with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            writer.finish().with_context(|| format!("cannot write {}", path.display()))?;
            Ok(RenderSummary { frames })
        }
        Err(e) => {
            writer.abandon();
            Err(e)
        }
    }
}

fn slice_clamped(samples: &[f32], start: i64, end: i64) -> &[f32] {
    let n = samples.len() as i64;
    let (s, e) = (start.clamp(0, n) as usize, end.clamp(0, n) as usize);
    &samples[s..e]
}

/// Where the file goes: AVI directly, or an AVI in a temporary file transcoded by ffmpeg.
struct OutputTarget {
    out: PathBuf,
    temp_avi: Option<PathBuf>,
}

impl OutputTarget {
    fn check(out: &Path) -> Result<OutputTarget> {
        let ext = out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if out.is_dir() {
            bail!("cannot write {}: it is a folder", out.display());
        }
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("cannot write {}: folder {} does not exist", out.display(), parent.display());
        }
        match ext.as_deref() {
            Some("avi") => Ok(OutputTarget { out: out.to_path_buf(), temp_avi: None }),
            Some("mp4" | "mkv" | "webm" | "mov") => {
                if which("ffmpeg").is_none() {
                    bail!(
                        "cannot write {}: .{} output needs ffmpeg (sudo apt-get install ffmpeg); .avi works without it",
                        out.display(),
                        ext.unwrap_or_default()
                    );
                }
                let temp = livetalk_audio::tts::tempfile_path("demo", "avi");
                Ok(OutputTarget { out: out.to_path_buf(), temp_avi: Some(temp) })
            }
            _ => bail!("cannot write {}: use a .avi, .mp4, .mkv, .webm or .mov file name", out.display()),
        }
    }

    fn avi_path(&self) -> &Path {
        self.temp_avi.as_deref().unwrap_or(&self.out)
    }

    fn finish(self) -> Result<()> {
        let Some(temp) = self.temp_avi else { return Ok(()) };
        let ext = self.out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let (video, audio): (&[&str], &[&str]) = match ext.as_str() {
            "webm" => (&["-c:v", "libvpx-vp9", "-b:v", "2M"], &["-c:a", "libopus"]),
            _ => (&["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast"], &["-c:a", "aac"]),
        };
        // Transcode into a partial file, then rename: never a half-written file under the real name.
        let mut partial = self.out.as_os_str().to_owned();
        partial.push(format!(".partial.{ext}"));
        let partial = PathBuf::from(partial);
        let status = Command::new("ffmpeg")
            .args(["-y", "-loglevel", "error", "-i"])
            .arg(&temp)
            .args(video)
            .args(audio)
            .arg(&partial)
            .status()
            .context("running ffmpeg");
        let _ = std::fs::remove_file(&temp);
        match status {
            Ok(s) if s.success() => std::fs::rename(&partial, &self.out)
                .with_context(|| format!("cannot write {}", self.out.display())),
            other => {
                let _ = std::fs::remove_file(&partial);
                bail!("ffmpeg could not write {} ({:?})", self.out.display(), other.map(|s| s.code()).ok().flatten())
            }
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()))
}
