//! The source's hotkeys: one per persona ("livetalk.persona.NAME") plus next and previous, all
//! registered with `obs_hotkey_register_source`, so OBS saves their bindings with the scene
//! collection and loads them back whenever a hotkey of that name is registered. Personas the
//! source has seen are kept in its settings (`known_personas`), so their hotkeys (and saved
//! bindings) exist at start-up even before an engine answers; new ones are added as the engine
//! reports them.

use std::collections::HashMap;
use std::os::raw::c_void;
use std::sync::Arc;

use obs_wrapper::obs_sys::{self, obs_hotkey_id, obs_hotkey_t};
use parking_lot::Mutex;

use super::ffi::{cstring, set_string, SourcePtr};
use super::source::key;
use crate::remote::{step_persona, Command, Commands, RemoteView};

pub const NEXT: &str = "livetalk.next";
pub const PREVIOUS: &str = "livetalk.previous";
const PERSONA_PREFIX: &str = "livetalk.persona.";

/// The hotkey name of a persona.
pub fn persona_hotkey(name: &str) -> String {
    format!("{PERSONA_PREFIX}{name}")
}

/// What a hotkey does.
#[derive(Debug, Clone)]
enum Action {
    Persona(String),
    Step(i32),
}

/// The hotkeys of one source. Lives in an `Arc` whose address OBS holds as the callbacks' data.
pub struct Hotkeys {
    source: SourcePtr,
    commands: Commands,
    /// The engine's persona list, to resolve next and previous at the press.
    view: Arc<Mutex<RemoteView>>,
    /// The persona last chosen for this source (shared with its settings' updates).
    chosen: Arc<Mutex<Option<String>>>,
    registered: Mutex<HashMap<obs_hotkey_id, (String, Action)>>,
}

impl Hotkeys {
    pub fn new(source: SourcePtr, commands: Commands, view: Arc<Mutex<RemoteView>>, chosen: Arc<Mutex<Option<String>>>) -> Arc<Hotkeys> {
        let hotkeys = Arc::new(Hotkeys { source, commands, view, chosen, registered: Mutex::new(HashMap::new()) });
        hotkeys.register(NEXT, "livetalk: next persona", Action::Step(1));
        hotkeys.register(PREVIOUS, "livetalk: previous persona", Action::Step(-1));
        hotkeys
    }

    /// Registers the hotkey of each persona not registered yet (thread-safe: OBS locks its
    /// hotkey table).
    pub fn add_personas<'a>(&self, personas: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (name, display) in personas {
            let hotkey = persona_hotkey(name);
            if !self.registered.lock().values().any(|(n, _)| *n == hotkey) {
                self.register(&hotkey, &format!("livetalk: switch to {display}"), Action::Persona(name.to_string()));
            }
        }
    }

    /// Names of the personas that have a hotkey.
    pub fn personas(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .registered
            .lock()
            .values()
            .filter_map(|(_, action)| match action {
                Action::Persona(name) => Some(name.clone()),
                Action::Step(_) => None,
            })
            .collect();
        names.sort();
        names
    }

    fn register(&self, name: &str, description: &str, action: Action) {
        let (name_c, description_c) = (cstring(name), cstring(description));
        // SAFETY: the source is alive (the owner unregisters before it goes); `self` is in an Arc that
        // outlives the registration; OBS copies the strings.
        let id = unsafe {
            obs_sys::obs_hotkey_register_source(self.source.0, name_c.as_ptr(), description_c.as_ptr(), Some(pressed), self as *const Hotkeys as *mut c_void)
        };
        if id == obs_hotkey_id::MAX {
            // OBS_INVALID_HOTKEY_ID (a macro bindgen does not carry)
            log::warn!("OBS refused the hotkey {name}");
            return;
        }
        self.registered.lock().insert(id, (name.to_string(), action));
    }

    /// Unregisters every hotkey (before the Arc is dropped).
    pub fn unregister_all(&self) {
        for (id, _) in self.registered.lock().drain() {
            // SAFETY: an id OBS gave us.
            unsafe { obs_sys::obs_hotkey_unregister(id) };
        }
    }
}

unsafe extern "C" fn pressed(data: *mut c_void, id: obs_hotkey_id, _hotkey: *mut obs_hotkey_t, pressed: bool) {
    if !pressed || data.is_null() {
        return;
    }
    // SAFETY: `data` is the Hotkeys registered above, alive until unregister_all.
    let hotkeys = &*(data as *const Hotkeys);
    let action = hotkeys.registered.lock().get(&id).map(|(_, a)| a.clone());
    let target = match action {
        Some(Action::Persona(name)) => Some(name),
        Some(Action::Step(step)) => {
            let mut view = hotkeys.view.lock();
            let target = step_persona(&view, step);
            // A quick second press steps from here, not from where the engine still is.
            view.current = target.clone().or(view.current.take());
            target
        }
        None => None,
    };
    let Some(target) = target else {
        log::warn!("no persona list from the engine yet: hotkey ignored");
        return;
    };
    // The settings follow (so the properties show it and a later update does not switch back):
    // hotkeys run on OBS's UI thread, like the properties.
    *hotkeys.chosen.lock() = Some(target.clone());
    let settings = obs_sys::obs_source_get_settings(hotkeys.source.0);
    if !settings.is_null() {
        set_string(settings, key::PERSONA, &target);
        obs_sys::obs_data_release(settings);
    }
    hotkeys.commands.send(Command::Switch(target));
}
