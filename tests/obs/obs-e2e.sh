#!/usr/bin/env bash
# The OBS plugin end to end, in a real OBS: Debian's obs-studio under Xvfb, driven through its
# bundled obs-websocket, with the real `livetalk run` (CPU avatar) feeding the livetalk source.
# Installs what it needs when missing (root, or sudo): obs-studio, libobs-dev, libclang-dev,
# xvfb, ffmpeg, python3-venv. Checks (tests/obs/obs_e2e.py): a scene with the source shows the
# persona (pixels), hotkeys switch persona (by name and by the binding saved in the scene
# collection), killing the engine leaves OBS running with the placeholder, a restarted engine
# is picked up without touching OBS, and in OBS's own recording the voice is in step with the
# lips. Usage: tests/obs/obs-e2e.sh (prints `N passed, M failed`).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

need=()
command -v obs >/dev/null || need+=(obs-studio)
[ -f /usr/include/obs/obs.h ] || need+=(libobs-dev)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v xvfb-run >/dev/null || need+=(xvfb xauth)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists are usually fresh (scripts/test.sh updated them): update only if needed.
    $SUDO apt-get install -y --no-install-recommends "${need[@]}" \
        || { $SUDO apt-get update -qq && $SUDO apt-get install -y --no-install-recommends "${need[@]}"; }
fi

echo "== building livetalk and the OBS plugin"
nice cargo build --release -p livetalk >&2
so=$(plugin/build.sh)
target=${CARGO_TARGET_DIR:-$root/target}
livetalk="$target/release/livetalk"

work=$(mktemp -d /tmp/livetalk-obs-e2e.XXXXXX)
[ -n "${LIVETALK_OBS_KEEP:-}" ] && echo "keeping $work" >&2 || trap 'rm -rf "$work"' EXIT
export XDG_CONFIG_HOME="$work/config" XDG_RUNTIME_DIR="$work/run"
mkdir -p "$XDG_CONFIG_HOME" && mkdir -m 0700 -p "$XDG_RUNTIME_DIR"
packaging/obs/install.sh --so "$so" >/dev/null

venv="${LIVETALK_OBS_VENV:-$target/obs-e2e-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import websocket, PIL' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q websocket-client pillow
fi

echo "== OBS $(obs --version 2>/dev/null | head -1) with the plugin from $so"
"$venv/bin/python" tests/obs/obs_e2e.py --work "$work" --livetalk "$livetalk" "$@"
