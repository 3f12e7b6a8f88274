#!/usr/bin/env bash
# Installs the Python oracle stack that regenerates tests/fixtures (not needed to build or test).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python3 -m pip install -r "$here/requirements.txt"
