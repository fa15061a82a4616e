#!/bin/bash
# run.sh KERNEL_DIR ROOTFS_DIR SHARE_DIR -- boot KERNEL_DIR/{vmlinuz,initrd.gz} under qemu,
# ROOTFS_DIR exported read-only over 9p as the guest's / (tmpfs overlay on top), SHARE_DIR read-write at /share;
# the guest runs /share/guest.sh and its exit status comes back in SHARE_DIR/guest.rc.
# ACCEL=kvm|tcg forces the accelerator; by default KVM is used when /dev/kvm boots this kernel (probed
# once, result kept in KERNEL_DIR/accel), else TCG emulation.
set -euo pipefail
K=$1; ROOTFS=$2; SHARE=$3
MEM=${MEM:-3072}; SMP=${SMP:-$(nproc)}
qemu() {  # qemu ACCEL EXTRA_APPEND...: the common command line
  local accel=$1; shift
  local cpu=max; [ "$accel" = kvm ] && cpu=host
  [ "$accel" = tcg ] && accel=tcg,thread=multi
  qemu-system-x86_64 -accel "$accel" -cpu $cpu -smp "$SMP" -m "$MEM" \
    -nodefaults -no-user-config -display none -serial stdio -nic none -no-reboot \
    -kernel "$K/vmlinuz" -initrd "$K/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet loglevel=4 $*" \
    -virtfs local,path="$ROOTFS",mount_tag=rootfs,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="$SHARE",mount_tag=share,security_model=none,multidevs=remap </dev/null
}
if [ -z "${ACCEL:-}" ]; then
  # /dev/kvm may exist and still fail to boot a stock kernel (nested software hypervisors): try it once.
  key="$(uname -r) $(md5sum < "$K/vmlinuz" | cut -c1-12)"
  if [ -f "$K/accel" ] && [ "$(sed -n 1p "$K/accel")" = "$key" ]; then ACCEL=$(sed -n 2p "$K/accel")
  else
    ACCEL=tcg
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && timeout 30 bash -c "$(declare -f qemu); K='$K' ROOTFS='$ROOTFS' SHARE='$SHARE' MEM=512 SMP=1 qemu kvm livetalk.probe=1" 2>&1 | grep -q LIVETALK_PROBE_OK; then
      ACCEL=kvm
    fi
    printf '%s\n%s\n' "$key" "$ACCEL" > "$K/accel"
  fi
fi
echo "run.sh: accelerator $ACCEL"
rm -f "$SHARE/guest.rc"
timeout "${QEMU_TIMEOUT:-1800}" bash -c "$(declare -f qemu); K='$K' ROOTFS='$ROOTFS' SHARE='$SHARE' MEM='$MEM' SMP='$SMP' qemu '$ACCEL' ${EXTRA_APPEND:-}" || true
rc=$(cat "$SHARE/guest.rc" 2>/dev/null || echo 99)
echo "run.sh: guest rc=$rc"; exit "$rc"
