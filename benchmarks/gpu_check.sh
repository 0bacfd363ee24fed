#!/usr/bin/env bash
# Every GPU measurement of issue 21 in one call, in under 4 minutes on one GPU, as JSON files.
#
#   benchmarks/gpu_check.sh [OUT_DIR]        # default: $OUT (the device tool's folder), else gpu_check_out/
#
# Stages, most important first; each has its own time limit and the whole run a deadline
# (DEADLINE_S, default 230 s): a stage that would not fit is recorded as skipped, one that fails
# keeps its log, and the others still run. Results: OUT_DIR/<stage>.json (+ .log), and
# OUT_DIR/summary.json with each stage's status and seconds.
#   latency_paper   configs/paper_scale.yaml, random weights, neural vocoder: speech step vs the
#                   compiled bare backbone step, first audio and RTF of one stream, 32 streams in
#                   one batch (each one's RTF)               [targets: <= 1.3x, <= 50 ms, <= 0.07, <= 0.5]
#   train_loop      `flowomni train configs/paper_scale.yaml` frames/s vs its model step, and the
#                   step's full/backbone ratio (bf16)         [targets: >= 0.8, <= 1.3]
#   serve_load      WebSocket load on the GPU (tiny random model): 1 vs 8 clients, first packet,
#                   underruns
#   latency_tiny    configs/tiny.yaml shapes: the launch-bound case the issue started from
#
# Needs python with torch (CUDA), transformers, accelerate, numpy, scipy, pyyaml, safetensors,
# soundfile and, for serve_load, fastapi, uvicorn, websockets. Missing ones are installed from
# WHEELS (default shared/wheels) when that folder exists; make it on a machine with the project's
# venv:  .venv/bin/pip download --no-deps -d shared/wheels soundfile cffi pycparser fastapi \
#        starlette uvicorn websockets h11 pydantic pydantic-core annotated-types typing-inspection anyio sniffio
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_check_out}}"
PY="${PYTHON:-python3}"
DEADLINE_S="${DEADLINE_S:-230}"
WHEELS="${WHEELS:-shared/wheels}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
START=$(date +%s)
SUMMARY="$OUT_DIR/summary.tsv"
: > "$SUMMARY"

missing=$("$PY" - <<'EOF'
import importlib.util
mods = ["torch", "transformers", "accelerate", "numpy", "scipy", "yaml", "safetensors", "soundfile", "fastapi",
        "uvicorn", "websockets", "tqdm"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ] && [ -d "$WHEELS" ]; then
  echo "installing from $WHEELS: $missing"
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" $(echo "$missing" | sed 's/yaml/pyyaml/') \
    > "$OUT_DIR/pip.log" 2>&1 || echo "pip install failed (see pip.log)"
fi
"$PY" - > "$OUT_DIR/environment.json" <<'EOF'
import json, platform, torch
d = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    d.update(gpu=p.name, memory_gb=round(p.total_memory / 2**30, 1))
print(json.dumps(d))
EOF
cat "$OUT_DIR/environment.json"

stage() {  # stage NAME BUDGET_S COMMAND...: run it with what is left of the deadline, JSON to NAME.json
  local name=$1 budget=$2
  shift 2
  local left=$(( DEADLINE_S - ($(date +%s) - START) ))
  local limit=$(( budget < left ? budget : left ))
  if [ "$limit" -lt 20 ]; then
    printf '%s\tskipped\t0\tdeadline\n' "$name" >> "$SUMMARY"
    echo "== $name: skipped (no time left)"
    return
  fi
  echo "== $name (up to ${limit}s): $*"
  local t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" > "$OUT_DIR/$name.json" 2> "$OUT_DIR/$name.log"
  local rc=$? took=$(( $(date +%s) - t0 ))
  local status=ok
  [ $rc -ne 0 ] && status=failed
  [ $rc -eq 124 ] && status=timeout
  printf '%s\t%s\t%s\trc=%s\n' "$name" "$status" "$took" "$rc" >> "$SUMMARY"
  echo "   $status in ${took}s"
  [ $rc -ne 0 ] && tail -5 "$OUT_DIR/$name.log"
}

stage latency_paper 150 "$PY" benchmarks/latency.py --config configs/paper_scale.yaml --device cuda \
  --vocoder models/vocoder --repeats 1 --ratio-steps 40 --max-steps 120 --streams 32 --json
stage train_loop 110 "$PY" benchmarks/train_loop.py --config configs/paper_scale.yaml --device cuda \
  --batch 16 --steps 30 --repeats 4 --question-seconds 4 --answer-seconds 4 --workers 4 --json
stage serve_load 45 "$PY" benchmarks/serve_load.py --random --device cuda --clients 1 8 --turns 2 \
  --max-steps 60 --set max_concurrent=8 --set max_waiting=8 --set vad.kind=energy --json
stage latency_tiny 40 "$PY" benchmarks/latency.py --config configs/tiny.yaml --device cuda \
  --repeats 1 --ratio-steps 30 --max-steps 80 --json

"$PY" - "$OUT_DIR" > "$OUT_DIR/summary.json" <<'EOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
stages = {}
for line in (out / "summary.tsv").read_text().splitlines():
    name, status, seconds, note = line.split("\t")
    stages[name] = {"status": status, "seconds": int(seconds), "note": note}
print(json.dumps({"stages": stages, "environment": json.loads((out / "environment.json").read_text() or "{}")},
                 indent=1))
EOF
cat "$OUT_DIR/summary.json"
echo "total $(( $(date +%s) - START ))s; results in $OUT_DIR"
