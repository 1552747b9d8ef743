#!/usr/bin/env bash
# Installs the Debian 12 packages dsrt needs when they are missing. CI and new users run it (through
# tools/build.sh and tools/test.sh). Needs root or sudo for apt-get; does nothing when all are present.
set -euo pipefail

# build tools and required libraries
pkgs=(build-essential cmake ninja-build pkg-config git python3
      check libsubunit-dev libcjson-dev libpcre2-dev
      # OpenCL: the ICD loader, headers, PoCL (a CPU OpenCL device) and CLBlast
      ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libclblast-dev clinfo
      # NUMA placement and MPI collectives
      libnuma-dev libopenmpi-dev openmpi-bin
      # HIP (AMD): Debian's ROCm 5.2 compiler, runtime headers, device libraries and rocPRIM (the
      # sampling sort), for the compile-only gfx90a build (docs/hip.md)
      hipcc libamdhip64-dev rocm-device-libs librocprim-dev)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#pkgs[@]} Debian packages are installed"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
