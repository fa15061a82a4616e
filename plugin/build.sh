#!/usr/bin/env bash
# Builds the OBS plugin against the system's libobs (Debian: libobs-dev, libclang-dev) and
# prints the path of the built module. Usage: plugin/build.sh [--debug]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
[ "${1:-}" = "--debug" ] && profile=debug
headers=${OBS_INCLUDE_DIR:-/usr/include/obs}
if [ ! -f "$headers/obs.h" ]; then
    echo "no libobs headers in $headers: sudo apt-get install libobs-dev libclang-dev (or set OBS_INCLUDE_DIR)" >&2
    exit 1
fi
# obs-sys includes "obs/libobs/obs.h" (the layout of an OBS source tree): give it that layout.
target=${CARGO_TARGET_DIR:-target}
shim="$target/obs-include"
mkdir -p "$shim/obs"
ln -sfn "$(cd "$headers" && pwd)" "$shim/obs/libobs"
export BINDGEN_EXTRA_CLANG_ARGS="-I$(cd "$shim" && pwd) -I$headers -DHAVE_OBSCONFIG_H -D_FENV_H"
# Never fall back to obs-sys's bundled bindings of an older OBS: struct layouts differ.
export DONT_USE_GENERATED_BINDINGS=1
flags=(--release)
[ "$profile" = debug ] && flags=()
nice cargo build -p livetalk-obs --features obs "${flags[@]}" >&2
echo "$target/$profile/liblivetalk_obs.so"
