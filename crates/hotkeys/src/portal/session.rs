//! The portal session (feature `portal`): create a GlobalShortcuts session, bind the shortcuts,
//! forward `Activated` signals as [`HotkeyAction`]s. Runs on its own thread with a
//! current-thread tokio runtime, so the rest of livetalk stays synchronous.

use std::time::Instant;

use ashpd::desktop::global_shortcuts::{GlobalShortcuts, NewShortcut};
use crossbeam_channel::Sender;
use futures_util::StreamExt;

use super::PortalShortcut;
use crate::bindings::{Bindings, HotkeyAction};
use crate::x11::Pressed;
use crate::HotkeyError;

/// The bound portal shortcuts; the session lives as long as its thread (the process).
pub struct PortalHotkeys {
    /// The shortcuts the desktop accepted: id and the trigger it shows.
    pub bound: Vec<(String, String)>,
}

impl PortalHotkeys {
    /// Binds `shortcuts` through the portal; returns once the desktop answered (the user may
    /// be asked to confirm), or with the reason no portal can be used.
    pub fn start(bindings: &Bindings, shortcuts: Vec<PortalShortcut>, pressed: Sender<Pressed>) -> Result<Self, HotkeyError> {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            return Err(HotkeyError::Portal(
                "the GlobalShortcuts portal is not available: there is no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS and XDG_RUNTIME_DIR are not set)".into(),
            ));
        }
        let actions: Vec<(String, HotkeyAction)> = bindings.bindings.iter().map(|b| (b.action.id(), b.action.clone())).collect();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("livetalk-portal".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the portal's runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let portal = match bind(&shortcuts).await {
                        Ok(bound) => bound,
                        Err(reason) => {
                            let _ = ready_tx.send(Err(reason));
                            return;
                        }
                    };
                    let (proxy, _session, bound) = portal;
                    let mut activated = match proxy.receive_activated().await {
                        Ok(stream) => stream,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("listening for shortcuts: {e}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(bound));
                    while let Some(signal) = activated.next().await {
                        let Some((_, action)) = actions.iter().find(|(id, _)| id == signal.shortcut_id()) else { continue };
                        if pressed.send((action.clone(), Instant::now())).is_err() {
                            break;
                        }
                    }
                });
            })
            .map_err(|e| HotkeyError::Portal(format!("cannot start the portal thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(bound)) => Ok(PortalHotkeys { bound }),
            Ok(Err(reason)) => Err(HotkeyError::Portal(reason)),
            Err(_) => Err(HotkeyError::Portal("the portal thread ended".into())),
        }
    }
}

type Bound = (GlobalShortcuts, ashpd::desktop::Session<GlobalShortcuts>, Vec<(String, String)>);

async fn bind(shortcuts: &[PortalShortcut]) -> Result<Bound, String> {
    let unavailable = |e: ashpd::Error| {
        format!(
            "the GlobalShortcuts portal is not available ({e}); it needs xdg-desktop-portal with a backend that implements \
             it (GNOME 48+, KDE Plasma 5.27+, Hyprland); meanwhile switch with `livetalk ctl switch NAME` or use X11 hotkeys"
        )
    };
    let proxy = GlobalShortcuts::new().await.map_err(unavailable)?;
    let session = proxy.create_session(Default::default()).await.map_err(unavailable)?;
    let request: Vec<NewShortcut> = shortcuts
        .iter()
        .map(|s| NewShortcut::new(s.id.clone(), s.description.clone()).preferred_trigger(Some(s.preferred_trigger.as_str())))
        .collect();
    let response = proxy
        .bind_shortcuts(&session, &request, None, Default::default())
        .await
        .and_then(|request| request.response())
        .map_err(|e| format!("the desktop did not bind the shortcuts: {e}"))?;
    let bound = response
        .shortcuts()
        .iter()
        .map(|s| (s.id().to_string(), s.trigger_description().to_string()))
        .collect();
    Ok((proxy, session, bound))
}
