#!/usr/bin/env bash
# The test command: installs the system packages the tests use as real consumers
# (ffmpeg decodes the demo file; espeak-ng speaks; Xvfb hosts the preview window), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v Xvfb >/dev/null || need+=(xvfb)
command -v xdotool >/dev/null || need+=(xdotool)  # key presses for the global hotkey test
command -v dbus-daemon >/dev/null || need+=(dbus)   # a bare session bus for the hotkey portal test
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi

cargo test --workspace --release "$@"
# The GlobalShortcuts portal path (opt-in feature): its errors against a bus without a portal.
cargo test --release -p livetalk-hotkeys --features portal --test portal
# Audio in and out against real sound servers started in user space (PipeWire, WirePlumber,
# pipewire-pulse): microphone, virtual microphone, PulseAudio fallback, HTTP TTS, lip-sync.
# Builds livetalk with the mic and pipewire features; installs its packages.
bash tests/audio/audio-io.sh
