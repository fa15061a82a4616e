//! Global hotkeys on X11: passive grabs of each key on the root window (with and without Caps
//! Lock and Num Lock, which would otherwise make the grab miss), read on a thread that sends the
//! bound [`HotkeyAction`]s down a channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use livetalk_core::persona::Hotkey;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ClientMessageEvent, ConnectionExt, CreateWindowAux, EventMask, GrabMode, ModMask, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

use crate::bindings::{Binding, Bindings, HotkeyAction};
use crate::HotkeyError;

/// A key held down repeats its press; one switch per press is enough.
const REPEAT_GUARD: Duration = Duration::from_millis(250);

/// The grabbed hotkeys; dropping it ungrabs them (the connection closes).
pub struct X11Hotkeys {
    connection: Arc<RustConnection>,
    waker: Window,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    grabbed: Vec<Binding>,
}

/// A pressed hotkey and when it was pressed.
pub type Pressed = (HotkeyAction, Instant);

impl X11Hotkeys {
    /// Connects to `display` (default: `$DISPLAY`) and grabs every binding. Keys another program
    /// holds, or that the keyboard lacks, are returned as warnings and skipped.
    pub fn start(display: Option<&str>, bindings: &Bindings, pressed: Sender<Pressed>) -> Result<(Self, Vec<String>), HotkeyError> {
        let (connection, screen) = RustConnection::connect(display).map_err(|e| HotkeyError::Connect {
            display: display.or(std::env::var("DISPLAY").ok().as_deref()).map(|d| format!(" {d}")).unwrap_or_default(),
            reason: e.to_string(),
        })?;
        let x11 = |e: &dyn std::fmt::Display| HotkeyError::X11(e.to_string());
        let root = connection.setup().roots[screen].root;
        let keymap = Keymap::read(&connection).map_err(|e| x11(&e))?;
        let mut warnings = Vec::new();
        let mut grabbed = Vec::new();
        let mut keys = Vec::new();
        for binding in &bindings.bindings {
            let Some(keycode) = keymap.keycode(&binding.hotkey) else {
                warnings.push(format!("hotkey {}: the keyboard has no such key; not bound", binding.hotkey));
                continue;
            };
            let modifiers = modifier_mask(&binding.hotkey);
            let mut taken = false;
            for extra in keymap.lock_variants() {
                let grab = connection
                    .grab_key(false, root, modifiers | extra, keycode, GrabMode::ASYNC, GrabMode::ASYNC)
                    .map_err(|e| x11(&e))?;
                if grab.check().is_err() {
                    taken = true;
                }
            }
            if taken {
                warnings.push(format!(
                    "hotkey {} ({}) is already taken by another program; not bound",
                    binding.hotkey,
                    describe(&binding.action)
                ));
                for extra in keymap.lock_variants() {
                    let _ = connection.ungrab_key(keycode, root, modifiers | extra);
                }
                continue;
            }
            keys.push((keycode, u16::from(modifiers), binding.action.clone()));
            grabbed.push(binding.clone());
        }
        // A window of our own to send the thread a wake-up when stopping.
        let waker = connection.generate_id().map_err(|e| x11(&e))?;
        connection
            .create_window(0, waker, root, 0, 0, 1, 1, 0, WindowClass::INPUT_ONLY, 0, &CreateWindowAux::new())
            .map_err(|e| x11(&e))?;
        connection.flush().map_err(|e| x11(&e))?;
        let connection = Arc::new(connection);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connection, stop) = (connection.clone(), stop.clone());
            let significant = u16::from(ModMask::SHIFT | ModMask::CONTROL | ModMask::M1 | ModMask::M4);
            std::thread::Builder::new()
                .name("livetalk-hotkeys".into())
                .spawn(move || {
                    let mut last: Option<(u8, Instant)> = None;
                    while !stop.load(Ordering::SeqCst) {
                        let event = match connection.wait_for_event() {
                            Ok(event) => event,
                            Err(error) => {
                                tracing::warn!(%error, "the X connection of the hotkeys closed");
                                break;
                            }
                        };
                        let Event::KeyPress(press) = event else { continue };
                        let now = Instant::now();
                        if last.is_some_and(|(code, at)| code == press.detail && now - at < REPEAT_GUARD) {
                            continue;
                        }
                        last = Some((press.detail, now));
                        let state = u16::from(press.state) & significant;
                        if let Some((_, _, action)) = keys.iter().find(|(code, mods, _)| *code == press.detail && *mods == state) {
                            if pressed.send((action.clone(), now)).is_err() {
                                break;
                            }
                        }
                    }
                })
                .map_err(|e| x11(&e))?
        };
        Ok((X11Hotkeys { connection, waker, stop, thread: Some(thread), grabbed }, warnings))
    }

    /// The bindings that were grabbed.
    pub fn grabbed(&self) -> &[Binding] {
        &self.grabbed
    }
}

impl Drop for X11Hotkeys {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let wake = ClientMessageEvent::new(32, self.waker, x11rb::NONE, [0u32; 5]);
        let sent = self.connection.send_event(false, self.waker, EventMask::NO_EVENT, wake).is_ok()
            && self.connection.flush().is_ok();
        if let Some(thread) = self.thread.take() {
            if sent {
                let _ = thread.join();
            }
        }
    }
}

fn describe(action: &HotkeyAction) -> String {
    match action {
        HotkeyAction::Persona(name) => format!("persona {name}"),
        HotkeyAction::Next => "next persona".into(),
        HotkeyAction::Previous => "previous persona".into(),
    }
}

fn modifier_mask(hotkey: &Hotkey) -> ModMask {
    let mut mask = ModMask::from(0u16);
    for (held, bit) in [
        (hotkey.ctrl, ModMask::CONTROL),
        (hotkey.shift, ModMask::SHIFT),
        (hotkey.alt, ModMask::M1),
        (hotkey.super_key, ModMask::M4),
    ] {
        if held {
            mask |= bit;
        }
    }
    mask
}

/// The keyboard's keysym → keycode table and which modifier Num Lock is.
struct Keymap {
    min_keycode: u8,
    per_keycode: usize,
    keysyms: Vec<u32>,
    num_lock: ModMask,
}

impl Keymap {
    fn read(connection: &RustConnection) -> Result<Self, Box<dyn std::error::Error>> {
        let setup = connection.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let mapping = connection.get_keyboard_mapping(min, max - min + 1)?.reply()?;
        let mut keymap = Keymap {
            min_keycode: min,
            per_keycode: mapping.keysyms_per_keycode.max(1) as usize,
            keysyms: mapping.keysyms,
            num_lock: ModMask::from(0u16),
        };
        // Num Lock is whichever modifier holds the Num_Lock key (Mod2 on most setups).
        let modifiers = connection.get_modifier_mapping()?.reply()?;
        let per_modifier = modifiers.keycodes_per_modifier() as usize;
        if let Some(num_lock_code) = keymap.keycode_of(&[0xff7f]) {
            if let Some(index) = modifiers.keycodes.iter().position(|&c| c == num_lock_code) {
                keymap.num_lock = ModMask::from(1u16 << (index / per_modifier.max(1)));
            }
        }
        Ok(keymap)
    }

    fn keycode_of(&self, keysyms: &[u32]) -> Option<u8> {
        self.keysyms
            .chunks(self.per_keycode)
            .position(|row| row.iter().any(|k| keysyms.contains(k)))
            .map(|i| self.min_keycode + i as u8)
    }

    fn keycode(&self, hotkey: &Hotkey) -> Option<u8> {
        self.keycode_of(&keysyms(&hotkey.key))
    }

    /// The lock modifiers a grab must also cover: none, Caps Lock, Num Lock, both.
    fn lock_variants(&self) -> [ModMask; 4] {
        let (caps, num) = (ModMask::LOCK, self.num_lock);
        [ModMask::from(0u16), caps, num, caps | num]
    }
}

/// The X keysyms of a canonical key name (see `livetalk_core::persona::NAMED_KEYS`).
pub fn keysyms(key: &str) -> Vec<u32> {
    let mut chars = key.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        // Letters: either case (the keymap lists both); digits are their ASCII code.
        return vec![c.to_ascii_lowercase() as u32, c.to_ascii_uppercase() as u32];
    }
    if let Some(n) = key.strip_prefix('F').and_then(|n| n.parse::<u32>().ok()) {
        return vec![0xffbe + n - 1];
    }
    let keysym = match key {
        "Space" => 0x20,
        "Enter" => 0xff0d,
        "Tab" => 0xff09,
        "Escape" => 0xff1b,
        "Backspace" => 0xff08,
        "Insert" => 0xff63,
        "Delete" => 0xffff,
        "Home" => 0xff50,
        "End" => 0xff57,
        "PageUp" => 0xff55,
        "PageDown" => 0xff56,
        "Up" => 0xff52,
        "Down" => 0xff54,
        "Left" => 0xff51,
        "Right" => 0xff53,
        "Minus" => 0x2d,
        "Equal" => 0x3d,
        "Plus" => 0x2b,
        "Comma" => 0x2c,
        "Period" => 0x2e,
        "Slash" => 0x2f,
        "Backslash" => 0x5c,
        "Semicolon" => 0x3b,
        "Apostrophe" => 0x27,
        "BracketLeft" => 0x5b,
        "BracketRight" => 0x5d,
        "Grave" => 0x60,
        "Pause" => 0xff13,
        _ => return Vec::new(),
    };
    vec![keysym]
}

#[cfg(test)]
mod tests {
    use super::*;
    use livetalk_core::persona::NAMED_KEYS;

    #[test]
    fn every_key_name_has_a_keysym() {
        for name in NAMED_KEYS.iter().copied().chain(["A", "z", "0", "9", "F1", "F24"]) {
            assert!(!keysyms(name).is_empty(), "{name}");
        }
        assert_eq!(keysyms("F12"), [0xffc9]);
        assert_eq!(keysyms("Q"), [0x71, 0x51]);
    }

    #[test]
    fn modifiers_map_to_core_protocol_bits() {
        let hotkey: Hotkey = "Ctrl+Alt+Super+Shift+1".parse().unwrap();
        assert_eq!(u16::from(modifier_mask(&hotkey)), u16::from(ModMask::CONTROL | ModMask::M1 | ModMask::M4 | ModMask::SHIFT));
    }

    #[test]
    fn without_an_x_server_the_error_names_the_display() {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let err = X11Hotkeys::start(Some(":987"), &Bindings::default(), tx).err().unwrap().to_string();
        assert!(err.starts_with("cannot reach the X server :987"), "{err}");
    }
}
