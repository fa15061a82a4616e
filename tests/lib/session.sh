# Shared by the shell tests that need a user-space sound/video server (tests/audio/audio-io.sh,
# tests/pipewire/pipewire-camera.sh). Source it; it defines:
#   install_debs PKG...     apt-installs the missing ones (root, or sudo); updates lists once a day
#   pass / fail / expect    the "N passed, N failed" counters (expect NAME CMD...: runs and counts)
#   PIDS + cleanup trap     background daemons started with `... & PIDS="$PIDS $!"` die on exit
#   stop_group PID          ends a setsid'd process group: SIGTERM, 5 s, then SIGKILL (bounded)
#   start_pipewire [--pulse]  pipewire + wireplumber (+ pipewire-pulse) in $XDG_RUNTIME_DIR,
#                           logs in $OUT, waiting until each answers

install_debs() {
  local need="" p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
  [ -z "$need" ] && return 0
  echo "installing:$need"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  [ -n "$(find /var/lib/apt/lists -name '*Packages*' -newermt '-1 day' 2>/dev/null | head -1)" ] || $sudo apt-get update -qq
  # shellcheck disable=SC2086
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
}

PASSED=0; FAILED=0; FAILED_NAMES=""
pass() { PASSED=$((PASSED+1)); echo "PASS $1"; }
fail() { FAILED=$((FAILED+1)); FAILED_NAMES="$FAILED_NAMES $1"; echo "FAIL $1: $2"; }
expect() { n=$1; shift; if "$@" >"$OUT/$n.out" 2>&1; then pass "$n"; tail -3 "$OUT/$n.out"; else fail "$n" "$(tail -8 "$OUT/$n.out")"; fi; }

PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

# A browser under load may take its time over SIGTERM, or ignore it: never wait unbounded.
stop_group() {
  kill -TERM -- "-$1" 2>/dev/null
  local i=0; while kill -0 "$1" 2>/dev/null && [ $i -lt 25 ]; do i=$((i+1)); sleep 0.2; done
  kill -KILL -- "-$1" 2>/dev/null; wait "$1" 2>/dev/null
}

# wait_for WHAT CMD...: retries CMD for up to 10 s.
wait_for() {
  local what=$1 i=0; shift
  until "$@" >/dev/null 2>&1; do
    i=$((i+1)); [ $i -gt 50 ] && { echo "$what did not start"; return 1; }; sleep 0.2
  done
}

start_pipewire() {
  pipewire >"$OUT/pipewire.log" 2>&1 & PIDS="$PIDS $!"
  wait_for pipewire pw-cli info 0 || { cat "$OUT/pipewire.log"; exit 1; }
  wireplumber >"$OUT/wireplumber.log" 2>&1 & PIDS="$PIDS $!"
  if [ "${1:-}" = --pulse ]; then
    pipewire-pulse >"$OUT/pipewire-pulse.log" 2>&1 & PIDS="$PIDS $!"
    wait_for pipewire-pulse pactl info || exit 1
  fi
  sleep 1
}
