//! Global shortcuts on Wayland through the xdg-desktop-portal `GlobalShortcuts` interface: the
//! desktop owns the keys, so livetalk proposes each shortcut (id, description, preferred
//! trigger) and the user confirms or changes it in the desktop's dialog; activations then come
//! back as D-Bus signals.
//!
//! The request is built here in every build ([`shortcuts`]); talking to the portal needs the
//! `portal` feature (ashpd over zbus, on a small tokio runtime of its own thread).

use livetalk_core::persona::Hotkey;
use livetalk_core::PersonaLibrary;

use crate::bindings::Bindings;

/// One shortcut as the portal's `BindShortcuts` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalShortcut {
    pub id: String,
    pub description: String,
    /// In the XDG shortcuts format: `CTRL+ALT+1`, `LOGO+F12`, `SHIFT+Page_Up`.
    pub preferred_trigger: String,
}

/// The shortcuts to ask the portal for.
pub fn shortcuts(bindings: &Bindings, library: &PersonaLibrary) -> Vec<PortalShortcut> {
    bindings
        .bindings
        .iter()
        .map(|binding| PortalShortcut {
            id: binding.action.id(),
            description: binding.action.description(library),
            preferred_trigger: trigger(&binding.hotkey),
        })
        .collect()
}

/// A hotkey in the XDG shortcuts format: modifiers `CTRL`, `ALT`, `SHIFT`, `LOGO`, then the
/// key's xkb keysym name.
pub fn trigger(hotkey: &Hotkey) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for (held, name) in [(hotkey.ctrl, "CTRL"), (hotkey.alt, "ALT"), (hotkey.shift, "SHIFT"), (hotkey.super_key, "LOGO")] {
        if held {
            parts.push(name);
        }
    }
    let key = match hotkey.key.as_str() {
        "Space" => "space",
        "Enter" => "Return",
        "Escape" => "Escape",
        "Backspace" => "BackSpace",
        "PageUp" => "Page_Up",
        "PageDown" => "Page_Down",
        "Minus" => "minus",
        "Equal" => "equal",
        "Plus" => "plus",
        "Comma" => "comma",
        "Period" => "period",
        "Slash" => "slash",
        "Backslash" => "backslash",
        "Semicolon" => "semicolon",
        "Apostrophe" => "apostrophe",
        "BracketLeft" => "bracketleft",
        "BracketRight" => "bracketright",
        "Grave" => "grave",
        // Letters are lower-case keysyms; digits, F-keys and the rest are spelled alike.
        key if key.len() == 1 => return join(parts, &key.to_ascii_lowercase()),
        key => key,
    };
    join(parts, key)
}

fn join(parts: Vec<&str>, key: &str) -> String {
    let mut text: String = parts.iter().map(|part| format!("{part}+")).collect();
    text.push_str(key);
    text
}

#[cfg(feature = "portal")]
mod session;
#[cfg(feature = "portal")]
pub use session::PortalHotkeys;

/// Without the `portal` feature: the error that says how to get it.
#[cfg(not(feature = "portal"))]
pub fn unavailable() -> crate::HotkeyError {
    crate::HotkeyError::Portal(
        "this livetalk was built without the GlobalShortcuts portal: rebuild with `cargo build --release --features portal`, or use X11 hotkeys".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::Bindings;

    #[test]
    fn triggers_use_the_xdg_shortcut_names() {
        let cases = [
            ("Ctrl+Alt+1", "CTRL+ALT+1"),
            ("Super+F12", "LOGO+F12"),
            ("Ctrl+Shift+PageUp", "CTRL+SHIFT+Page_Up"),
            ("Alt+Q", "ALT+q"),
            ("Ctrl+Space", "CTRL+space"),
        ];
        for (hotkey, expected) in cases {
            assert_eq!(trigger(&hotkey.parse().unwrap()), expected);
        }
    }

    #[test]
    fn the_request_has_one_shortcut_per_binding() {
        let dir = std::env::temp_dir().join(format!("livetalk-portal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("anna.toml"), "display_name = \"Anna\"\nhotkey = \"Ctrl+Alt+1\"").unwrap();
        std::fs::write(dir.join("kai.toml"), "hotkey = \"Ctrl+Alt+2\"").unwrap();
        let library = PersonaLibrary::discover(std::slice::from_ref(&dir)).unwrap();
        let (bindings, warnings) = Bindings::new(&library, Some("Ctrl+Alt+PageDown".parse().unwrap()), None);
        assert!(warnings.is_empty());
        let request = shortcuts(&bindings, &library);
        let ids: Vec<(&str, &str, &str)> = request
            .iter()
            .map(|s| (s.id.as_str(), s.description.as_str(), s.preferred_trigger.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("persona-anna", "livetalk: switch to Anna", "CTRL+ALT+1"),
                ("persona-kai", "livetalk: switch to kai", "CTRL+ALT+2"),
                ("next-persona", "livetalk: next persona", "CTRL+ALT+Page_Down"),
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
