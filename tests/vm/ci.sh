#!/bin/bash
# ci.sh -- every camera end-to-end test, for CI (a fresh Debian 12 machine, root, network to
# Debian's package mirrors only): the VM test with bookworm's v4l2loopback 0.12.7 and with
# trixie's 0.15.0, then the PipeWire node test. Each installs its own packages and prints
# "N passed, N failed"; the exit status is 0 only if all three passed.
# Measured on the 2-core build machine (TCG, no KVM): cold cache + package installs add ~3 min;
# each VM run 1.5-2 min on a quiet machine (4.5-6 min while other builds load it); the PipeWire
# test ~15 s plus its build.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
rc=0
"$HERE/camera-e2e.sh" || rc=1
V4L2LOOPBACK_SUITE=trixie "$HERE/camera-e2e.sh" || rc=1
"$HERE/../pipewire/pipewire-camera.sh" || rc=1
exit $rc
