#!/usr/bin/env bash
# The GPU check, in one script anyone can run on a CUDA machine:
#   1. configure and build dsrt with CUDA (-j16),
#   2. list the devices,
#   3. run the unit tests (ctest; test_cuda runs every op on CUDA and on the CPU and compares),
#   4. run test_cuda again under compute-sanitizer (memcheck, then racecheck on the shared-memory kernels),
#   5. run the conformance suite (dsrt conform) and the golden model tests when they exist,
#   6. optionally time the hot ops (--bench),
# then print one summary. Logs go to $DSRT_GPU_LOG (default BUILD/gpu-logs).
#
# usage: tests/gpu/run.sh [--no-build] [--no-sanitizer] [--bench] [--build DIR]
# environment: JOBS (16), CUDA_HOME (/usr/local/cuda), DSRT_GPU_LOG, extra CMake flags in DSRT_CMAKE_FLAGS,
# DSRT_SAN_TIMEOUT (seconds per sanitizer run, 600), DSRT_SKIP_RACECHECK=1.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build-cuda
DO_BUILD=1
DO_SAN=1
DO_BENCH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) DO_BUILD=0 ;;
    --no-sanitizer) DO_SAN=0 ;;
    --bench) DO_BENCH=1 ;;
    --build) BUILD=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
JOBS=${JOBS:-16}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH="$CUDA_HOME/bin:$PATH"
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
  step "configure" "$LOG/configure.log" cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDSRT_CUDA=ON \
       -DDSRT_WERROR=OFF ${DSRT_CMAKE_FLAGS:-} || { tail -20 "$LOG/configure.log"; exit 1; }
  step "build (-j$JOBS)" "$LOG/build.log" cmake --build "$BUILD" -j "$JOBS" || { grep -E "error" "$LOG/build.log" | head -20; exit 1; }
fi
DSRT=$BUILD/dsrt
TEST_CUDA=$(find "$BUILD" -name test_cuda -type f -perm -u+x | head -1)

if command -v nvidia-smi >/dev/null; then nvidia-smi -L >"$LOG/devices.log" 2>&1; fi
step "dsrt devices" "$LOG/devices-dsrt.log" "$DSRT" devices
grep -E "^cuda" "$LOG/devices-dsrt.log"
if grep -q "^cuda: no device" "$LOG/devices-dsrt.log"; then
  note "CUDA device" "none: the op checks skip"
fi

step "unit tests (ctest)" "$LOG/ctest.log" ctest --test-dir "$BUILD" --output-on-failure -j 4
if [ -n "$TEST_CUDA" ]; then
  step "cuda vs cpu ops" "$LOG/test_cuda.log" "$TEST_CUDA"
  sed -n '/test_cuda summary/,$p' "$LOG/test_cuda.log"
fi

SAN=$(command -v compute-sanitizer || true)
if [ $DO_SAN -eq 1 ] && [ -n "$TEST_CUDA" ] && ! grep -q "^cuda: no device" "$LOG/devices-dsrt.log"; then
  if [ -n "$SAN" ]; then
    # memcheck: out-of-bounds and misaligned accesses, API errors; CK_FORK=no keeps one process. The
    # collectives are left out: libnccl's start-up probes (cudaFuncGetAttributes on kernels built for
    # other architectures) report API errors inside NCCL that are not ours.
    step "compute-sanitizer memcheck" "$LOG/sanitizer-memcheck.log" timeout "${DSRT_SAN_TIMEOUT:-600}" env CK_FORK=no \
      DSRT_TEST_CUDA_SKIP=collectives \
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
step "dsrt conform (cuda)" "$LOG/conform.log" "$DSRT" conform --backend cuda --golden "$ROOT/tests/data" \
     --report "$LOG/conform.json" --html "$LOG/conform.html"
tail -3 "$LOG/conform.log"
# The golden model tests (f32 vs transformers, fp8 vs the official code, decode/chunk/batch/graph checks).
TEST_MODEL=$(find "$BUILD" -name test_model -type f -perm -u+x | head -1)
if [ -n "$TEST_MODEL" ]; then
  step "golden model tests (cuda:0)" "$LOG/golden.log" env DSRT_TEST_DEVICE=cuda:0 "$TEST_MODEL"
  grep -E "on cuda|Checks" "$LOG/golden.log"
fi

if [ $DO_BENCH -eq 1 ]; then
  step "bench --ops (cuda)" "$LOG/bench-ops.log" "$DSRT" bench --ops --backend cuda
  cat "$LOG/bench-ops.log"
  for b in 1 8 64; do
    step "bench slice batch $b" "$LOG/bench-slice-$b.log" "$DSRT" bench --synthetic slice --backend cuda --batch $b \
         --prompt 64 --gen 32 --context 4096
    grep -E "decode|roofline|bandwidth" "$LOG/bench-slice-$b.log"
  done
fi

echo
echo "GPU check summary ($(date -u +%Y-%m-%dT%H:%MZ), $(grep -m1 -E '^ +cuda:0' "$LOG/devices-dsrt.log" | sed 's/^ *//'))"
fail=0
for i in "${!NAMES[@]}"; do
  printf '  %-30s %s\n' "${NAMES[$i]}" "${RESULTS[$i]}"
  case "${RESULTS[$i]}" in FAIL*) fail=1 ;; esac
done
exit $fail
