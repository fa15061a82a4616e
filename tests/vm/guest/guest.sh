# Runs inside the qemu guest as root (chroot on the host's root, read-only, under a tmpfs
# overlay); cwd=/share is the host folder with this script, the test driver binary
# (livetalk-vcam-test), check_frames.py, gum.html, early_reader.py and livetalk.conf.
# Each check prints PASS/FAIL; the last line is "N passed, N failed". Exit status 0 = all passed.
set -u
S=/share
VT=$S/livetalk-vcam-test
# Captured frames go to the guest's RAM (tmpfs), never to the host folder: a few hundred MB
# of raw video there once filled a CI machine's disk. Each capture is deleted once checked.
CAP=/tmp/captures; mkdir -p $CAP
PASSED=0; FAILED=0; FAILED_NAMES=""
t() { cut -d' ' -f1 /proc/uptime; }
pass() { PASSED=$((PASSED+1)); echo "PASS $1 (t=$(t))"; }
fail() { FAILED=$((FAILED+1)); FAILED_NAMES="$FAILED_NAMES $1"; echo "FAIL $1: $2 (t=$(t))"; }
# expect NAME CMD...: pass when CMD exits 0; its output goes to $S/NAME.out and is shown on failure
# (and drops the frames it captured)
expect() { n=$1; shift; if "$@" >"$S/$n.out" 2>&1; then pass "$n"; else fail "$n" "$(tail -5 "$S/$n.out")"; fi; rm -f "$CAP"/*; }
frame_size() { case $1 in yuyv) echo $(($2 * $3 * 2));; i420) echo $(($2 * $3 * 3 / 2));; esac; }

# start_writer NAME DEVICE FORMAT SIZE: the test driver writes the test pattern; log in $S/writer-NAME.log
start_writer() {
  WLOG=$S/writer-$1.log
  "$VT" write --device "$2" --format "$3" --size "$4" >"$WLOG" 2>&1 &
  WPID=$!
}
# wait_ready DEV W H: until a reader sees the producer's format (exclusive_caps=1: only after a frame)
wait_ready() {
  i=0; until v4l2-ctl -d "$1" --get-fmt-video 2>/dev/null | grep -q "Width/Height *: *$2/$3"; do
    i=$((i+1)); [ $i -gt 300 ] && return 1; kill -0 "$WPID" 2>/dev/null || return 1; sleep 0.2; done; }
# stop_writer NAME: SIGTERM, then the writer must exit 0 with STATS and no ERROR
stop_writer() {
  kill -TERM "$WPID"; wait "$WPID"; rc=$?
  if [ $rc = 0 ] && grep -q '^STATS' "$WLOG" && ! grep -q '^ERROR' "$WLOG"; then pass "$1"
  else fail "$1" "writer rc=$rc: $(grep -E '^(STATS|ERROR)' "$WLOG")"; fi
}
# wait_log PATTERN SECONDS: until the writer log has PATTERN
wait_log() { i=0; until grep -q "$1" "$WLOG"; do i=$((i+1)); [ $i -gt $(($2 * 5)) ] && return 1; sleep 0.2; done; }

# stop_group PID: end a setsid'd process group (a hung Chromium may ignore SIGTERM)
stop_group() {
  kill -TERM -"$1" 2>/dev/null   # dash: no "--" before a negative pid
  i=0; while kill -0 "$1" 2>/dev/null && [ $i -lt 25 ]; do i=$((i+1)); sleep 0.2; done
  kill -KILL -"$1" 2>/dev/null; wait "$1" 2>/dev/null
}
# readers NAME DEV FORMAT W H: ffmpeg, v4l2-ctl --stream-mmap and headless Chromium read the camera
readers() {
  name=$1 dev=$2 fmt=$3 w=$4 h=$5
  echo "== $name: ffmpeg -f v4l2 t=$(t)"
  expect "$name-ffmpeg" sh -c "timeout 120 ffmpeg -nostdin -hide_banner -loglevel error -f v4l2 -i $dev -frames:v 30 \
      -f rawvideo -pix_fmt rgb24 -y $CAP/$name-ffmpeg.rgb && python3 $S/check_frames.py rgb $CAP/$name-ffmpeg.rgb $w $h 6"
  echo "== $name: v4l2-ctl --stream-mmap t=$(t)"
  expect "$name-v4l2ctl" sh -c "timeout 120 v4l2-ctl -d $dev --stream-mmap --stream-count=60 --stream-to=$CAP/$name.raw && \
      python3 $S/check_frames.py raw $CAP/$name.raw $fmt $w $h --min-frames 60 --progress"
  [ "${GUEST_SKIP_CHROMIUM:-0}" = 1 ] && return
  echo "== $name: headless Chromium getUserMedia t=$(t)"
  points=$(python3 $S/check_frames.py points "$w" "$h")
  url="file://$S/gum.html?w=$w&h=$h&points=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$points")"
  log=$S/$name-chromium.log
  # Under a loaded emulated guest Chromium's helper processes may give up ("no connection"
  # after 15 s): one fresh attempt before failing.
  for attempt in 1 2; do
    setsid chromium --headless=new --no-sandbox --disable-gpu --use-fake-ui-for-media-stream \
       --enable-logging=stderr --v=0 --no-first-run --user-data-dir="/tmp/chr-$name-$attempt" \
       --autoplay-policy=no-user-gesture-required "$url" >"$log" 2>&1 &
    c=$!
    i=0; until grep -q GUM_DONE "$log"; do i=$((i+1)); [ $i -gt 240 ] && break; sleep 1; done
    stop_group $c
    grep -q 'GUM_DONE ok' "$log" && break
    echo "chromium attempt $attempt did not finish: $(grep -o 'GUM_DONE[^"]*' "$log" || echo 'no GUM_DONE')"
  done
  grep -o '"GUM_[A-Z]* [^"]*' "$log" | cut -c2-
  pixels=$(sed -n 's/.*"GUM_PIXELS \(.*\)", source.*/\1/p' "$log" | head -1)
  if grep -q 'GUM_DONE ok' "$log" && grep -q "GUM_TRACK livetalk" "$log"; then
    expect "$name-chromium" python3 $S/check_frames.py pixels "$w" "$h" 12 "$pixels"
  else fail "$name-chromium" "getUserMedia: $(grep -o 'GUM_DONE[^"]*' "$log")"; fi
}

load_module() { modprobe v4l2loopback; }   # options from /etc/modprobe.d/livetalk.conf
reload_module() {
  i=0; until rmmod v4l2loopback 2>/dev/null; do i=$((i+1)); [ $i -gt 60 ] && return 1; sleep 0.5; done
  load_module
}

echo "guest.sh start t=$(t) kernel $(uname -r)"
rm -f $S/*.out $S/*.raw $S/*.rgb $S/writer-*.log $S/*-chromium.log
# For post-mortems of a hung guest: the process list with kernel wait channels, every 10 s.
(while sleep 10; do ps -eo pid,pgid,stat,wchan:32,etime,args > $S/ps.tmp 2>&1; mv $S/ps.tmp $S/ps.log; done) &
MONITOR=$!

echo "== errors before the module is loaded"
expect doctor-no-module sh -c "! $VT doctor > $S/doctor0.txt; cat $S/doctor0.txt; grep -q 'installed but not loaded' $S/doctor0.txt && grep -q 'fix: sudo modprobe v4l2loopback' $S/doctor0.txt"
expect write-no-module sh -c "$VT write --device livetalk --seconds 1 > $S/w.txt; rc=\$?; cat $S/w.txt; [ \$rc = 2 ] && grep -q 'module is not loaded.*sudo modprobe v4l2loopback' $S/w.txt"

echo "== load with packaging/modprobe.d/livetalk.conf"
cp $S/livetalk.conf /etc/modprobe.d/livetalk.conf
expect modprobe-packaging-conf load_module
VERSION=$(cat /sys/module/v4l2loopback/version 2>/dev/null || echo 0.12.x)
echo "v4l2loopback version: $VERSION"
expect device-labels sh -c 'grep -x livetalk /sys/class/video4linux/video10/name && grep -x "livetalk shared" /sys/class/video4linux/video11/name'
expect doctor-ok sh -c "$VT doctor > $S/doctor1.txt; rc=\$?; cat $S/doctor1.txt; [ \$rc = 0 ] && grep -q 'ok.*Chrome-based apps: /dev/video10' $S/doctor1.txt && grep -q 'ok.*several readers: /dev/video11' $S/doctor1.txt"

echo "== clear errors"
expect error-permission sh -c "setpriv --reuid=65534 --regid=65534 --clear-groups $VT write --device /dev/video11 --seconds 1 > $S/w.txt; rc=\$?; cat $S/w.txt; [ \$rc = 2 ] && grep -q 'permission denied.*usermod -aG video' $S/w.txt"
expect doctor-permission sh -c "setpriv --reuid=65534 --regid=65534 --clear-groups $VT doctor > $S/w.txt; rc=\$?; cat $S/w.txt; [ \$rc = 1 ] && grep -q 'FAIL.*access to /dev/video10' $S/w.txt && grep -q 'usermod -aG video' $S/w.txt"
expect error-unknown-label sh -c "$VT write --device nosuchcam --seconds 1 > $S/w.txt; rc=\$?; cat $S/w.txt; [ \$rc = 2 ] && grep -q 'no v4l2loopback device has that label.*/dev/video10 (livetalk)' $S/w.txt"
expect error-odd-size sh -c "$VT write --device livetalk --size 1281x720 --seconds 1 > $S/w.txt; rc=\$?; cat $S/w.txt; [ \$rc = 2 ] && grep -q 'size 1281x720 is not supported' $S/w.txt"
modprobe vivid n_devs=1 node_types=0x1 vid_cap_nr=3 && \
expect error-not-loopback sh -c "$VT write --device /dev/video3 --seconds 1 > $S/w.txt; rc=\$?; cat $S/w.txt; [ \$rc = 2 ] && grep -q 'not a v4l2loopback device (driver \"vivid\")' $S/w.txt"
rmmod vivid

echo "== YUYV 1280x720 on \"livetalk\" (exclusive_caps=1) t=$(t)"
start_writer yuyv livetalk yuyv 1280x720
if wait_ready /dev/video10 1280 720; then
  pass yuyv-writer-ready; head -1 "$WLOG"
  # 0.13+ reports readers with V4L2_EVENT_PRI_CLIENT_USAGE; 0.12 has no such event
  case $VERSION in 0.12*) want=usage=scan;; *) want=usage=events;; esac
  expect usage-source-fits-version grep -q "^OPENED.* $want" "$WLOG"
  expect yuyv-frame-rate sh -c "v4l2-ctl -d /dev/video10 --get-parm | tee /dev/stderr | grep -q 'Frames per second: 30.000'"
  readers yuyv /dev/video10 yuyv 1280 720
  expect error-busy sh -c "$VT write --device /dev/video10 --seconds 1 > $S/w.txt; rc=\$?; cat $S/w.txt; [ \$rc = 2 ] && grep -q 'is busy' $S/w.txt"
else fail yuyv-writer-ready "$(cat "$WLOG")"; fi
stop_writer yuyv-writer-clean-exit

echo "== a second writer session on the exclusive device t=$(t)"
case $VERSION in
  0.12*) expect restart-locked-out-explained sh -c "$VT write --device livetalk --seconds 1 > $S/w.txt; rc=\$?; cat $S/w.txt; [ \$rc = 2 ] && grep -q 'no longer accepts a writer.*modprobe -r v4l2loopback' $S/w.txt"
         expect reload-module reload_module ;;
  *) expect restart-writer sh -c "$VT write --device livetalk --seconds 2 > $S/w.txt; rc=\$?; cat $S/w.txt; [ \$rc = 0 ] && grep -q '^OPENED' $S/w.txt" ;;
esac

echo "== I420 1280x720 on \"livetalk\" t=$(t)"
start_writer i420 livetalk i420 1280x720
if wait_ready /dev/video10 1280 720; then pass i420-writer-ready; readers i420 /dev/video10 i420 1280 720
else fail i420-writer-ready "$(cat "$WLOG")"; fi
stop_writer i420-writer-clean-exit

echo "== \"livetalk shared\" (exclusive_caps=0): a reader that opens before the producer t=$(t)"
python3 $S/early_reader.py /dev/video11 640 360 yuyv $CAP/early.raw 10 >$S/early.out 2>&1 &
R=$!
sleep 2
start_writer shared "livetalk shared" yuyv 640x360
if wait $R; then expect early-reader-frames python3 $S/check_frames.py raw $CAP/early.raw yuyv 640 360 --min-frames 10
else fail early-reader-frames "$(cat $S/early.out)"; fi
case $VERSION in   # before 0.13 the open handle counts as a reader; from 0.13 streaming readers count
  0.12*) expect early-reader-counted-as-watching sh -c "sed -n '2p' $WLOG | grep -q 'DEMAND watching'" ;;
esac

echo "== 100 reader open/close cycles with the producer running t=$(t)"
start=$(t); bad=0
for i in $(seq 100); do
  timeout 20 v4l2-ctl -d /dev/video11 --stream-mmap --stream-count=1 --stream-to=/tmp/cycle.raw 2>/dev/null
  [ "$(stat -c %s /tmp/cycle.raw 2>/dev/null)" = "$(frame_size yuyv 640 360)" ] || bad=$((bad+1))
done
echo "100 cycles in $(awk -v a="$start" -v b="$(t)" 'BEGIN { printf "%.1f", b - a }') s, $bad without a whole frame"
if [ $bad = 0 ] && kill -0 $WPID && ! grep -q '^ERROR' "$WLOG"; then pass hundred-open-close-cycles
else fail hundred-open-close-cycles "$bad cycles without a frame; writer: $(grep ERROR "$WLOG")"; fi
expect after-cycles-frames python3 $S/check_frames.py raw /tmp/cycle.raw yuyv 640 360

echo "== the engine pauses when the last reader leaves, and resumes for the next t=$(t)"
if wait_log 'ENGINE paused' 10; then
  sleep 2  # no reader now: the last lines must say idle/paused
  tail -n 2 "$WLOG"
  expect idle-after-last-reader sh -c "grep -E '^(DEMAND|ENGINE)' $WLOG | tail -n 2 | tr '\n' ' ' | grep -q 'DEMAND idle.*ENGINE paused'"
  paused_before=$(grep -c 'ENGINE paused' "$WLOG"); resumed_before=$(grep -c 'ENGINE resumed' "$WLOG")
  expect reader-after-pause sh -c "timeout 60 v4l2-ctl -d /dev/video11 --stream-mmap --stream-count=45 --stream-to=$CAP/resume.raw && \
      python3 $S/check_frames.py raw $CAP/resume.raw yuyv 640 360 --min-frames 45 --progress"
  expect engine-resumed-for-reader test "$(grep -c 'ENGINE resumed' "$WLOG")" -gt "$resumed_before"
  expect engine-paused-again sh -c "i=0; until [ \$(grep -c 'ENGINE paused' $WLOG) -gt $paused_before ]; do i=\$((i+1)); [ \$i -gt 50 ] && exit 1; sleep 0.2; done"
else fail engine-paused "$(tail -5 "$WLOG")"; fi
grep -E '^(OPENED|DEMAND|ENGINE)' "$WLOG" | tail -n 12
stop_writer shared-writer-clean-exit

echo "== the real livetalk binary: livetalk run --camera (CPU avatar, persona kai) t=$(t)"
# kai's background is #ece2d0: the camera's top-left corner must show it (composed backdrop
# or the avatar's own background), and the picture must change over time (the avatar moves).
"$S/livetalk" run --no-preview --no-control --persona kai --camera "livetalk shared" --camera-size 640x360 \
    --seconds 60 >"$S/livetalk-run.log" 2>&1 &
LT=$!
# The reader opens once livetalk has configured the device (it speaks its greeting with
# espeak-ng first, which takes seconds under emulation).
i=0; until grep -q "camera livetalk shared" "$S/livetalk-run.log"; do
  i=$((i+1)); [ $i -gt 600 ] && break; kill -0 $LT 2>/dev/null || break; sleep 0.2; done
expect livetalk-run-camera sh -c "timeout 90 ffmpeg -nostdin -hide_banner -loglevel error -f v4l2 -i /dev/video11 -frames:v 45 \
    -f rawvideo -pix_fmt rgb24 -y $CAP/livetalk-run.rgb && python3 -c '
import sys
w, h = 640, 360
data = open(sys.argv[1], \"rb\").read()
n = len(data) // (w * h * 3)
assert n >= 45, n
frames = [data[i * w * h * 3:(i + 1) * w * h * 3] for i in range(n)]
r, g, b = frames[-1][0:3]
assert abs(r - 0xec) < 24 and abs(g - 0xe2) < 24 and abs(b - 0xd0) < 24, (r, g, b)
assert max(frames[-1]) - min(frames[-1]) > 100, \"a flat picture\"
assert len(set(frames)) > 1, \"the picture never changes\"
print(n, \"frames, corner\", (r, g, b), len(set(frames)), \"distinct\")
' $CAP/livetalk-run.rgb"
kill $LT 2>/dev/null; wait $LT 2>/dev/null
grep -q "camera livetalk shared" "$S/livetalk-run.log" || fail livetalk-run-log "$(tail -3 $S/livetalk-run.log)"

echo "== the \"me\" persona: ffmpeg's test picture as the webcam, flipped with the avatar on one camera t=$(t)"
# A third loopback device plays the user's webcam (ffmpeg writes a green picture into it);
# livetalk (built with --features webcam) reads it through nokhwa as persona "me" and writes the
# avatar camera "livetalk shared"; the reader must see kai, then the webcam, then kai again.
if "$S/livetalk" run --help | grep -q -- --hotkeys && [ -n "$(ls $S/presets-me 2>/dev/null)" ]; then
  i=0; until rmmod v4l2loopback 2>/dev/null; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 0.5; done
  modprobe v4l2loopback devices=3 video_nr=10,11,12 \
      card_label="livetalk,livetalk shared,webcam" exclusive_caps=1,0,0 max_buffers=2
  ffmpeg -nostdin -hide_banner -loglevel error -re -f lavfi -i color=c=0x30c050:size=640x360:rate=30 \
      -pix_fmt yuyv422 -f v4l2 /dev/video12 >"$S/webcam-writer.log" 2>&1 &
  FW=$!
  mkdir -p /tmp/rt && chmod 700 /tmp/rt
  XDG_RUNTIME_DIR=/tmp/rt "$S/livetalk" run --no-preview --persona kai --presets "$S/presets-me" --camera "livetalk shared" \
      --camera-size 640x360 --hotkeys off --seconds 240 >"$S/livetalk-me.log" 2>&1 &
  LT=$!
  i=0; until grep -q "control API on" "$S/livetalk-me.log"; do
    i=$((i+1)); [ $i -gt 600 ] && break; kill -0 $LT 2>/dev/null || break; sleep 0.2; done
  # grab NAME PERSONA [FRAMES]: 3 s (or FRAMES) from the avatar camera (nobody reads in between, so the engine idles and
  # resumes: the last frame must show PERSONA, and no frame may be black), checked by check_persona.py
  grab() { timeout 90 ffmpeg -nostdin -hide_banner -loglevel error -f v4l2 -i /dev/video11 -frames:v ${3:-90} \
      -f rawvideo -pix_fmt rgb24 -y "$CAP/me-$1.rgb" && python3 "$S/check_persona.py" "$CAP/me-$1.rgb" 640 360 "$2"; }
  switch_to() { XDG_RUNTIME_DIR=/tmp/rt "$S/livetalk" ctl switch "$1" && i=0 && \
      until XDG_RUNTIME_DIR=/tmp/rt "$S/livetalk" ctl status | grep -q "\"persona\": *\"$1\""; do
        i=$((i+1)); [ $i -gt 150 ] && return 1; sleep 0.2; done && sleep 1; }
  expect me-avatar-first grab avatar kai
  expect me-switch-to-webcam switch_to me
  # Emulated, the engine resumes slowly and the 9-frame fade takes seconds: 6 s of frames.
  expect me-webcam-passed-through grab webcam webcam 180
  expect me-switch-back switch_to kai
  expect me-avatar-again grab again kai
  # `persona new --camera` takes its photo from the same webcam (a flat picture: no face, centre crop).
  expect persona-new-camera sh -c "$S/livetalk persona new snap --camera /dev/video12 --dir /tmp/snap > $S/snap.txt 2>&1; rc=\$?; \
      cat $S/snap.txt; [ \$rc = 0 ] && grep -q 'took a 640x360 picture' $S/snap.txt && grep -q 'no face found' $S/snap.txt && \
      [ -s /tmp/snap/snap.png ] && grep -q 'image = \"snap.png\"' /tmp/snap/snap.toml"
  grep -E "hotkey|webcam|error" "$S/livetalk-me.log" | tail -5
  kill $LT $FW 2>/dev/null; wait $LT $FW 2>/dev/null
else fail me-persona "this livetalk has no webcam support or presets-me is missing"; fi

kill $MONITOR 2>/dev/null
echo "$PASSED passed, $FAILED failed${FAILED_NAMES:+ (failed:$FAILED_NAMES)} t=$(t)"
[ $FAILED = 0 ]
