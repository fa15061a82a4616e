#!/usr/bin/env bash
# Side by side on one GPU, in one run: `livetalk bench --engine livetalk` and the official LiveTalk
# PyTorch pipeline (random weights, bf16, 512x512, 4 steps + refresh, KV window 15 / sink 9, steady
# state), then both fps figures and their ratio. Setup and the exact device call: docs/PERFORMANCE.md.
#
# Usage: scripts/bench-vs-reference.sh [--blocks N] [--decoders taehv,wan] [--bin PATH] [--tiny]
#   --bin     our binary (default $LIVETALK_BIN, else gpu/livetalk.gz unpacked (not with --tiny),
#             else target/release/livetalk)
#   --tiny    CPU smoke test of the script itself: tiny models, 64x64; the ratio means nothing
# Environment: PYTHON (default python3), OUT (a folder for the log; default /tmp).
# Machine-readable lines: OURS_RESULT, REFERENCE_RESULT (one per decoder), COMPARE (JSON each).
set -uo pipefail

blocks=8
decoders=taehv,wan
bin=${LIVETALK_BIN:-}
tiny=0
while [ $# -gt 0 ]; do
  case "$1" in
    --blocks) blocks=$2; shift 2 ;;
    --decoders) decoders=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --tiny) tiny=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench-vs-reference: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
py=${PYTHON:-python3}
log_dir=${OUT:-/tmp}
log="$log_dir/bench-vs-reference.log"
: >"$log"

if [ ! -f ref/LiveTalk/scripts/inference_example.py ]; then
  echo "bench-vs-reference: ref/LiveTalk is missing; unpack the reference there first (docs/PERFORMANCE.md)" >&2
  exit 2
fi

# Python wheels the GPU machine lacks travel in .whl/ (none are needed with torch 2.11 +
# transformers 5.x: the stand-ins in scripts/reference_shims.py cover the rest).
if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/ref-site .whl/*.whl \
    || { echo "bench-vs-reference: installing .whl/ failed" >&2; exit 2; }
  export PYTHONPATH=/tmp/ref-site${PYTHONPATH:+:$PYTHONPATH}
fi

if [ -z "$bin" ]; then
  if [ "$tiny" = 0 ] && [ -f gpu/livetalk.gz ]; then
    mkdir -p /tmp/bench-vs-reference
    bin=/tmp/bench-vs-reference/livetalk
    gunzip -c gpu/livetalk.gz >"$bin" && chmod +x "$bin"
  else
    bin=target/release/livetalk
  fi
fi
launch=()
[ "$tiny" = 0 ] && [ -f gpu/with-cuda-libs.sh ] && launch=(bash gpu/with-cuda-libs.sh)

if [ "$tiny" = 1 ]; then
  ours_args=(--device cpu --side 64 --dit-config fixtures/dit.config.json)
  ref_args=(--tiny --device cpu)
else
  ours_args=(--device cuda --side 512)
  ref_args=(--side 512)
fi

# Peak GPU memory as nvidia-smi sees it (whole process, both programs measured the same way).
mem_pid=
mem_start() {
  mem_file=$(mktemp)
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  mem_base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 100 >"$mem_file" 2>/dev/null &
  mem_pid=$!
}
mem_stop() {  # prints the peak above the baseline in MiB, or null
  if [ -n "$mem_pid" ]; then
    kill "$mem_pid" 2>/dev/null; wait "$mem_pid" 2>/dev/null; mem_pid=
    sort -n "$mem_file" | tail -1 | awk -v b="${mem_base:-0}" 'NF {print $1 - b; found=1} END {if (!found) print "null"}'
  else
    echo null
  fi
  rm -f "$mem_file"
}

echo "== ours: $bin bench --engine livetalk ${ours_args[*]} --blocks $blocks" | tee -a "$log"
mem_start
ours_out=$("${launch[@]}" "$bin" bench --engine livetalk "${ours_args[@]}" --blocks "$blocks" 2>&1)
ours_rc=$?
ours_mem=$(mem_stop)
printf '%s\n' "$ours_out" | tee -a "$log"
# Ours with the Wan VAE too when the reference measures it: each ratio compares the same decoder.
ours_wan_out=
if [[ ",$decoders," == *,wan,* ]]; then
  echo "== ours: $bin bench --engine livetalk ${ours_args[*]} --blocks $blocks --decoder wan-vae" | tee -a "$log"
  ours_wan_out=$("${launch[@]}" "$bin" bench --engine livetalk "${ours_args[@]}" --blocks "$blocks" --decoder wan-vae 2>&1)
  printf '%s\n' "$ours_wan_out" | tee -a "$log"
fi

echo "== reference: $py scripts/reference_bench.py ${ref_args[*]} --blocks $blocks --decoders $decoders" | tee -a "$log"
mem_start
ref_out=$(PYTHONUNBUFFERED=1 "$py" scripts/reference_bench.py "${ref_args[@]}" --blocks "$blocks" --decoders "$decoders" 2>&1)
ref_rc=$?
ref_mem=$(mem_stop)
printf '%s\n' "$ref_out" | tee -a "$log" | grep -v '^REFERENCE_RESULT ' | tail -25
printf '%s\n' "$ref_out" | grep '^REFERENCE_RESULT '

OURS_OUT=$ours_out OURS_WAN_OUT=$ours_wan_out OURS_RC=$ours_rc OURS_MEM=$ours_mem REF_OUT=$ref_out REF_RC=$ref_rc REF_MEM=$ref_mem \
"$py" - <<'EOF' | tee -a "$log"
import json, os, re, sys

def number(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None

def mib(v):
    return None if v in ("", "null") else float(v)

ours_text = os.environ["OURS_OUT"]
ours = dict(
    fps=number(r"video fps\s+([\d.]+)", ours_text),
    first_frame_ms=number(r"first frame\s+([\d.]+) ms", ours_text),
    dit_ms_per_pass=number(r"\(([\d.]+) ms per pass\)", ours_text),
    decode_ms=number(r"TAEHV decode\s+([\d.]+) ms", ours_text),
    peak_gpu_mib_nvidia_smi=mib(os.environ["OURS_MEM"]),
    exit_code=int(os.environ["OURS_RC"]),
)
ours_wan_text = os.environ.get("OURS_WAN_OUT", "")
ours_fps = {"taehv": ours["fps"], "wan": number(r"video fps\s+([\d.]+)", ours_wan_text)}
if ours_wan_text:
    ours["fps_wan_vae"] = ours_fps["wan"]
    ours["decode_ms_wan_vae"] = number(r"Wan VAE decode\s+([\d.]+) ms", ours_wan_text)
print("OURS_RESULT " + json.dumps(ours))
refs = {}
for line in os.environ["REF_OUT"].splitlines():
    if line.startswith("REFERENCE_RESULT "):
        r = json.loads(line.split(" ", 1)[1])
        refs[r["decoder"]] = r
compare = dict(ours_fps=ours["fps"], reference_peak_gpu_mib_nvidia_smi=mib(os.environ["REF_MEM"]),
               reference_exit_code=int(os.environ["REF_RC"]))
for name, r in refs.items():
    compare[f"reference_fps_{name}"] = r["fps"]
    mine = ours_fps.get(name)
    compare[f"ours_fps_{name}"] = mine
    compare[f"ratio_{name}"] = mine / r["fps"] if mine and r["fps"] else None
print("COMPARE " + json.dumps(compare))
if ours["fps"] and "taehv" in refs:
    r = refs["taehv"]
    print(f"livetalk {ours['fps']:.1f} fps vs reference {r['fps']:.1f} fps (TAEHV) = {ours['fps'] / r['fps']:.2f}x; "
          f"first frame {ours['first_frame_ms']} ms vs first block {r['first_block_ms']:.0f} ms; "
          f"DiT pass {ours['dit_ms_per_pass']} ms vs {r['dit_ms_per_pass']:.1f} ms")
sys.exit(0 if ours["fps"] and refs else 1)
EOF
