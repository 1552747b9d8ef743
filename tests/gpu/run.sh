#!/usr/bin/env bash
# The GPU check, in one script anyone can run on a CUDA machine (or, with --hip, on an AMD GPU machine
# with ROCm: the same checks on the HIP backend, which runs the same kernel sources; docs/hip.md):
#   1. configure and build dsrt with CUDA (-j16) (--hip: with HIP, for the GPUs rocm_agent_enumerator
#      lists unless DSRT_HIP_ARCHS is set),
#   2. list the devices,
#   3. run the unit tests (ctest; test_cuda runs every op on CUDA (--hip: HIP) and on the CPU and compares;
#      on CUDA a second time on the portable paths alone, the code the HIP build runs),
#   4. run test_cuda again under compute-sanitizer (memcheck, then racecheck on the shared-memory kernels;
#      CUDA only),
#   5. run the conformance suite (dsrt conform) and the golden model tests when they exist,
#   6. optionally time the hot ops (--bench),
# then print one summary. Logs go to $DSRT_GPU_LOG (default BUILD/gpu-logs).
#
# usage: tests/gpu/run.sh [--hip] [--no-build] [--no-sanitizer] [--bench] [--build DIR]
# environment: JOBS (16), CUDA_HOME (/usr/local/cuda), ROCM_PATH (/opt/rocm), DSRT_HIP_ARCHS (--hip),
# DSRT_GPU_LOG, extra CMake flags in DSRT_CMAKE_FLAGS, DSRT_SAN_TIMEOUT (seconds per sanitizer run, 600),
# DSRT_SKIP_RACECHECK=1.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BACKEND=cuda
BUILD=
DO_BUILD=1
DO_SAN=1
DO_BENCH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --hip) BACKEND=hip ;;
    --no-build) DO_BUILD=0 ;;
    --no-sanitizer) DO_SAN=0 ;;
    --bench) DO_BENCH=1 ;;
    --build) BUILD=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
JOBS=${JOBS:-16}
BUILD=${BUILD:-$ROOT/build-$BACKEND}
if [ "$BACKEND" = hip ]; then
  ROCM_PATH=${ROCM_PATH:-/opt/rocm}
  export PATH="$PATH:$ROCM_PATH/bin"
  if [ -z "${DSRT_HIP_ARCHS:-}" ] && command -v rocm_agent_enumerator >/dev/null; then
    # the targets of this machine's GPUs (gfx000 is the CPU agent)
    DSRT_HIP_ARCHS=$(rocm_agent_enumerator 2>/dev/null | grep -v '^gfx000$' | sort -u | paste -sd';' -)
  fi
  BACKEND_FLAGS="-DDSRT_HIP=ON -DDSRT_CUDA=OFF${DSRT_HIP_ARCHS:+ -DDSRT_HIP_ARCHS=$DSRT_HIP_ARCHS}"
else
  CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
  export PATH="$CUDA_HOME/bin:$PATH"
  BACKEND_FLAGS="-DDSRT_CUDA=ON"
fi
LOG=${DSRT_GPU_LOG:-$BUILD/gpu-logs}
mkdir -p "$LOG"
declare -a NAMES RESULTS
note() { NAMES+=("$1"); RESULTS+=("$2"); printf '== %-28s %s\n' "$1" "$2"; }
step() { # name, log file, command...
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  local dt=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then note "$name" "PASS (${dt}s)"; else note "$name" "FAIL rc=$rc (${dt}s, see $log)"; fi
  return $rc
}

if [ $DO_BUILD -eq 1 ]; then
  step "configure" "$LOG/configure.log" cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release $BACKEND_FLAGS \
       -DDSRT_WERROR=OFF ${DSRT_CMAKE_FLAGS:-} || { tail -20 "$LOG/configure.log"; exit 1; }
  step "build (-j$JOBS)" "$LOG/build.log" cmake --build "$BUILD" -j "$JOBS" || { grep -E "error" "$LOG/build.log" | head -20; exit 1; }
fi
DSRT=$BUILD/dsrt
TEST_CUDA=$(find "$BUILD" -name test_cuda -type f -perm -u+x | head -1)

if [ "$BACKEND" = cuda ] && command -v nvidia-smi >/dev/null; then nvidia-smi -L >"$LOG/devices.log" 2>&1; fi
if [ "$BACKEND" = hip ] && command -v rocm-smi >/dev/null; then rocm-smi --showproductname >"$LOG/devices.log" 2>&1; fi
step "dsrt devices" "$LOG/devices-dsrt.log" "$DSRT" devices
grep -E "^$BACKEND" "$LOG/devices-dsrt.log"
if grep -q "^$BACKEND: no device" "$LOG/devices-dsrt.log"; then
  note "$BACKEND device" "none: the op checks skip"
fi

step "unit tests (ctest)" "$LOG/ctest.log" ctest --test-dir "$BUILD" --output-on-failure -j 4
if [ -n "$TEST_CUDA" ]; then
  step "$BACKEND vs cpu ops" "$LOG/test_cuda.log" "$TEST_CUDA" --backend "$BACKEND"
  sed -n '/test_cuda summary/,$p' "$LOG/test_cuda.log"
  if [ "$BACKEND" = cuda ] && ! grep -q "^cuda: no device" "$LOG/devices-dsrt.log"; then
    # The code paths the HIP build runs (no tensor-core kernels, no vendor BLAS), checked on this GPU.
    step "cuda portable paths (as HIP)" "$LOG/test_cuda_portable.log" env DSRT_CUDA_NO_MMA=1 DSRT_CUDA_NO_BLAS=1 \
      DSRT_CUDA_FP8_GEMM=own "$TEST_CUDA" --backend cuda
    sed -n '/test_cuda summary/,$p' "$LOG/test_cuda_portable.log"
  fi
fi

SAN=$(command -v compute-sanitizer || true)
if [ $DO_SAN -eq 1 ] && [ "$BACKEND" = hip ]; then
  note "compute-sanitizer" "SKIP (CUDA only)"
elif [ $DO_SAN -eq 1 ] && [ -n "$TEST_CUDA" ] && ! grep -q "^cuda: no device" "$LOG/devices-dsrt.log"; then
  if [ -n "$SAN" ]; then
    # memcheck: out-of-bounds and misaligned accesses, API errors; CK_FORK=no keeps one process. The
    # collectives are left out: libnccl's start-up probes (cudaFuncGetAttributes on kernels built for
    # other architectures) report API errors inside NCCL that are not ours; so is graph_unjoined, which
    # provokes the runtime's unjoined-capture error on purpose.
    step "compute-sanitizer memcheck" "$LOG/sanitizer-memcheck.log" timeout "${DSRT_SAN_TIMEOUT:-600}" env CK_FORK=no \
      DSRT_TEST_CUDA_SKIP=collectives,graph_unjoined \
      "$SAN" --tool memcheck --error-exitcode 99 --print-limit 20 "$TEST_CUDA"
    grep -E "ERROR SUMMARY|Invalid|out of bounds" "$LOG/sanitizer-memcheck.log" | head -5
    [ "${DSRT_SKIP_RACECHECK:-0}" = 1 ] || {
    # racecheck: shared-memory hazards of the tiled kernels (slower: a subset of cases).
    step "compute-sanitizer racecheck" "$LOG/sanitizer-racecheck.log" timeout "${DSRT_SAN_TIMEOUT:-600}" env CK_FORK=no \
      DSRT_TEST_CUDA_ONLY="mla_decode,indexer,linear_grouped,topk" \
      "$SAN" --tool racecheck --racecheck-report hazard --error-exitcode 99 --print-limit 20 "$TEST_CUDA"
    grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$LOG/sanitizer-racecheck.log" | head -3
    }
  else
    note "compute-sanitizer" "SKIP (not installed)"
  fi
fi

# Conformance of every op against the CPU, with the whole-model golden cases (tests/data).
if grep -q "^$BACKEND: no device" "$LOG/devices-dsrt.log"; then
  note "dsrt conform" "SKIP (no $BACKEND device)"
else
  step "dsrt conform ($BACKEND)" "$LOG/conform.log" "$DSRT" conform --backend "$BACKEND" --golden "$ROOT/tests/data" \
       --report "$LOG/conform.json" --html "$LOG/conform.html"
  tail -3 "$LOG/conform.log"
  # The golden model tests (f32 vs transformers, fp8 vs the official code, decode/chunk/batch/graph checks).
  TEST_MODEL=$(find "$BUILD" -name test_model -type f -perm -u+x | head -1)
  if [ -n "$TEST_MODEL" ]; then
    step "golden model tests ($BACKEND:0)" "$LOG/golden.log" env DSRT_TEST_DEVICE="$BACKEND:0" "$TEST_MODEL"
    grep -E "on $BACKEND|Checks" "$LOG/golden.log"
  fi
fi

if [ $DO_BENCH -eq 1 ]; then
  step "bench --ops ($BACKEND)" "$LOG/bench-ops.log" "$DSRT" bench --ops --backend "$BACKEND"
  cat "$LOG/bench-ops.log"
  for b in 1 8 64; do
    step "bench slice batch $b" "$LOG/bench-slice-$b.log" "$DSRT" bench --synthetic slice --backend "$BACKEND" --batch $b \
         --prompt 64 --gen 32 --context 4096
    grep -E "decode|roofline|bandwidth" "$LOG/bench-slice-$b.log"
  done
fi

echo
echo "GPU check summary ($(date -u +%Y-%m-%dT%H:%MZ), $(grep -m1 -E "^ +$BACKEND:0" "$LOG/devices-dsrt.log" | sed 's/^ *//'))"
fail=0
for i in "${!NAMES[@]}"; do
  printf '  %-30s %s\n' "${NAMES[$i]}" "${RESULTS[$i]}"
  case "${RESULTS[$i]}" in FAIL*) fail=1 ;; esac
done
exit $fail
