#!/usr/bin/env bash
# The environment the LLaMA-Factory end-to-end test runs in: LLaMA-Factory with the torch it is known to train
# with, plus this project and its test dependencies. It is about 8 GB and takes minutes to build, so it is kept
# in a cache outside the clone and only refreshed (this project reinstalled in place) on later runs.
#   .ci/llamafactory-env.sh          build or refresh it
#   .ci/llamafactory-env.sh --path   print where it is
set -euo pipefail
cd "$(dirname "$0")/.."

PINS=(llamafactory==0.9.5 torch==2.9.1 torchvision==0.24.1 'torchaudio==2.9.*')
PY="$(python3 -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"
KEY="$(printf '%s\n' "${PINS[@]}" "$PY" | sha256sum | cut -c1-12)"
VENV="${CFGTUNE_CI_CACHE:-$HOME/.cache/cfgtune-ci}/llamafactory-$KEY"

if [ "${1:-}" = "--path" ]; then
  echo "$VENV"
  exit 0
fi

if [ ! -f "$VENV/.complete" ]; then
  echo "ci: building the LLaMA-Factory environment in $VENV (minutes; cached for later runs)" >&2
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi
# Cached or not, this clone is installed in it (editable), with whatever test dependencies it now names.
"$VENV/bin/pip" install -q "${PINS[@]}" -e '.[test]'
"$VENV/bin/python" -c 'import llamafactory, tuner; print("ci: LLaMA-Factory", llamafactory.__version__)' >&2
touch "$VENV/.complete"
