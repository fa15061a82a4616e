//! How the embedded CPU avatar looks: colours, hair style, face proportions, accessories.
//!
//! This is the `[look]` table of a persona preset. Every field has a default, so an empty table
//! (or a table with only the colours a user cares about) is a valid look.
//!
//! ```toml
//! [look]
//! skin = "#f1c7a5"
//! hair = "#3b2418"
//! hair_style = "long"
//! glasses = true
//! [look.face]
//! width = 0.4
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Errors from parsing or validating a look.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LookError {
    #[error("invalid colour {value:?}: expected \"#rrggbb\" (six hex digits after '#')")]
    Colour { value: String },
    #[error("invalid face parameter: {value} is outside 0.0..=1.0")]
    Slider { value: f32 },
    #[error("invalid avatar look: {0}")]
    Toml(String),
}

/// An sRGB colour written as `"#rrggbb"` in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rgb {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Rgb {
    pub const fn new(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// Parses `"#rrggbb"` (hex digits in either case).
    pub fn parse(text: &str) -> Result<Self, LookError> {
        let bad = || LookError::Colour { value: text.to_string() };
        let hex = text.strip_prefix('#').ok_or_else(bad)?;
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
        Ok(Self::new(channel(0)?, channel(2)?, channel(4)?))
    }
}

impl FromStr for Rgb {
    type Err = LookError;
    fn from_str(text: &str) -> Result<Self, LookError> {
        Self::parse(text)
    }
}

impl TryFrom<String> for Rgb {
    type Error = LookError;
    fn try_from(text: String) -> Result<Self, LookError> {
        Self::parse(&text)
    }
}

impl From<Rgb> for String {
    fn from(colour: Rgb) -> String {
        colour.to_string()
    }
}

impl fmt::Display for Rgb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.r, self.g, self.b)
    }
}

/// A face proportion in 0.0..=1.0; 0.5 is the drawing's natural proportion.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f32", into = "f32")]
pub struct Slider(f32);

impl Slider {
    pub const MID: Slider = Slider(0.5);

    pub fn new(value: f32) -> Result<Self, LookError> {
        if (0.0..=1.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(LookError::Slider { value })
        }
    }

    pub fn get(self) -> f32 {
        self.0
    }

    /// Maps 0..1 onto `low..high` (0.5 lands halfway).
    pub fn lerp(self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.0
    }
}

impl TryFrom<f32> for Slider {
    type Error = LookError;
    fn try_from(value: f32) -> Result<Self, LookError> {
        Self::new(value)
    }
}

impl From<Slider> for f32 {
    fn from(slider: Slider) -> f32 {
        slider.0
    }
}

impl Default for Slider {
    fn default() -> Self {
        Self::MID
    }
}

/// The hair cut drawn around the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HairStyle {
    /// Short, swept to one side; ears visible.
    #[default]
    Short,
    /// Chin-length bob with a fringe.
    Bob,
    /// Long hair falling over the shoulders.
    Long,
    /// Hair pulled up into a bun on top.
    Bun,
}

/// Proportions of the face; every value is a [`Slider`] where 0.5 is the default drawing.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaceShape {
    /// Narrow (0) to wide (1) head.
    pub width: Slider,
    /// Pointed (0) to round (1) jaw.
    pub jaw: Slider,
    /// Small (0) to large (1) eyes.
    pub eye_size: Slider,
    /// Close-set (0) to wide-set (1) eyes.
    pub eye_spacing: Slider,
    /// Narrow (0) to wide (1) mouth.
    pub mouth_width: Slider,
    /// Thin (0) to full (1) lips.
    pub lip_fullness: Slider,
    /// Thin (0) to bold (1) eyebrows.
    pub brow_weight: Slider,
}

/// The complete look of the CPU avatar (the `[look]` table of a persona).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AvatarLook {
    pub skin: Rgb,
    pub hair: Rgb,
    /// Iris colour.
    pub eyes: Rgb,
    pub lips: Rgb,
    pub shirt: Rgb,
    /// Colour behind the avatar (the persona's own `background`, when set, takes precedence).
    pub background: Rgb,
    pub hair_style: HairStyle,
    pub face: FaceShape,
    pub glasses: bool,
    pub earrings: bool,
    /// Rosy cheeks.
    pub blush: bool,
}

impl Default for AvatarLook {
    fn default() -> Self {
        Self {
            skin: Rgb::new(0xf2, 0xc4, 0xa0),
            hair: Rgb::new(0x4a, 0x2c, 0x1d),
            eyes: Rgb::new(0x4f, 0x7a, 0x3a),
            lips: Rgb::new(0xc8, 0x5a, 0x5a),
            shirt: Rgb::new(0x3a, 0x6e, 0xa5),
            background: Rgb::new(0xdc, 0xe8, 0xf2),
            hair_style: HairStyle::default(),
            face: FaceShape::default(),
            glasses: false,
            earrings: false,
            blush: true,
        }
    }
}

impl AvatarLook {
    /// Parses a look from a TOML table's text (the body of `[look]`).
    pub fn from_toml_str(text: &str) -> Result<Self, LookError> {
        toml::from_str(text).map_err(|e| LookError::Toml(e.message().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_gives_defaults() {
        assert_eq!(AvatarLook::from_toml_str("").unwrap(), AvatarLook::default());
    }

    #[test]
    fn parses_colours_styles_and_face() {
        let look = AvatarLook::from_toml_str(
            "skin = \"#AABBCC\"\nhair_style = \"bun\"\nglasses = true\n[face]\nwidth = 0.25\n",
        )
        .unwrap();
        assert_eq!(look.skin, Rgb::new(0xaa, 0xbb, 0xcc));
        assert_eq!(look.hair_style, HairStyle::Bun);
        assert!(look.glasses);
        assert_eq!(look.face.width.get(), 0.25);
        assert_eq!(look.face.jaw, Slider::MID);
    }

    #[test]
    fn colour_round_trips_through_text() {
        let colour = Rgb::parse("#0a1B2c").unwrap();
        assert_eq!(colour.to_string(), "#0a1b2c");
    }

    #[test]
    fn bad_colour_names_the_value() {
        for bad in ["#12345", "123456", "#12345g", "#1234567", "#ééé"] {
            assert_eq!(Rgb::parse(bad), Err(LookError::Colour { value: bad.to_string() }));
        }
        let err = AvatarLook::from_toml_str("lips = \"red\"").unwrap_err().to_string();
        assert!(err.contains("\"red\"") && err.contains("#rrggbb"), "{err}");
    }

    #[test]
    fn unknown_fields_and_out_of_range_sliders_are_rejected() {
        let err = AvatarLook::from_toml_str("hat = true").unwrap_err().to_string();
        assert!(err.contains("hat"), "{err}");
        let err = AvatarLook::from_toml_str("[face]\njaw = 1.5").unwrap_err().to_string();
        assert!(err.contains("1.5"), "{err}");
        let err = AvatarLook::from_toml_str("hair_style = \"mohawk\"").unwrap_err().to_string();
        assert!(err.contains("mohawk"), "{err}");
    }
}
