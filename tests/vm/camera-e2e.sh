#!/bin/bash
# camera-e2e.sh -- livetalk's virtual camera against real consumers, in a VM.
#
# Boots Debian's kernel in qemu (KVM when /dev/kvm can boot it, else TCG emulation) with
# v4l2loopback built from Debian's v4l2loopback-dkms source, the host's root file system shared
# read-only over 9p. Inside (guest/guest.sh): the module is loaded with packaging/modprobe.d/
# livetalk.conf, livetalk-vcam-test writes the test pattern through the real frame bus, pump and
# V4l2Sink, and ffmpeg, v4l2-ctl and headless Chromium read it back in YUYV and I420; then a reader
# that opens before the producer, 100 reader open/close cycles, the engine pausing when the last
# reader leaves, the doctor checks and the error messages.
#
# Needs root (apt-get, bind mount). Installs what it needs from Debian's packages.
#   CACHE=/var/cache/livetalk-vm   kernel, module and initramfs (11 MB), rebuilt when the scripts change
#   V4L2LOOPBACK_SUITE=trixie      test v4l2loopback 0.15 (Debian trixie's source) instead of bookworm's 0.12.7
#   GUEST_SKIP_CHROMIUM=1          skip the Chromium readers
#   ACCEL=kvm|tcg                  force the accelerator (default: probe)
#   KEEP_WORK=1                    keep the work folder (logs, captured frames) after a pass
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${CACHE:-/var/cache/livetalk-vm}; mkdir -p "$CACHE"; CACHE=$(cd "$CACHE" && pwd)
ts() { echo "[$(date +%T) +${SECONDS}s] $*"; }
ts "start"

# 1. host packages: qemu, the module build, and the consumers the guest runs from the host's root
need=""
for p in qemu-system-x86 kmod cpio gcc make libc6-dev libelf-dev libclang-dev ffmpeg v4l-utils python3 chromium util-linux; do
  dpkg -s $p >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
  ts "installing:$need"
  [ -n "$(find /var/lib/apt/lists -name '*Packages*' -newermt '-1 day' 2>/dev/null | head -1)" ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# 2. the test driver (release: the guest may be emulated)
ts "building livetalk-vcam-test"
(cd "$REPO" && cargo build -q --release -p livetalk-vcam --bin livetalk-vcam-test && cargo build -q --release --bin livetalk --features webcam)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/livetalk-vcam-test
LIVETALK=${CARGO_TARGET_DIR:-$REPO/target}/release/livetalk

# 3. kernel + module + initramfs, cached outside the clone
KDIR=$CACHE/kernel${V4L2LOOPBACK_SUITE:+-$V4L2LOOPBACK_SUITE}
stamp=$(cat "$HERE/prep.sh" "$HERE/mkinitrd.sh" "$HERE/init" | md5sum | cut -c1-16)
if [ "$(cat "$KDIR/STAMP" 2>/dev/null)" != "$stamp" ] || [ ! -s "$KDIR/initrd.gz" ]; then
  ts "preparing kernel and module in $KDIR"
  rm -rf "$KDIR"; "$HERE/prep.sh" "$KDIR"; echo "$stamp" > "$KDIR/STAMP"
fi
ts "kernel ready: $(cat "$KDIR/KVER")"

# 4. the guest's files, and the host's / (non-recursive bind: 2-3x faster over 9p than / with submounts)
WORK=$(mktemp -d /tmp/livetalk-vm.XXXXXX)
mkdir -p "$WORK/share" "$WORK/hostroot"
cp "$HERE"/guest/* "$BIN" "$LIVETALK" "$REPO/packaging/modprobe.d/livetalk.conf" "$WORK/share/"
# The "me" persona the guest flips to: the user's webcam (a loopback device there).
mkdir -p "$WORK/share/presets-me"
printf 'name = "me"\nwebcam = "/dev/video12"\nbackground = "#2040c0"\n' > "$WORK/share/presets-me/me.toml"
mount --bind / "$WORK/hostroot"
cleanup() { umount "$WORK/hostroot" 2>/dev/null || true; }
trap cleanup EXIT

# 5. boot, run guest.sh, collect its status
ts "booting the guest"
set +e
EXTRA_APPEND="${GUEST_SKIP_CHROMIUM:+GUEST_SKIP_CHROMIUM=$GUEST_SKIP_CHROMIUM}" \
  "$HERE/run.sh" "$KDIR" "$WORK/hostroot" "$WORK/share" 2>&1 | tee "$WORK/console.log"
rc=${PIPESTATUS[0]}
set -e
ts "guest finished rc=$rc"
cleanup
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$WORK/console.log" | tail -1 || true)
if [ "$rc" = 0 ] && [ "${KEEP_WORK:-0}" != 1 ]; then rm -rf "$WORK"; else echo "logs and frames in $WORK/share"; fi
[ -n "$summary" ] || echo "0 passed, 1 failed (the guest did not finish: rc=$rc)"
exit "$rc"
