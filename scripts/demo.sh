#!/usr/bin/env bash
# demo.sh — what `make demo` runs after the build: the main job on the embedded demo.
# Today: the CLI and a validated demo job (training, checkpoints and metrics arrive with later work items).
set -euo pipefail
bin=${1:-build/release/orpo-hpc}
cd "$(dirname "$0")/.."
"$bin" --version
"$bin" --help
echo
"$bin" device
echo
echo "== validating jobs/demo.yaml"
"$bin" validate jobs/demo.yaml
echo "jobs/demo.yaml is valid."
