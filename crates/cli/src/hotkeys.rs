//! Global hotkeys for `livetalk run`: each preset's `hotkey` switches to it, `--hotkey-next` and
//! `--hotkey-previous` cycle through the personas. X11 key grabs by default; the Wayland
//! GlobalShortcuts portal in a build with `--features portal`. Hotkey trouble never stops the
//! avatar: it is reported and the rest runs on.

use std::time::Instant;

use anyhow::Result;
use crossbeam_channel::Receiver;
use livetalk_core::persona::Hotkey;
use livetalk_core::PersonaLibrary;
use livetalk_engine::service::EngineControl;
use livetalk_hotkeys::x11::Pressed;
use livetalk_hotkeys::{Bindings, X11Hotkeys};

#[derive(clap::Args, Clone, Debug)]
pub struct HotkeyArgs {
    /// Global hotkeys: x11 (key grabs), portal (Wayland's GlobalShortcuts portal), auto (the
    /// portal on Wayland, else X11), or off.
    #[arg(long, default_value = "auto", value_parser = ["auto", "x11", "portal", "off"])]
    pub hotkeys: String,
    /// Hotkey for the next persona (in name order).
    #[arg(long, default_value = "Ctrl+Alt+PageDown", value_parser = parse_hotkey)]
    pub hotkey_next: Hotkey,
    /// Hotkey for the previous persona.
    #[arg(long, default_value = "Ctrl+Alt+PageUp", value_parser = parse_hotkey)]
    pub hotkey_previous: Hotkey,
}

fn parse_hotkey(text: &str) -> Result<Hotkey, String> {
    text.parse()
}

/// Whatever listens for the keys; held only to keep the grabs or the portal session alive.
#[allow(dead_code)]
pub enum Listener {
    X11(X11Hotkeys),
    #[cfg(feature = "portal")]
    Portal(livetalk_hotkeys::portal::PortalHotkeys),
}

/// Binds the hotkeys and starts the thread that switches personas on them.
pub fn start(args: &HotkeyArgs, library: &PersonaLibrary, control: EngineControl) -> Result<Option<Listener>> {
    if args.hotkeys == "off" {
        return Ok(None);
    }
    let (bindings, warnings) = Bindings::new(library, Some(args.hotkey_next.clone()), Some(args.hotkey_previous.clone()));
    for warning in warnings {
        eprintln!("livetalk: warning: {warning}");
    }
    let wayland = std::env::var_os("WAYLAND_DISPLAY").is_some();
    let x11 = std::env::var_os("DISPLAY").is_some();
    let use_portal = match args.hotkeys.as_str() {
        "portal" => true,
        "x11" => false,
        _ if !wayland && !x11 => {
            tracing::info!("no X11 or Wayland display: no global hotkeys");
            return Ok(None);
        }
        _ => wayland,
    };
    let (pressed_tx, pressed_rx) = crossbeam_channel::unbounded();
    let listener = if use_portal {
        match start_portal(&bindings, library, pressed_tx.clone()) {
            Ok(listener) => listener,
            Err(error) if args.hotkeys == "auto" && x11 => {
                eprintln!("livetalk: warning: {error}; using X11 key grabs (they see keys only while an X11 app has the focus)");
                start_x11(&bindings, pressed_tx)?
            }
            Err(error) => {
                eprintln!("livetalk: warning: no global hotkeys: {error}");
                return Ok(None);
            }
        }
    } else {
        match start_x11(&bindings, pressed_tx) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("livetalk: warning: no global hotkeys: {error:#}");
                return Ok(None);
            }
        }
    };
    let names: Vec<String> = library.names().map(str::to_string).collect();
    let library: Vec<livetalk_core::Persona> = library.iter().cloned().collect();
    std::thread::Builder::new()
        .name("livetalk-hotkey-switch".into())
        .spawn(move || switch_on_hotkeys(pressed_rx, control, &names, &library))?;
    Ok(Some(listener))
}

fn start_x11(bindings: &Bindings, pressed: crossbeam_channel::Sender<Pressed>) -> Result<Listener> {
    let (hotkeys, warnings) = X11Hotkeys::start(None, bindings, pressed)?;
    for warning in warnings {
        eprintln!("livetalk: warning: {warning}");
    }
    let keys: Vec<String> = hotkeys.grabbed().iter().map(|b| b.hotkey.to_string()).collect();
    eprintln!("livetalk: hotkeys (X11): {}", keys.join(", "));
    Ok(Listener::X11(hotkeys))
}

#[cfg(feature = "portal")]
fn start_portal(bindings: &Bindings, library: &PersonaLibrary, pressed: crossbeam_channel::Sender<Pressed>) -> Result<Listener, livetalk_hotkeys::HotkeyError> {
    let shortcuts = livetalk_hotkeys::portal::shortcuts(bindings, library);
    let portal = livetalk_hotkeys::portal::PortalHotkeys::start(bindings, shortcuts, pressed)?;
    let bound: Vec<String> = portal.bound.iter().map(|(id, trigger)| format!("{id} = {trigger}")).collect();
    eprintln!("livetalk: hotkeys (portal): {}", bound.join(", "));
    Ok(Listener::Portal(portal))
}

#[cfg(not(feature = "portal"))]
fn start_portal(_: &Bindings, _: &PersonaLibrary, _: crossbeam_channel::Sender<Pressed>) -> Result<Listener, livetalk_hotkeys::HotkeyError> {
    Err(livetalk_hotkeys::portal::unavailable())
}

fn switch_on_hotkeys(pressed: Receiver<Pressed>, control: EngineControl, names: &[String], personas: &[livetalk_core::Persona]) {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for (action, at) in pressed {
        // A switch still being prepared counts as current, so Next pressed twice moves twice.
        let status = control.status();
        let current = status.switching_to.unwrap_or(status.persona);
        let Some(target) = action.target(&current, &names) else { continue };
        let Some(persona) = personas.iter().find(|p| p.name == target) else { continue };
        tracing::info!(persona = %target, after = ?Instant::now() - at, "hotkey");
        eprintln!("livetalk: hotkey: switching to {target}");
        if control.switch_persona(persona.clone()).is_err() {
            break;
        }
    }
}
