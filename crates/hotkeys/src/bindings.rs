//! The hotkey table: preset hotkeys plus next/previous, with conflicts reported.

use livetalk_core::persona::Hotkey;
use livetalk_core::PersonaLibrary;

/// What a hotkey asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotkeyAction {
    /// Switch to this persona.
    Persona(String),
    /// The next persona in the library's (name) order, wrapping around.
    Next,
    Previous,
}

impl HotkeyAction {
    /// A stable id (the portal's shortcut id).
    pub fn id(&self) -> String {
        match self {
            HotkeyAction::Persona(name) => format!("persona-{name}"),
            HotkeyAction::Next => "next-persona".into(),
            HotkeyAction::Previous => "previous-persona".into(),
        }
    }

    /// What the desktop shows for the shortcut.
    pub fn description(&self, library: &PersonaLibrary) -> String {
        match self {
            HotkeyAction::Persona(name) => {
                let shown = library.get(name).map(|p| p.display_name.as_str()).unwrap_or(name);
                format!("livetalk: switch to {shown}")
            }
            HotkeyAction::Next => "livetalk: next persona".into(),
            HotkeyAction::Previous => "livetalk: previous persona".into(),
        }
    }

    /// The persona to switch to, given the current one and the library's names in order.
    pub fn target(&self, current: &str, names: &[&str]) -> Option<String> {
        let step = |forward: bool| {
            if names.is_empty() {
                return None;
            }
            let at = names.iter().position(|n| *n == current);
            let index = match (at, forward) {
                (Some(i), true) => (i + 1) % names.len(),
                (Some(i), false) => (i + names.len() - 1) % names.len(),
                (None, _) => 0,
            };
            Some(names[index].to_string())
        };
        match self {
            HotkeyAction::Persona(name) => Some(name.clone()),
            HotkeyAction::Next => step(true),
            HotkeyAction::Previous => step(false),
        }
    }
}

/// One bound key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub hotkey: Hotkey,
    pub action: HotkeyAction,
}

/// The keys to grab; built with [`Bindings::new`], which also returns the problems found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    pub bindings: Vec<Binding>,
}

impl Bindings {
    /// Every preset's hotkey, plus `next` and `previous` when given. A key claimed twice (two
    /// presets, or a preset and next/previous) is left unbound and named in a warning: which of
    /// them the user means cannot be guessed.
    pub fn new(library: &PersonaLibrary, next: Option<Hotkey>, previous: Option<Hotkey>) -> (Self, Vec<String>) {
        let mut claims: Vec<(Hotkey, HotkeyAction, String)> = Vec::new();
        for persona in library.iter() {
            if let Some(hotkey) = &persona.hotkey {
                let who = format!("persona {} ({})", persona.name, persona.origin.display());
                claims.push((hotkey.clone(), HotkeyAction::Persona(persona.name.clone()), who));
            }
        }
        for (hotkey, action, who) in [(next, HotkeyAction::Next, "--hotkey-next"), (previous, HotkeyAction::Previous, "--hotkey-previous")] {
            if let Some(hotkey) = hotkey {
                claims.push((hotkey, action, who.to_string()));
            }
        }
        let mut bindings = Vec::new();
        let mut warnings = Vec::new();
        for (hotkey, action, _) in &claims {
            let claimants: Vec<&str> = claims.iter().filter(|(h, _, _)| h == hotkey).map(|(_, _, who)| who.as_str()).collect();
            if claimants.len() == 1 {
                bindings.push(Binding { hotkey: hotkey.clone(), action: action.clone() });
            } else {
                let warning = format!(
                    "hotkey {hotkey} is given to {}: it is not bound; give each its own key",
                    claimants.join(" and ")
                );
                if !warnings.contains(&warning) {
                    warnings.push(warning);
                }
            }
        }
        (Bindings { bindings }, warnings)
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// The action of `hotkey`, if bound.
    pub fn action(&self, hotkey: &Hotkey) -> Option<&HotkeyAction> {
        self.bindings.iter().find(|b| &b.hotkey == hotkey).map(|b| &b.action)
    }
}
