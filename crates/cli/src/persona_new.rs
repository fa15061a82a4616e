//! `livetalk persona new NAME --image photo.jpg | --camera [DEVICE]`: a preset in the user's
//! persona folder with a face-centred 512×512 reference picture and a CPU-avatar look sampled
//! from the photo.
//!
//! Nothing of the user's is ever overwritten: an existing preset needs `--force`, and even then
//! the old preset and picture are kept as `*.bak` files. The new files are made and validated in
//! a staging folder first and moved into place last.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::DynamicImage;
use livetalk_core::persona::Webcam;
use livetalk_core::Persona;

use crate::portrait::{make_portrait, PORTRAIT_SIDE};
use crate::presets;

#[derive(clap::Args)]
pub struct NewArgs {
    /// The persona's name: 1 to 64 ASCII letters, digits, `-` or `_`.
    pub name: String,
    /// A photo of the person (PNG or JPEG); the largest face is centred in the picture.
    #[arg(long, value_name = "PHOTO", required_unless_present = "camera", conflicts_with = "camera")]
    pub image: Option<PathBuf>,
    /// Take the photo with the webcam (default: the first camera; or an index or /dev/videoN).
    /// Needs a build with `--features webcam`.
    #[arg(long, value_name = "DEVICE", num_args = 0..=1, default_missing_value = "default")]
    pub camera: Option<String>,
    /// What the UI shows (default: the name).
    #[arg(long)]
    pub display_name: Option<String>,
    /// Text prompt for the diffusion engine.
    #[arg(long)]
    pub prompt: Option<String>,
    /// espeak-ng voice.
    #[arg(long)]
    pub voice: Option<String>,
    /// Global hotkey that switches to this persona, like Ctrl+Alt+5.
    #[arg(long)]
    pub hotkey: Option<String>,
    /// Where to write the preset (default: ~/.config/livetalk/personas, or $XDG_CONFIG_HOME's).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Replace an existing preset of this name (the old files are kept as .bak).
    #[arg(long)]
    pub force: bool,
}

pub fn new_persona(args: NewArgs) -> Result<()> {
    // The name becomes file names: check it before anything touches the disk.
    Persona::new(&args.name).map_err(|_| {
        anyhow::anyhow!("`{}` is not a usable persona name: use 1 to 64 ASCII letters, digits, `-` or `_`", args.name)
    })?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => presets::user_dir().context(
            "neither XDG_CONFIG_HOME nor HOME is set: pass --dir to say where the preset goes",
        )?,
    };
    let preset_path = dir.join(format!("{}.toml", args.name));
    let picture_path = dir.join(format!("{}.png", args.name));
    let existing: Vec<&Path> = [preset_path.as_path(), picture_path.as_path()]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "persona `{}` already exists ({}); pass --force to replace it (the old files are kept as .bak)",
            args.name,
            existing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    check_no_other_preset_named(&dir, &args.name, &preset_path)?;

    let (photo, source) = match (&args.image, &args.camera) {
        (Some(path), _) => (read_photo(path)?, path.display().to_string()),
        (None, Some(device)) => (take_photo(device)?, format!("webcam {device}")),
        (None, None) => bail!("say where the photo comes from: --image PHOTO or --camera"),
    };
    let portrait = make_portrait(&photo).with_context(|| format!("making a portrait from {source}"))?;
    match &portrait.face {
        Some(face) => eprintln!(
            "livetalk: face found at {:.0},{:.0} ({:.0}x{:.0} px, score {:.1}); cropped {}x{} at {},{}",
            face.x, face.y, face.width, face.height, face.score, portrait.crop.2, portrait.crop.2, portrait.crop.0, portrait.crop.1
        ),
        None => eprintln!(
            "livetalk: warning: no face found in {source}; using the centre {}x{} square (a frontal, well-lit photo works best)",
            portrait.crop.2, portrait.crop.2
        ),
    }

    let mut text = format!("name = {:?}\nimage = {:?}\n", args.name, format!("{}.png", args.name));
    for (field, value) in [
        ("display_name", &args.display_name),
        ("prompt", &args.prompt),
        ("voice", &args.voice),
        ("hotkey", &args.hotkey),
    ] {
        if let Some(value) = value {
            text.push_str(&format!("{field} = {value:?}\n"));
        }
    }
    text.push_str(&format!("background = \"{}\"\n\n", portrait.look.background));
    #[derive(serde::Serialize)]
    struct LookTable<'a> {
        look: &'a livetalk_core::look::AvatarLook,
    }
    text.push_str(&toml::to_string(&LookTable { look: &portrait.look }).context("writing the look as TOML")?);

    std::fs::create_dir_all(&dir).with_context(|| format!("creating the persona folder {}", dir.display()))?;
    // Stage both files next to their final place (same file system: the moves are renames),
    // validate the preset there exactly as it will be loaded, then move them in.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.new", args.name))
        .tempdir_in(&dir)
        .with_context(|| format!("writing in {}", dir.display()))?;
    let staged_picture = staging.path().join(format!("{}.png", args.name));
    portrait
        .picture
        .save_with_format(&staged_picture, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", staged_picture.display()))?;
    let staged_preset = staging.path().join(format!("{}.toml", args.name));
    let persona = Persona::from_toml_str(&text, &staged_preset)?;
    std::fs::write(&staged_preset, &text).with_context(|| format!("writing {}", staged_preset.display()))?;

    for old in &existing {
        let backup = free_backup_name(old);
        std::fs::rename(old, &backup).with_context(|| format!("keeping {} as {}", old.display(), backup.display()))?;
        eprintln!("livetalk: kept the old {} as {}", old.display(), backup.display());
    }
    std::fs::rename(&staged_picture, &picture_path).with_context(|| format!("writing {}", picture_path.display()))?;
    std::fs::rename(&staged_preset, &preset_path).with_context(|| format!("writing {}", preset_path.display()))?;

    println!("made persona {} ({})", persona.name, persona.display_name);
    println!("  preset  {}", preset_path.display());
    println!("  picture {} ({PORTRAIT_SIDE}x{PORTRAIT_SIDE})", picture_path.display());
    println!("  look    skin {} hair {} ({:?}) shirt {} backdrop {}", portrait.look.skin, portrait.look.hair,
        portrait.look.hair_style, portrait.look.shirt, portrait.look.background);
    println!("try it: livetalk run --persona {}", persona.name);
    Ok(())
}

fn read_photo(path: &Path) -> Result<DynamicImage> {
    if !path.is_file() {
        bail!("the photo {} does not exist", path.display());
    }
    image::ImageReader::open(path)
        .and_then(|reader| reader.with_guessed_format())
        .map_err(anyhow::Error::from)
        .and_then(|reader| reader.decode().map_err(anyhow::Error::from))
        .with_context(|| format!("cannot read the photo {} (PNG or JPEG)", path.display()))
}

/// A still from the webcam, after it has had a moment to settle its exposure.
fn take_photo(device: &str) -> Result<DynamicImage> {
    use livetalk_core::PixelFormat;
    let webcam: Webcam = device.parse().map_err(anyhow::Error::msg)?;
    let capture = livetalk_webcam::Capture::open(&webcam)?;
    let mut seen = 0;
    let mut picture = None;
    for _ in 0..15 {
        let (seq, frame) = capture.wait_newer(seen, livetalk_webcam::engine::FIRST_PICTURE_TIMEOUT)?;
        seen = seq;
        picture = Some(frame);
    }
    let frame = picture.context("the webcam sent no picture")?;
    let rgb = frame.convert(PixelFormat::Rgb24, livetalk_core::frame::ColorSpec::BT601_LIMITED)?;
    let image = image::RgbImage::from_raw(rgb.width, rgb.height, rgb.data).context("a webcam picture of the wrong size")?;
    eprintln!("livetalk: took a {}x{} picture with webcam {device}", image.width(), image.height());
    Ok(DynamicImage::ImageRgb8(image))
}

/// Another file in the folder that defines a persona of this name would make the new one
/// ambiguous.
fn check_no_other_preset_named(dir: &Path, name: &str, preset_path: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let library = livetalk_core::PersonaLibrary::discover(&[dir.to_path_buf()])?;
    if let Ok(other) = library.get(name) {
        if other.origin != preset_path {
            bail!(
                "{} already defines persona `{name}`; pick another name, or edit or remove that preset",
                other.origin.display()
            );
        }
    }
    Ok(())
}

/// `NAME.toml.bak`, or `NAME.toml.bak.2`, `.3`, … if that is taken.
fn free_backup_name(path: &Path) -> PathBuf {
    let base = format!("{}.bak", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 2;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}
