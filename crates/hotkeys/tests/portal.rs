//! The GlobalShortcuts portal path without a desktop: against a real, private D-Bus session bus
//! that has no portal on it, and with no bus at all, starting fails with a message that says
//! what is missing and what to do instead (the request itself is checked in `portal.rs`).
#![cfg(feature = "portal")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use livetalk_core::PersonaLibrary;
use livetalk_hotkeys::portal::{shortcuts, PortalHotkeys};
use livetalk_hotkeys::Bindings;

#[test]
fn without_a_portal_the_error_says_what_is_missing() {
    let library = PersonaLibrary::default();
    let (bindings, _) = Bindings::new(&library, Some("Ctrl+Alt+PageDown".parse().unwrap()), None);
    let request = shortcuts(&bindings, &library);
    assert_eq!(request[0].preferred_trigger, "CTRL+ALT+Page_Down");

    // No session bus at all.
    std::env::remove_var("DBUS_SESSION_BUS_ADDRESS");
    std::env::remove_var("XDG_RUNTIME_DIR");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let message = PortalHotkeys::start(&bindings, request.clone(), tx.clone()).err().unwrap().to_string();
    assert!(message.contains("no D-Bus session bus"), "{message}");

    // A real session bus with nobody implementing the portal on it.
    let mut daemon = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon is installed (scripts/test.sh installs dbus)");
    let mut address = String::new();
    BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut address).unwrap();
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", address.trim());
    let result = PortalHotkeys::start(&bindings, request, tx);
    let _ = daemon.kill();
    let _ = daemon.wait();
    let message = result.err().expect("no portal on a bare bus").to_string();
    assert!(
        message.contains("the GlobalShortcuts portal is not available")
            && message.contains("xdg-desktop-portal")
            && message.contains("livetalk ctl switch"),
        "{message}"
    );
}
