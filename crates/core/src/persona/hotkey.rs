//! Hotkeys like `Ctrl+Alt+1`: modifiers then one key, `+`-separated, case-insensitive.

use std::fmt;
use std::str::FromStr;

/// A global hotkey that switches to a persona.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Hotkey {
    pub ctrl: bool,
    pub alt: bool,
    pub shift: bool,
    /// The Super/Windows/Command key.
    pub super_key: bool,
    /// Canonical key name: `A`..`Z`, `0`..`9`, `F1`..`F24`, or one of [`NAMED_KEYS`].
    pub key: String,
}

/// Keys other than letters, digits and function keys, in their canonical spelling.
pub const NAMED_KEYS: [&str; 28] = [
    "Space",
    "Enter",
    "Tab",
    "Escape",
    "Backspace",
    "Insert",
    "Delete",
    "Home",
    "End",
    "PageUp",
    "PageDown",
    "Up",
    "Down",
    "Left",
    "Right",
    "Minus",
    "Equal",
    "Plus",
    "Comma",
    "Period",
    "Slash",
    "Backslash",
    "Semicolon",
    "Apostrophe",
    "BracketLeft",
    "BracketRight",
    "Grave",
    "Pause",
];

impl FromStr for Hotkey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let syntax = |why: &str| format!("`{text}` is not a hotkey like \"Ctrl+Alt+1\": {why}");
        let parts: Vec<&str> = text.split('+').map(str::trim).collect();
        if parts.iter().any(|part| part.is_empty()) {
            return Err(syntax("empty part between `+` signs"));
        }
        let (key, modifiers) = parts.split_last().ok_or_else(|| syntax("no key"))?;
        let mut hotkey = Hotkey::default();
        for modifier in modifiers {
            let flag = match modifier.to_ascii_lowercase().as_str() {
                "ctrl" | "control" => &mut hotkey.ctrl,
                "alt" => &mut hotkey.alt,
                "shift" => &mut hotkey.shift,
                "super" | "win" | "meta" | "cmd" => &mut hotkey.super_key,
                _ => {
                    return Err(syntax(&format!(
                        "`{modifier}` is not a modifier (Ctrl, Alt, Shift, Super)"
                    )))
                }
            };
            if *flag {
                return Err(syntax(&format!("`{modifier}` appears twice")));
            }
            *flag = true;
        }
        hotkey.key = canonical_key(key).ok_or_else(|| {
            syntax(&format!(
                "`{key}` is not a key (a letter, a digit, F1..F24, or one of {})",
                NAMED_KEYS.join(", ")
            ))
        })?;
        Ok(hotkey)
    }
}

fn canonical_key(key: &str) -> Option<String> {
    let mut chars = key.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return c
            .is_ascii_alphanumeric()
            .then(|| c.to_ascii_uppercase().to_string());
    }
    if let Some(number) = key.strip_prefix(['f', 'F']) {
        if let Ok(n @ 1..=24) = number.parse::<u8>() {
            if !number.starts_with('0') {
                return Some(format!("F{n}"));
            }
        }
    }
    let lower = key.to_ascii_lowercase();
    let alias = match lower.as_str() {
        "esc" => "escape",
        "return" => "enter",
        "del" => "delete",
        "ins" => "insert",
        other => other,
    };
    NAMED_KEYS
        .iter()
        .find(|name| name.eq_ignore_ascii_case(alias))
        .map(|name| name.to_string())
}

impl fmt::Display for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let modifiers = [
            (self.ctrl, "Ctrl+"),
            (self.alt, "Alt+"),
            (self.shift, "Shift+"),
            (self.super_key, "Super+"),
        ];
        for (held, name) in modifiers {
            if held {
                f.write_str(name)?;
            }
        }
        f.write_str(&self.key)
    }
}

/// One hotkey given to several personas: which persona it means is ambiguous, so it is not bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotkeyConflict {
    pub hotkey: Hotkey,
    /// Name and preset file of each persona that has it.
    pub personas: Vec<(String, std::path::PathBuf)>,
}

impl fmt::Display for HotkeyConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<String> = self
            .personas
            .iter()
            .map(|(name, origin)| format!("{name} ({})", origin.display()))
            .collect();
        write!(
            f,
            "hotkey {} is given to {} personas: {}; it is not bound until only one has it",
            self.hotkey,
            users.len(),
            users.join(", ")
        )
    }
}
