#!/usr/bin/env bash
# install-deps.sh — installs the Debian packages orpo-hpc needs to build and test, when missing, and, where the CUDA
# toolkit is present, the cuDNN frontend's headers (the PyPI wheel nvidia-cudnn-frontend, headers only, into the
# user's python: the fused attention of the CUDA build, CMake ORPO_CUDNN; the build works without them).
# Idempotent: does nothing when everything is present. On a machine without apt-get it prints what is
# missing and how to get it, and exits 1.
#   scripts/install-deps.sh [extra-package ...]
set -euo pipefail

# the cuDNN frontend headers (CMakeLists.txt finds include/cudnn_frontend.h in the site-packages of the python3 on
# PATH), only with the CUDA toolkit; a failure is a warning (the CUDA build then has no cuDNN attention)
FE_VERSION=1.32.0
cudnn_frontend() {
  local nvcc
  nvcc=$(command -v nvcc 2>/dev/null || true)
  [ -n "$nvcc" ] || { [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc; } || true
  [ -n "$nvcc" ] && command -v python3 >/dev/null 2>&1 || return 0
  python3 - <<'PY' >/dev/null 2>&1 && return 0
import os, site, sysconfig, sys
d = [site.getusersitepackages()] + [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
try:
    d += site.getsitepackages()
except Exception:
    pass
sys.exit(0 if any(os.path.isfile(os.path.join(p, "include", "cudnn_frontend.h")) for p in d) else 1)
PY
  echo "orpo-hpc: installing nvidia-cudnn-frontend $FE_VERSION (pip --user, headers only): cuDNN's fused attention" \
       "of the CUDA build (ORPO_CUDNN)" >&2
  if ! python3 -m pip install --user --quiet --disable-pip-version-check --no-deps \
       "nvidia-cudnn-frontend==$FE_VERSION" >/dev/null 2>&1; then
    echo "orpo-hpc: warning: pip could not install nvidia-cudnn-frontend; the CUDA build will have no cuDNN" \
         "attention (install the wheel, or set -DCUDNN_FRONTEND_INCLUDE=DIR of cudnn_frontend.h)" >&2
  fi
  return 0
}

# openmpi-bin / libopenmpi-dev: the MPI backend of data parallelism and its tests (ctest -L dist); the build
# works without them (the dist tests then say SKIP)
pkgs=(build-essential cmake pkg-config libhdf5-dev hdf5-tools libyaml-dev libstb-dev libcjson-dev
      libopenblas-dev zlib1g-dev libzstd-dev libsnappy-dev libjpeg-dev openmpi-bin libopenmpi-dev "$@")

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then cudnn_frontend; exit 0; fi

if ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<MSG
orpo-hpc: missing build dependencies (Debian names): ${missing[*]}
Install their equivalents with your package manager: HDF5 >= 1.10 (C + high-level, with h5dump),
libyaml, stb (stb_image), cJSON, OpenBLAS, zlib, zstd, snappy, libjpeg(-turbo), CMake >= 3.22, a C11 compiler and
pkg-config. Optional: an MPI (OpenMPI: data parallel on CPUs), the CUDA toolkit (nvcc, cuBLAS, NCCL) found on PATH.
MSG
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "orpo-hpc: missing packages ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "orpo-hpc: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
cudnn_frontend
