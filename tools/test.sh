#!/usr/bin/env bash
# Sets up, builds and runs every test dsrt has on this machine (CI runs this through .ci/run):
#   1. Release build with -Werror, all ctest suites (Check unit tests, conformance, golden, CLI tests);
#   2. ASan + UBSan build, the same suites;
#   3. the HIP backend alone (-DDSRT_HIP=ON, CUDA off, no tests): libdsrt and dsrt compiled for gfx90a
#      with Debian's hipcc, then `dsrt devices` must say in one line that no HIP device is present
#      (CUDA and HIP are also compiled by builds 1 and 2 when their toolkits are found).
# Ends with one line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
total_pass=0
total_fail=0
failed_steps=()

step() { echo; echo "==== $*"; }

run_ctest() { # dir label
  local dir=$1 label=$2 log
  log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure --timeout 1500 -j "$jobs") 2>&1 | tee "$log"
  local line pass fail n
  line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$log" | tail -1)
  if [ -z "$line" ]; then
    echo "test.sh: $label: ctest printed no summary" >&2
    total_fail=$((total_fail + 1))
    failed_steps+=("$label")
  else
    fail=$(echo "$line" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
    n=$(echo "$line" | sed -E 's/.* failed out of ([0-9]+).*/\1/')
    pass=$((n - fail))
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    [ "$fail" -eq 0 ] || failed_steps+=("$label")
  fi
  rm -f "$log"
}

build() { # dir label cmake-args...
  local dir=$1 label=$2
  shift 2
  if cmake -S . -B "$dir" -G Ninja "$@" >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; false; }; then
    grep -E "^-- (dsrt|  DSRT_)" "$dir.configure.log" || true
    if cmake --build "$dir" -j "$jobs"; then return 0; fi
  fi
  echo "test.sh: $label build failed" >&2
  total_fail=$((total_fail + 1))
  failed_steps+=("$label build")
  return 1
}

step "setup"
tools/setup.sh || { echo "test.sh: setup failed" >&2; echo "0 passed, 1 failed"; exit 1; }

step "release build (-Werror) and tests"
mkdir -p build
if build build "release" -DCMAKE_BUILD_TYPE=Release -DDSRT_WERROR=ON; then
  run_ctest build "release tests"
fi

step "sanitizer build (ASan + UBSan) and tests"
mkdir -p build-asan
if build build-asan "sanitizer" -DCMAKE_BUILD_TYPE=Debug -DDSRT_SANITIZE=ON -DDSRT_WERROR=ON; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest build-asan "sanitizer tests"
fi

step "HIP compile-only build (libdsrt and dsrt, -DDSRT_HIP=ON) and the no-device line"
mkdir -p build-hip
if build build-hip "HIP" -DCMAKE_BUILD_TYPE=Release -DDSRT_WERROR=ON -DDSRT_HIP=ON -DDSRT_CUDA=OFF \
     -DDSRT_BUILD_TESTS=OFF; then
  devices=$(build-hip/dsrt devices 2>&1)
  rc=$?
  hip_lines=$(printf '%s\n' "$devices" | grep -E '^hip: ')
  echo "$hip_lines"
  # one line: "hip: no device (<reason>)" here, "hip: N device(s)" on a machine with an AMD GPU
  if [ $rc -eq 0 ] && [ "$(printf '%s\n' "$hip_lines" | grep -c .)" -eq 1 ] &&
     printf '%s\n' "$hip_lines" | grep -qE '^hip: (no device \(.+\)|[0-9]+ devices?)$'; then
    total_pass=$((total_pass + 1))
  else
    echo "test.sh: dsrt devices (rc $rc) did not report the HIP backend in one line:" >&2
    printf '%s\n' "$devices" >&2
    total_fail=$((total_fail + 1))
    failed_steps+=("HIP devices line")
  fi
fi

echo
if [ ${#failed_steps[@]} -gt 0 ]; then echo "failed: ${failed_steps[*]}"; fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
