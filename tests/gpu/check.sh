#!/usr/bin/env bash
# The GPU check: one prepared run for a machine with an NVIDIA GPU (written for
# the lent H200: PyTorch, CUDA 13 and nvcc there, nothing installable). Run from
# the repository root:   bash tests/gpu/check.sh
# It builds (make -j16 all, CUDA=1), runs the CUDA-vs-CPU parity suites, trains
# resnet18 for 20 steps on GPU and CPU from the same weights, times resnet50
# training and inference beside PyTorch, and prints one short table last. Logs
# and JSON go to $OUT (a temporary folder when unset). Each stage has a time
# cap so the whole run stays under about 8 minutes; a stage that fails or runs
# out of time is reported and the next one still runs.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d /tmp/aviary-gpu-check.XXXXXX)}
mkdir -p "$OUT"
START=$(date +%s)
DEADLINE=$((START + ${CHECK_BUDGET_S:-470}))
PY=${PYTHON:-python3}
declare -a SUMMARY=()

now() { date +%s; }
note() { echo "[$(($(now) - START))s] $*" | tee -a "$OUT/check.log"; }
# cap CAP MIN: seconds for the next stage, never past the deadline; 0 when under MIN remain
cap() {
  local left=$((DEADLINE - $(now)))
  if [ "$left" -lt "$2" ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}
# stage NAME CAP MIN LOG CMD...: runs CMD under timeout, records status and time
stage() {
  local name=$1 want=$2 min=$3 log=$4 c
  shift 4
  c=$(cap "$want" "$min")
  if [ "$c" -eq 0 ]; then
    SUMMARY+=("| $name | skipped (out of time) | - |")
    note "$name: skipped, out of time"
    return 99
  fi
  note "$name (up to ${c}s)"
  local t0=$(now) rc
  timeout --kill-after=5 "$c" "$@" >"$log" 2>&1
  rc=$?
  local dt=$(($(now) - t0)) st
  case $rc in
    0) st=ok ;;
    124 | 137) st="timed out after ${c}s" ;;
    *) st="failed (exit $rc)" ;;
  esac
  LAST_ST=$st LAST_DT=$dt
  SUMMARY+=("| $name | $st | ${dt}s |")
  note "$name: $st in ${dt}s"
  return $rc
}

# ---- environment -----------------------------------------------------------------------
{
  echo "date: $(date -u)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2
  command -v nvcc && nvcc --version | tail -2
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# cuDNN and cuBLAS headers/libraries: the CUDA toolkit's own, else the pip wheels PyTorch uses
CUDA_ROOT=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")}
MAKE_CUDA=()
if [ ! -f "$CUDA_ROOT/include/cudnn.h" ]; then
  PIPNV=$($PY -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0] + "/x"))' 2>/dev/null)
  if [ -n "$PIPNV" ] && [ -f "$PIPNV/cudnn/include/cudnn.h" ]; then
    MERGED=/tmp/aviary-cuda-root
    rm -rf "$MERGED" && mkdir -p "$MERGED/include" "$MERGED/lib64"
    ln -s "$CUDA_ROOT/bin" "$MERGED/bin"
    for d in "$CUDA_ROOT/include" "$PIPNV"/cudnn/include "$PIPNV"/cublas/include "$PIPNV"/cu13/include; do
      [ -d "$d" ] && for f in "$d"/*; do [ -e "$MERGED/include/$(basename "$f")" ] || ln -s "$f" "$MERGED/include/"; done
    done
    for d in "$CUDA_ROOT/lib64" "$PIPNV"/cudnn/lib "$PIPNV"/cublas/lib "$PIPNV"/cu13/lib; do
      [ -d "$d" ] && for f in "$d"/*; do [ -e "$MERGED/lib64/$(basename "$f")" ] || ln -s "$f" "$MERGED/lib64/"; done
    done
    # unversioned names for the linker
    for l in cudnn cublas cublasLt; do
      [ -e "$MERGED/lib64/lib$l.so" ] || { v=$(ls "$MERGED"/lib64/lib$l.so.* 2>/dev/null | head -1); [ -n "$v" ] && ln -s "$v" "$MERGED/lib64/lib$l.so"; }
    done
    MAKE_CUDA=(CUDA_HOME="$MERGED" NVCC="$CUDA_ROOT/bin/nvcc")
    export LD_LIBRARY_PATH="$MERGED/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    note "cuDNN/cuBLAS from the Python wheels under $PIPNV (merged toolkit at $MERGED)"
  else
    note "warning: no cudnn.h under $CUDA_ROOT/include nor in the Python wheels"
  fi
fi

# aviary's Debian build dependencies. Nothing is installed: a carried .gpudeps/ of Debian
# packages (tests/gpu/fetch_deps.sh) is unpacked under /tmp/gpudeps and used from there by the
# build and by aviary's own commands only (PyTorch keeps the system's libraries).
AVENV=()
MAKE_DEPS=()
DEPS=${GPUDEPS_DIR:-.gpudeps}
if ls "$DEPS"/*.deb >/dev/null 2>&1; then
  D=/tmp/gpudeps
  ML=x86_64-linux-gnu
  rm -rf "$D" && mkdir -p "$D"
  for f in "$DEPS"/*.deb; do dpkg -x "$f" "$D" || note "could not unpack $f"; done
  export CPATH="$D/usr/include:$D/usr/include/$ML:$D/usr/include/$ML/openblas-pthread:$D/usr/include/cairo${CPATH:+:$CPATH}"
  DLIBS="$D/usr/lib/$ML:$D/usr/lib/$ML/openblas-pthread:$D/lib/$ML"
  export LIBRARY_PATH="$DLIBS${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export PATH="$PATH:$D/usr/bin"
  AVENV=(env "LD_LIBRARY_PATH=$DLIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "LUA_CPATH_5_4=$D/usr/lib/$ML/lua/5.4/?.so;;")
  MAKE_DEPS=(ONNX_PROTO="$D/usr/include/onnx/onnx.proto" "LUA_INC=-I$D/usr/include/lua5.4")
  note "using the Debian packages carried in $DEPS (unpacked under $D)"
fi
missing=()
for h in lua5.4/lua.h cblas.h turbojpeg.h png.h cjson/cJSON.h protobuf-c/protobuf-c.h cairo/cairo.h \
  readline/readline.h onnx/onnx.proto; do
  found=
  for dir in /usr/include /usr/local/include /usr/include/x86_64-linux-gnu /usr/include/x86_64-linux-gnu/openblas-pthread \
    ${CPATH:+${CPATH//:/ }} ${D:+$D/usr/include/lua5.4}; do
    [ -e "$dir/$h" ] && found=1 && break
  done
  [ -z "$found" ] && missing+=("$h")
done
command -v protoc-c >/dev/null || missing+=(protoc-c)
if [ ${#missing[@]} -gt 0 ]; then note "missing build dependencies: ${missing[*]}"; fi

# ---- 1. build -----------------------------------------------------------------------------
BIN=${AVIARY_BIN:-bin/aviary}
stage "build (make -j16 all, CUDA=1)" 200 60 "$OUT/build.log" "${AVENV[@]}" make -j16 CUDA=1 "${MAKE_CUDA[@]}" "${MAKE_DEPS[@]}" all
BUILD_RC=$?
if [ $BUILD_RC -ne 0 ]; then
  echo "---- build log (last 30 lines) ----"
  tail -30 "$OUT/build.log"
fi
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}

parity_line() { grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$1" | tail -1; }

if [ $BUILD_RC -eq 0 ] && [ -x "$BIN" ]; then
  "${AVENV[@]}" "$BIN" -e 'local av = require "aviary"; print("aviary sees CUDA: " .. tostring(av.cuda.is_available()))' 2>&1 |
    tee -a "$OUT/check.log"
  # ---- 2. parity suites ---------------------------------------------------------------------
  for path in tests/gpu/test_cuda_core.lua tests/gpu/test_cuda_nn.lua tests/lua/test_amp.lua; do
    suite=$(basename "$path" .lua)
    if [ -f "$path" ]; then
      LAST_ST=
      stage "parity $suite" 110 20 "$OUT/$suite.log" "${AVENV[@]}" "$BIN" tests/lua/runner.lua "$path"
      [ "${LAST_ST:-}" ] && SUMMARY[${#SUMMARY[@]} - 1]="| parity $suite | $LAST_ST: $(parity_line "$OUT/$suite.log") | ${LAST_DT}s |"
      grep -E '^not ok' "$OUT/$suite.log" | head -15
    else
      SUMMARY+=("| parity $suite | missing | - |")
    fi
  done
  # ---- 3. training on GPU and CPU from the same weights ------------------------------------
  stage "train_compare resnet18 20 steps" 70 20 "$OUT/train_compare.log" \
    "${AVENV[@]}" "$BIN" tests/gpu/train_compare.lua --steps=20 --threads=16 --out="$OUT/train_compare.json"
  grep -E 'train_compare: (PASS|FAIL|SKIP)' "$OUT/train_compare.log"
  # ---- 4. aviary side of the benchmark -----------------------------------------------------
  stage "bench aviary resnet50" 100 30 "$OUT/bench_aviary.log" \
    "${AVENV[@]}" "$BIN" tests/gpu/bench_gpu.lua --batch=64 --size=224 --steps=8 --warmup=2 --out="$OUT/bench_aviary.json"
  cat "$OUT/bench_aviary.log" | tail -8
else
  SUMMARY+=("| parity, training, aviary bench | not run (no build) | - |")
fi

# ---- 5. PyTorch side (runs even without an aviary build, as the baseline) ---------------------
stage "bench PyTorch resnet50" 80 20 "$OUT/bench_torch.log" \
  $PY tests/gpu/torch_bench_gpu.py --batch 64 --size 224 --steps 8 --warmup 2 --out "$OUT/bench_torch.json"
tail -6 "$OUT/bench_torch.log"

# ---- the table ------------------------------------------------------------------------------
echo
echo "==== aviary GPU check ($(($(now) - START))s; logs in $OUT) ===="
echo "| stage | result | time |"
echo "|---|---|---|"
printf '%s\n' "${SUMMARY[@]}"
grep -hE 'train_compare: (PASS|FAIL)' "$OUT/train_compare.log" 2>/dev/null
echo
if [ -x "$BIN" ]; then
  "${AVENV[@]}" "$BIN" tests/gpu/bench_gpu.lua --report="$OUT/bench_aviary.json,$OUT/bench_torch.json" 2>&1 | tee "$OUT/bench_table.md"
else
  $PY - "$OUT/bench_torch.json" <<'PYEOF' | tee "$OUT/bench_table.md"
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print("no PyTorch results:", e); sys.exit(0)
print("| case | aviary img/s | PyTorch img/s | ratio |\n|---|---|---|---|")
for c in r.get("cases", []):
    print("| %s | n/a | %s | n/a |" % (c["name"], "%.0f" % c["images_per_s"] if "images_per_s" in c else "error"))
PYEOF
fi
