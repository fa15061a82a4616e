//! Persona presets: who the avatar is (picture, prompt, voice, look) and how it is framed
//! (background, output size), one TOML file each.
//!
//! ```toml
//! name = "anna"                    # defaults to the file's stem
//! display_name = "Anna"            # defaults to the name
//! image = "anna.png"               # reference picture for the diffusion engine
//! prompt = "A woman with short dark hair talks to the camera, soft studio light"
//! voice = "en-gb"                  # espeak-ng voice, default "en-us"
//! background = "#1e2430"           # a colour, or a picture next to the preset
//! size = "1280x720"                # output size, default 1280x720
//! hotkey = "Ctrl+Alt+1"
//! # webcam = "/dev/video0"        # a "me" persona: the user's real webcam instead of an avatar
//!
//! [pngtuber]                       # optional: a picture avatar instead of the drawn one
//! idle = "anna-idle.png"
//! talking = "anna-talk.png"
//! blink = "anna-blink.png"         # optional
//!
//! [look]                           # optional: the drawn CPU avatar (see `crate::look`)
//! hair_style = "long"
//! ```
//!
//! Picture paths are relative to the preset's folder and must stay inside it (presets are
//! shared; one must not read files from elsewhere on the user's disk). Every problem is one
//! [`Error`] naming the file and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::look::{AvatarLook, Rgb};

mod hotkey;
mod webcam;

pub use hotkey::{Hotkey, HotkeyConflict, NAMED_KEYS};
pub use webcam::Webcam;

/// The espeak-ng voice used when a preset names none.
pub const DEFAULT_VOICE: &str = "en-us";
/// Largest output width or height a preset may ask for.
pub const MAX_OUTPUT_DIMENSION: u32 = 4096;
/// Picture file extensions the loaders decode.
pub const PICTURE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The size of the video a persona is rendered at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutputSize {
    pub width: u32,
    pub height: u32,
}

impl Default for OutputSize {
    fn default() -> Self {
        OutputSize {
            width: 1280,
            height: 720,
        }
    }
}

impl fmt::Display for OutputSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for OutputSize {
    type Err = String;

    /// Parses `"WIDTHxHEIGHT"`: both non-zero, even (4:2:0 cameras), at most 4096.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let expected = || format!("`{text}` is not a size like \"1280x720\"");
        let (w, h) = text.split_once(['x', 'X']).ok_or_else(expected)?;
        let parse = |s: &str| s.trim().parse::<u32>().map_err(|_| expected());
        let (width, height) = (parse(w)?, parse(h)?);
        if width == 0 || height == 0 {
            return Err(format!(
                "{width}x{height}: width and height must be non-zero"
            ));
        }
        if width > MAX_OUTPUT_DIMENSION || height > MAX_OUTPUT_DIMENSION {
            return Err(format!(
                "{width}x{height}: width and height must be at most {MAX_OUTPUT_DIMENSION}"
            ));
        }
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(format!(
                "{width}x{height}: width and height must be even (YUV 4:2:0 cameras need it)"
            ));
        }
        Ok(OutputSize { width, height })
    }
}

/// What is behind the avatar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Background {
    Colour(Rgb),
    /// An absolute path to a picture inside the preset's folder.
    Picture(PathBuf),
}

/// A picture avatar: one picture while quiet, one while talking, one for blinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PngTuber {
    pub idle: PathBuf,
    pub talking: PathBuf,
    pub blink: Option<PathBuf>,
}

/// A validated persona preset. Paths are absolute and known to exist when loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Persona {
    /// Identifier used on the command line (`--persona anna`): ASCII letters, digits, `-`, `_`.
    pub name: String,
    /// What the UI shows.
    pub display_name: String,
    /// Reference picture for the diffusion engine.
    pub image: Option<PathBuf>,
    /// Text prompt for the diffusion engine (empty: the engine's default).
    pub prompt: String,
    /// espeak-ng voice name for text-to-speech.
    pub voice: String,
    /// The drawn CPU avatar's look.
    pub look: Option<AvatarLook>,
    pub pngtuber: Option<PngTuber>,
    /// `None`: the engine's own background (the look's colour for the CPU avatar).
    pub background: Option<Background>,
    pub size: OutputSize,
    pub hotkey: Option<Hotkey>,
    /// A "me" persona: the user's real webcam is shown instead of an avatar.
    pub webcam: Option<Webcam>,
    /// The preset file this persona came from; relative paths in it resolve against its folder.
    pub origin: PathBuf,
}

/// The preset as written in TOML, before validation.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    voice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    background: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hotkey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webcam: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pngtuber: Option<PngTuberFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    look: Option<AvatarLook>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PngTuberFile {
    idle: String,
    talking: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blink: Option<String>,
}

impl Persona {
    /// A persona with every default and no pictures, as if loaded from `<name>.toml` in the
    /// current folder (the built-in persona of `livetalk demo`).
    pub fn new(name: &str) -> Result<Self> {
        let origin = PathBuf::from(format!("{name}.toml"));
        Self::from_toml_str(&format!("name = {:?}\n", name), &origin)
    }

    /// Reads and validates the preset file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates preset text that lives (or will live) at `origin_path`; pictures
    /// resolve against its folder and must exist.
    pub fn from_toml_str(text: &str, origin_path: impl AsRef<Path>) -> Result<Self> {
        let origin = absolute(origin_path.as_ref());
        let file: PresetFile = toml::from_str(text).map_err(|e| Error::PersonaSyntax {
            path: origin.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Resolver::new(&origin).persona(file)
    }

    /// The folder this persona's relative paths resolve against.
    pub fn folder(&self) -> &Path {
        self.origin.parent().unwrap_or(Path::new(""))
    }

    /// The preset as TOML, with picture paths relative to the preset's folder again: loading
    /// the text from the same place gives back an equal persona.
    pub fn to_toml(&self) -> Result<String> {
        let folder = self.folder();
        let relative = |path: &PathBuf| relative_to(path, folder);
        let file = PresetFile {
            name: Some(self.name.clone()),
            display_name: Some(self.display_name.clone()),
            image: self.image.as_ref().map(relative),
            prompt: Some(self.prompt.clone()).filter(|p| !p.is_empty()),
            voice: Some(self.voice.clone()),
            background: self.background.as_ref().map(|background| match background {
                Background::Colour(colour) => colour.to_string(),
                Background::Picture(path) => relative(path),
            }),
            size: Some(self.size.to_string()),
            hotkey: self.hotkey.as_ref().map(Hotkey::to_string),
            webcam: self.webcam.as_ref().map(Webcam::to_string),
            pngtuber: self.pngtuber.as_ref().map(|tuber| PngTuberFile {
                idle: relative(&tuber.idle),
                talking: relative(&tuber.talking),
                blink: tuber.blink.as_ref().map(relative),
            }),
            look: self.look.clone(),
        };
        toml::to_string(&file).map_err(|e| Error::PersonaSyntax {
            path: self.origin.clone(),
            message: format!("cannot write as TOML: {e}"),
        })
    }
}

/// Validates one preset's fields against its origin.
struct Resolver {
    origin: PathBuf,
    folder: PathBuf,
}

impl Resolver {
    fn new(origin: &Path) -> Self {
        let folder = origin.parent().map(normalize).unwrap_or_default();
        Resolver {
            origin: origin.to_path_buf(),
            folder,
        }
    }

    fn error(&self, field: &str, message: impl Into<String>) -> Error {
        Error::PersonaField {
            path: self.origin.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn persona(&self, file: PresetFile) -> Result<Persona> {
        let name = match file.name {
            Some(name) => name,
            None => self.origin_stem(),
        };
        self.check_name(&name)?;
        let display_name = file.display_name.unwrap_or_else(|| name.clone());
        if display_name.trim().is_empty() {
            return Err(self.error("display_name", "must not be empty"));
        }
        let voice = file.voice.unwrap_or_else(|| DEFAULT_VOICE.to_string());
        self.check_voice(&voice)?;
        let size = match file.size {
            Some(text) => text
                .parse()
                .map_err(|message| self.error("size", message))?,
            None => OutputSize::default(),
        };
        let hotkey = match file.hotkey {
            Some(text) => Some(
                text.parse()
                    .map_err(|message| self.error("hotkey", message))?,
            ),
            None => None,
        };
        let background = match file.background {
            Some(text) if text.starts_with('#') => Some(Background::Colour(
                Rgb::parse(&text).map_err(|e| self.error("background", e.to_string()))?,
            )),
            Some(text) => Some(Background::Picture(self.picture("background", &text)?)),
            None => None,
        };
        let webcam = match file.webcam {
            Some(text) => Some(
                text.parse()
                    .map_err(|message| self.error("webcam", message))?,
            ),
            None => None,
        };
        if webcam.is_some() && file.pngtuber.is_some() {
            return Err(self.error(
                "webcam",
                "a webcam persona shows the camera: remove `[pngtuber]` or `webcam`",
            ));
        }
        let pngtuber = match file.pngtuber {
            Some(tuber) => Some(PngTuber {
                idle: self.picture("pngtuber.idle", &tuber.idle)?,
                talking: self.picture("pngtuber.talking", &tuber.talking)?,
                blink: match tuber.blink {
                    Some(blink) => Some(self.picture("pngtuber.blink", &blink)?),
                    None => None,
                },
            }),
            None => None,
        };
        Ok(Persona {
            name,
            display_name,
            image: match file.image {
                Some(image) => Some(self.picture("image", &image)?),
                None => None,
            },
            prompt: file.prompt.unwrap_or_default(),
            voice,
            look: file.look,
            pngtuber,
            background,
            size,
            hotkey,
            webcam,
            origin: self.origin.clone(),
        })
    }

    fn origin_stem(&self) -> String {
        self.origin
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn check_name(&self, name: &str) -> Result<()> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid {
            Ok(())
        } else {
            Err(self.error(
                "name",
                format!(
                    "`{name}` is not a usable name: use 1 to 64 ASCII letters, digits, `-` or `_`"
                ),
            ))
        }
    }

    fn check_voice(&self, voice: &str) -> Result<()> {
        // espeak-ng voice names: "en-us", "en-gb-x-rp", "mb-en1", "de+f3".
        let valid = !voice.is_empty()
            && voice
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_+/".contains(c));
        if valid {
            Ok(())
        } else {
            Err(self.error(
                "voice",
                format!("`{voice}` is not an espeak-ng voice name (like \"en-us\" or \"de\")"),
            ))
        }
    }

    /// Resolves a picture path against the preset's folder: it must stay inside the folder,
    /// have a picture extension, and exist.
    fn picture(&self, field: &str, text: &str) -> Result<PathBuf> {
        if text.trim().is_empty() {
            return Err(self.error(field, "picture path is empty"));
        }
        let resolved = normalize(&self.folder.join(text));
        if !resolved.starts_with(&self.folder) {
            return Err(self.error(
                field,
                format!(
                    "picture path `{text}` leaves the preset's folder {}; keep pictures next to \
                     the preset",
                    self.folder.display()
                ),
            ));
        }
        let extension = resolved
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if !PICTURE_EXTENSIONS.contains(&extension.as_str()) {
            return Err(self.error(
                field,
                format!("`{text}` is not a PNG or JPEG picture (.png, .jpg, .jpeg)"),
            ));
        }
        if !resolved.is_file() {
            return Err(self.error(
                field,
                format!("picture file not found: {}", resolved.display()),
            ));
        }
        // A symbolic link inside the folder must not lead out of it either.
        let real = |path: &Path| std::fs::canonicalize(path).map_err(|e| Error::io(path, e));
        let (real_picture, real_folder) = (real(&resolved)?, real(&self.folder)?);
        if !real_picture.starts_with(&real_folder) {
            return Err(self.error(
                field,
                format!(
                    "picture `{text}` is a link to {}, outside the preset's folder; copy the \
                     picture next to the preset",
                    real_picture.display()
                ),
            ));
        }
        Ok(resolved)
    }
}

/// `path` made absolute against the current folder (lexically; nothing needs to exist).
fn absolute(path: &Path) -> PathBuf {
    normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// Removes `.` and resolves `..` lexically (symbolic links are not followed).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // Above the start (or the root): keep the `..` so the path never lies inside
                // the folder.
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

/// `path` relative to `folder` with `/` separators, or the full path if it lies elsewhere.
fn relative_to(path: &Path, folder: &Path) -> String {
    match path.strip_prefix(folder) {
        Ok(relative) => relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        Err(_) => path.display().to_string(),
    }
}

/// All persona presets found in a list of folders, by name.
#[derive(Debug, Default)]
pub struct PersonaLibrary {
    personas: BTreeMap<String, Persona>,
    broken: Vec<Error>,
}

impl PersonaLibrary {
    /// Loads every `*.toml` in `dirs` (folders that do not exist are skipped). A later folder's
    /// preset replaces an earlier one of the same name, so user presets override shipped ones.
    /// Presets that fail to load are kept as errors ([`PersonaLibrary::errors`]) rather than
    /// hiding the others; only an unreadable folder fails the whole discovery.
    pub fn discover(dirs: &[PathBuf]) -> Result<Self> {
        let mut library = PersonaLibrary::default();
        for dir in dirs {
            if !dir.is_dir() {
                continue;
            }
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
                let path = entry.map_err(|e| Error::io(dir, e))?.path();
                if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                    files.push(path);
                }
            }
            files.sort();
            for path in files {
                match Persona::load(&path) {
                    Ok(persona) => library.insert(persona),
                    Err(error) => library.broken.push(error),
                }
            }
        }
        Ok(library)
    }

    /// Adds a persona, replacing any of the same name.
    pub fn insert(&mut self, persona: Persona) {
        self.personas.insert(persona.name.clone(), persona);
    }

    /// The persona called `name`, or an error listing the known names.
    pub fn get(&self, name: &str) -> Result<&Persona> {
        self.personas
            .get(name)
            .ok_or_else(|| Error::UnknownPersona {
                name: name.to_string(),
                known: self.names().map(str::to_string).collect(),
                broken: self.broken.iter().filter_map(error_path).collect(),
            })
    }

    /// The persona whose hotkey is `hotkey`, if any.
    pub fn by_hotkey(&self, hotkey: &Hotkey) -> Option<&Persona> {
        self.iter().find(|p| p.hotkey.as_ref() == Some(hotkey))
    }

    /// Hotkeys given to more than one persona (such a hotkey cannot tell which one is meant).
    pub fn hotkey_conflicts(&self) -> Vec<HotkeyConflict> {
        let mut by_hotkey: BTreeMap<String, HotkeyConflict> = BTreeMap::new();
        for persona in self.iter() {
            if let Some(hotkey) = &persona.hotkey {
                by_hotkey
                    .entry(hotkey.to_string())
                    .or_insert_with(|| HotkeyConflict {
                        hotkey: hotkey.clone(),
                        personas: Vec::new(),
                    })
                    .personas
                    .push((persona.name.clone(), persona.origin.clone()));
            }
        }
        by_hotkey
            .into_values()
            .filter(|conflict| conflict.personas.len() > 1)
            .collect()
    }

    /// Names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.personas.keys().map(String::as_str)
    }

    /// Personas sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Persona> {
        self.personas.values()
    }

    pub fn len(&self) -> usize {
        self.personas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.personas.is_empty()
    }

    /// The presets that were found but failed to load.
    pub fn errors(&self) -> &[Error] {
        &self.broken
    }
}

fn error_path(error: &Error) -> Option<PathBuf> {
    match error {
        Error::PersonaSyntax { path, .. }
        | Error::PersonaField { path, .. }
        | Error::Io { path, .. } => Some(path.clone()),
        _ => None,
    }
}
