#!/usr/bin/env bash
# install-deps.sh — installs the Debian packages orpo-hpc needs to build and test, when missing.
# Idempotent: does nothing when everything is present. On a machine without apt-get it prints what is
# missing and how to get it, and exits 1.
#   scripts/install-deps.sh [extra-package ...]
set -euo pipefail

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
[ ${#missing[@]} -eq 0 ] && exit 0

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
