#!/bin/bash
# audio-io.sh -- livetalk's audio in and out against real sound servers started in user space.
#
# Starts pipewire, wireplumber and pipewire-pulse (a private XDG_RUNTIME_DIR and D-Bus session)
# and runs the real livetalk binary built with `--features livetalk/pipewire,livetalk/mic`:
#   - the virtual microphone appears as a source (PipeWire node livetalk-mic, Audio/Source/Virtual,
#     "livetalk mic"; pactl sees it) and carries audio pushed through the control API and
#     `livetalk say` speech, read by pw-record;
#   - espeak-ng speech played into a null sink is captured by the cpal input (--audio-in
#     mic:NAME), drives the avatar (speaking events) and comes out of the virtual microphone;
#   - an unknown device name is one error listing the devices;
#   - the PulseAudio fallback (--virtual-mic pulse, through pipewire-pulse's pactl/pacat) carries
#     a file's audio and unloads its modules on exit;
#   - Ctrl+C (SIGINT), SIGTERM and SIGHUP (not under nohup) stop a run serving the PulseAudio
#     virtual mic, the control API and the frame share cleanly: exit 0 within 5 s, "stopped on
#     SIGx", its modules (and only those) unloaded, both socket files gone; a second signal exits
#     at once (128 + signal); a second run leaves a running one's virtual mic alone and says
#     whose it is;
#   - the HTTP TTS adaptor against a small local server speaks `say` into the virtual mic;
#   - lip-sync: `livetalk dev avsync` (tone bursts on stdin, camera node read by pipewiresrc,
#     virtual mic by parecord): |median A/V offset| <= 40 ms; prints the offset and the
#     mouth-to-camera latency p50/p95.
# Installs its Debian packages (sudo when not root). Prints "N passed, N failed"; exit 0 = all passed.
#   KEEP_WORK=1 keeps the work folder (logs, recordings)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$REPO/tests/lib/session.sh"
TARGET=${CARGO_TARGET_DIR:-$REPO/target}

if [ "${1:-}" != --inner ]; then
  install_debs pipewire pipewire-bin wireplumber pipewire-pulse pulseaudio-utils gstreamer1.0-pipewire gstreamer1.0-tools \
           gstreamer1.0-plugins-base dbus espeak-ng libasound2-dev libpipewire-0.3-dev libspa-0.2-dev clang libclang-dev \
           pkg-config python3 || exit 1
  # The real binary with PipeWire and the microphone (kept beside the default build's).
  (cd "$REPO" && cargo build -q --release --bin livetalk --features livetalk/pipewire,livetalk/mic \
     && cp "$TARGET/release/livetalk" "$TARGET/release/livetalk-av") || exit 1
  exec dbus-run-session -- "$0" --inner
fi

LT=$TARGET/release/livetalk-av
OUT=$(mktemp -d /tmp/livetalk-audio.XXXXXX)
export XDG_RUNTIME_DIR=$OUT/rt; mkdir -p -m 700 "$XDG_RUNTIME_DIR"
export PIPEWIRE_RUNTIME_DIR=$XDG_RUNTIME_DIR PULSE_RUNTIME_PATH=$XDG_RUNTIME_DIR/pulse
start_pipewire --pulse

# analyse.py: checks on recordings (16 kHz mono s16 WAV from pw-record / parecord).
cat >"$OUT/analyse.py" <<'EOF'
import sys, wave, struct, math
def load(path):
    w = wave.open(path)
    n, rate, ch, width = w.getnframes(), w.getframerate(), w.getnchannels(), w.getsampwidth()
    raw = w.readframes(n if n > 0 and n < 1 << 30 else 1 << 30)
    x = struct.unpack("<%dh" % (len(raw) // 2), raw[: len(raw) // 2 * 2])
    return [sum(x[i:i + ch]) / ch / 32768 for i in range(0, len(x) - ch + 1, ch)], rate
def windows(x, rate, ms=50):
    n = rate * ms // 1000
    return [math.sqrt(sum(s * s for s in x[i:i + n]) / n) for i in range(0, len(x) - n, n)]
def tone_hz(x, rate):
    # zero crossings of the loudest second
    r = windows(x, rate, 1000); k = r.index(max(r)); seg = x[k * rate:(k + 1) * rate]
    return sum(1 for a, b in zip(seg, seg[1:]) if (a >= 0) != (b >= 0)) / 2
cmd, path = sys.argv[1], sys.argv[2]
x, rate = load(path)
r = windows(x, rate)
loud = sum(1 for v in r if v > 0.02) * 0.05
print(f"{path}: {len(x) / rate:.1f} s, loud for {loud:.2f} s, peak rms {max(r or [0]):.3f}")
if cmd == "tone":
    hz = tone_hz(x, rate); print(f"tone {hz:.0f} Hz"); want = float(sys.argv[3])
    assert abs(hz - want) < want * 0.05, (hz, want)
    assert loud >= float(sys.argv[4]), loud
elif cmd == "speech":
    assert loud >= float(sys.argv[3]), loud
    # speech: loud and quiet windows alternate (syllables), unlike a tone
    changes = sum(1 for a, b in zip(r, r[1:]) if (a > 0.02) != (b > 0.02))
    print(f"{changes} loud/quiet changes"); assert changes >= 4, changes
EOF
python3 - "$OUT" <<'EOF'
import sys, wave, struct, math
out = sys.argv[1]
def write(name, rate, seconds, hz):
    w = wave.open(f"{out}/{name}", "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
    w.writeframes(b"".join(struct.pack("<h", int(0.4 * 32767 * math.sin(2 * math.pi * hz * i / rate))) for i in range(int(rate * seconds))))
write("tone440-48k.wav", 48000, 2.0, 440)
write("tone660-22k.wav", 22050, 3.0, 660)
EOF

node_props() {  # node_props NAME CLASS DESCRIPTION
  pw-dump | python3 -c '
import json, sys
name, cls, desc = sys.argv[1:4]
nodes = [o for o in json.load(sys.stdin) if o.get("type") == "PipeWire:Interface:Node" and o["info"]["props"].get("node.name") == name]
assert len(nodes) == 1, f"{len(nodes)} nodes named {name}"
p = nodes[0]["info"]["props"]
print({k: p.get(k) for k in ("media.class", "node.description")})
assert p.get("media.class") == cls and p.get("node.description") == desc, p' "$@"
}
wait_node() { i=0; until pw-dump 2>/dev/null | grep -q "\"node.name\": \"$1\""; do i=$((i+1)); [ $i -gt 100 ] && return 1; sleep 0.2; done; }
wait_socket() { i=0; until "$LT" ctl --socket "$1" status >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 100 ] && return 1; sleep 0.2; done; }
record() { timeout "$2" pw-record --target livetalk-mic --rate 16000 --channels 1 --format s16 "$1" >/dev/null 2>&1; return 0; }

echo "== the virtual microphone: a source carrying pushed audio and speech t=${SECONDS}s"
SOCK=$OUT/ctl.sock
"$LT" run --no-preview --engine cpu --persona kai --audio-in none --virtual-mic --control-socket "$SOCK" --seconds 90 \
  >"$OUT/run-vmic.log" 2>&1 & RUN=$!
if wait_node livetalk-mic && wait_socket "$SOCK"; then
  expect virtual-mic-pipewire-node node_props livetalk-mic Audio/Source/Virtual "livetalk mic"
  expect virtual-mic-seen-by-pulse-clients sh -c "pactl list short sources | tee /dev/stderr | grep -q livetalk-mic"
  record "$OUT/pushed.wav" 6 & REC=$!
  sleep 1.5
  "$LT" ctl --socket "$SOCK" push "$OUT/tone440-48k.wav" >"$OUT/push.out" 2>&1
  wait $REC
  expect virtual-mic-carries-pushed-audio python3 "$OUT/analyse.py" tone "$OUT/pushed.wav" 440 1.5
  record "$OUT/said.wav" 7 & REC=$!
  sleep 1
  "$LT" say --socket "$SOCK" "Hello from the virtual microphone, one two three." >"$OUT/say.out" 2>&1
  wait $REC
  expect virtual-mic-carries-speech python3 "$OUT/analyse.py" speech "$OUT/said.wav" 1.0
else
  fail virtual-mic-pipewire-node "$(tail -5 "$OUT/run-vmic.log")"
fi
kill $RUN 2>/dev/null; wait $RUN 2>/dev/null

echo "== the microphone: espeak-ng into a null sink, captured by cpal t=${SECONDS}s"
pactl load-module module-null-sink sink_name=voice-in rate=16000 channels=1 sink_properties=device.description=voice-in >/dev/null
wait_node voice-in
expect unknown-device-lists-devices sh -c "! '$LT' run --no-preview --no-control --audio-in mic:no-such-mic --seconds 3 2>'$OUT/unknown.err'; \
  cat '$OUT/unknown.err'; [ \$(grep -c '^error:' '$OUT/unknown.err') = 1 ] && grep -q 'no input device named .no-such-mic.; available: .*voice-in' '$OUT/unknown.err'"
"$LT" run --no-preview --engine cpu --persona anna --audio-in mic:voice-in --virtual-mic --control-socket "$SOCK" --seconds 90 \
  >"$OUT/run-mic.log" 2>&1 & RUN=$!
if wait_node livetalk-mic && wait_socket "$SOCK"; then
  "$LT" ctl --socket "$SOCK" events >"$OUT/mic-events.out" 2>&1 & EV=$!
  record "$OUT/mic-through.wav" 9 & REC=$!
  sleep 1
  espeak-ng -v en-us -w "$OUT/spoken.wav" "This is my own voice, going through the live talk microphone. One, two, three."
  pw-play --target voice-in "$OUT/spoken.wav"
  wait $REC
  sleep 1; kill $EV 2>/dev/null; wait $EV 2>/dev/null
  expect mic-opened-by-name grep -q "microphone voice-in" "$OUT/run-mic.log"
  expect mic-speech-drives-the-avatar sh -c "cat '$OUT/mic-events.out'; grep -q speaking_started '$OUT/mic-events.out'"
  expect mic-voice-goes-through-virtual-mic python3 "$OUT/analyse.py" speech "$OUT/mic-through.wav" 1.0
else
  fail mic-opened-by-name "$(tail -5 "$OUT/run-mic.log")"
fi
kill $RUN 2>/dev/null; wait $RUN 2>/dev/null

echo "== the PulseAudio fallback (pactl null sink + remap source, pacat) t=${SECONDS}s"
"$LT" run --no-preview --no-control --engine cpu --audio "$OUT/tone660-22k.wav" --virtual-mic pulse --seconds 9 \
  >"$OUT/run-pulse.log" 2>&1 & RUN=$!
i=0; until pactl list short sources 2>/dev/null | grep -q livetalk-mic; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 0.2; done
timeout 6 parecord -d livetalk-mic --rate=16000 --channels=1 --format=s16le --file-format=wav "$OUT/pulse.wav" 2>"$OUT/parecord.err"
expect pulse-virtual-mic-carries-the-file python3 "$OUT/analyse.py" tone "$OUT/pulse.wav" 660 1.5
wait $RUN; rc=$?
expect pulse-modules-unloaded-on-exit sh -c "[ $rc = 0 ] && ! pactl list short modules | grep -E 'livetalk-mic'"

echo "== stopping: Ctrl+C (SIGINT), SIGTERM and SIGHUP stop cleanly; a second signal exits at once t=${SECONDS}s"
# A module livetalk did not load: a stop must leave it alone.
NOT_OURS=$(pactl load-module module-null-sink sink_name=not-livetalk)
# start_stopped_run NAME [WRAPPER...]: `livetalk run` with the PulseAudio virtual mic, the control
# API and the frame share; returns once all three serve, with RUN (its pid) and MODULES (what it
# loaded) set.
start_stopped_run() {
  local name=$1; shift
  "$@" "$LT" run --no-preview --engine cpu --audio-in none --virtual-mic pulse --control-socket "$OUT/$name.sock" \
    --share-socket "$OUT/$name-frames.sock" >"$OUT/$name.log" 2>&1 & RUN=$!
  wait_socket "$OUT/$name.sock" || return 1
  i=0; until pactl list short sources | grep -q livetalk-mic; do i=$((i+1)); [ $i -gt 50 ] && return 1; sleep 0.2; done
  [ -S "$OUT/$name-frames.sock" ] || return 1
  MODULES=$(pactl list short modules | grep livetalk-mic | cut -f1 | tr '\n' ' ')
  echo "serving (pid $RUN); its modules: $MODULES"
}
# stopped_within SECONDS: waits for RUN to exit (SIGKILL after SECONDS), sets RC and TOOK (ms).
stopped_within() {
  local asked; asked=$(date +%s%N)
  (sleep "$1"; kill -KILL $RUN 2>/dev/null) & local watchdog=$!
  wait $RUN; RC=$?
  TOOK=$(( ($(date +%s%N) - asked) / 1000000 ))
  kill $watchdog 2>/dev/null; wait $watchdog 2>/dev/null
  echo "exit status $RC, ${TOOK} ms after the signal"
}
stops_cleanly_on() {  # stops_cleanly_on INT|TERM|HUP [WRAPPER...]: the signal, or SIGTERM after a SIGHUP under nohup
  local name=stop-$1${2:+-$2} sig=$1
  start_stopped_run $name "${@:2}" || { tail -5 "$OUT/$name.log"; kill $RUN; return 1; }
  if [ "${2:-}" = nohup ]; then
    kill -HUP $RUN; sleep 1
    "$LT" ctl --socket "$OUT/$name.sock" status >/dev/null || { echo "SIGHUP under nohup stopped it"; return 1; }
    echo "SIGHUP under nohup: still serving"; sig=TERM
  fi
  kill -$sig $RUN
  stopped_within 5
  tail -1 "$OUT/$name.log"
  [ $RC = 0 ] || return 1
  [ "$(grep -c '^livetalk: stopped on SIG'$sig' (' "$OUT/$name.log")" = 1 ] || { echo "no stop line"; return 1; }
  for m in $MODULES; do
    pactl list short modules | grep -q "^$m[[:space:]]" && { echo "module $m still loaded"; return 1; }
  done
  ! pactl list short modules | grep livetalk-mic || return 1
  pactl list short modules | grep -q sink_name=not-livetalk || { echo "it unloaded a module it did not load"; return 1; }
  [ ! -e "$OUT/$name.sock" ] || { echo "the control socket file is left"; return 1; }
  [ ! -e "$OUT/$name-frames.sock" ] || { echo "the frame share socket file is left"; return 1; }
}
expect sigint-stops-cleanly stops_cleanly_on INT
expect sigterm-stops-cleanly stops_cleanly_on TERM
expect sighup-stops-cleanly stops_cleanly_on HUP
expect sighup-under-nohup-keeps-it-running stops_cleanly_on HUP nohup
# Two standard signals of one kind may merge into one; SIGINT and SIGTERM back to back are surely
# two, the second arriving long before a clean stop could end.
second_signal_exits_at_once() {
  start_stopped_run stop-twice || { tail -5 "$OUT/stop-twice.log"; kill $RUN; return 1; }
  kill -INT $RUN; kill -TERM $RUN
  stopped_within 5
  # what the interrupted stop left: the next run would unload it (its owner is gone), the test
  # does it now
  for m in $MODULES; do pactl unload-module $m 2>/dev/null; done
  cat "$OUT/stop-twice.log"
  # 128 + the second signal's number; when both are pending at once, which handler runs second is
  # the kernel's choice
  { [ $RC = 130 ] || [ $RC = 143 ]; } && ! grep -q '^livetalk: stopped' "$OUT/stop-twice.log"
}
expect second-signal-exits-at-once second_signal_exits_at_once
# A second run does not take the microphone from a running one: it stops naming the first run's
# pid, and the first run's modules stay loaded.
second_run_leaves_the_first_alone() {
  start_stopped_run first-owner || { tail -5 "$OUT/first-owner.log"; kill $RUN; return 1; }
  local first=$RUN first_modules=$MODULES ok=0
  "$LT" run --no-preview --engine cpu --audio-in none --virtual-mic pulse --no-control --seconds 5 \
    --share-socket "$OUT/second-owner-frames.sock" >"$OUT/second-owner.log" 2>&1; local rc=$?
  tail -3 "$OUT/second-owner.log"
  { [ $rc != 0 ] && grep -q "another livetalk (pid $first) is publishing the virtual microphone" "$OUT/second-owner.log"; } || ok=1
  for m in $first_modules; do
    pactl list short modules | grep -q "^$m[[:space:]]" || { echo "module $m of the first run was unloaded"; ok=1; }
  done
  kill -TERM $first; wait $first
  return $ok
}
expect second-run-leaves-the-first-alone second_run_leaves_the_first_alone
pactl unload-module "$NOT_OURS"

echo "== the HTTP TTS adaptor against a local service t=${SECONDS}s"
cat >"$OUT/tts-server.py" <<'EOF'
import http.server, json, subprocess, sys
class Speak(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        print("REQUEST", json.dumps(req), self.headers.get("Content-Type"), flush=True)
        wav = subprocess.run(["espeak-ng", "-v", req["voice"], "--stdout", req["text"]], capture_output=True, check=True).stdout
        self.send_response(200); self.send_header("Content-Type", "audio/wav"); self.send_header("Content-Length", str(len(wav)))
        self.end_headers(); self.wfile.write(wav)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), Speak)
print("PORT", s.server_address[1], flush=True)
s.serve_forever()
EOF
python3 "$OUT/tts-server.py" >"$OUT/tts-server.log" 2>&1 & TTS=$!; PIDS="$PIDS $TTS"
i=0; until grep -q PORT "$OUT/tts-server.log"; do i=$((i+1)); [ $i -gt 50 ] && break; sleep 0.1; done
PORT=$(sed -n 's/^PORT //p' "$OUT/tts-server.log")
"$LT" run --no-preview --engine cpu --persona anna --audio-in none --tts-url "http://127.0.0.1:$PORT/speak" \
  --virtual-mic --control-socket "$OUT/tts.sock" --seconds 60 >"$OUT/run-tts.log" 2>&1 & RUN=$!
wait_node livetalk-mic && wait_socket "$OUT/tts.sock"
# the recorder first, then the sentence (`say` goes through the same adaptor): however loaded the
# machine is, the speech lands inside the recording
record "$OUT/tts.wav" 9 & REC=$!
sleep 1
"$LT" say --socket "$OUT/tts.sock" "Spoken by an external service, through the adaptor."; said=$?
wait $REC
kill -INT $RUN; wait $RUN; rc=$?
expect http-tts-request sh -c "cat '$OUT/tts-server.log'; grep -q 'REQUEST {\"text\": \"Spoken by an external service, through the adaptor.\", \"voice\": \"en-gb\"} application/json' '$OUT/tts-server.log' && [ $said = 0 ] && [ $rc = 0 ]"
expect http-tts-speech-in-virtual-mic python3 "$OUT/analyse.py" speech "$OUT/tts.wav" 1.0

echo "== lip-sync: livetalk dev avsync (CPU avatar, camera node + virtual mic through PipeWire) t=${SECONDS}s"
expect avsync-within-40ms "$LT" dev avsync --livetalk "$LT"
grep AVSYNC "$OUT/avsync-within-40ms.out"

echo "$PASSED passed, $FAILED failed${FAILED_NAMES:+ (failed:$FAILED_NAMES)}"
if [ $FAILED = 0 ] && [ "${KEEP_WORK:-0}" != 1 ]; then rm -rf "$OUT"; else echo "logs in $OUT"; fi
[ $FAILED = 0 ]
