#!/usr/bin/env bash
# Installs everything the tests need and runs them all: formatting and lints, the stub check,
# Rust tests, Python tests (simulators over ptys, peer clients, the lerobot 0.6.1 oracle, CLI,
# Hub). Each stage prints its duration so the CI time budget can be watched.
#
#   scripts/test.sh                 one run (what CI does)
#   scripts/test.sh --under-load    two CPU-bound processes run beside the test stages
#   scripts/test.sh --repeat N      the test stages (cargo test, pytest) N times, stopping at
#                                   the first failure; combines with --under-load
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/test.sh [--under-load] [--repeat N]" >&2
  exit 2
}
under_load=false
repeat=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --under-load) under_load=true ;;
    --repeat)
      [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || {
        echo "scripts/test.sh: --repeat needs a number of runs (1 or more)" >&2
        usage
      }
      repeat=$2
      shift
      ;;
    --repeat=*)
      repeat=${1#--repeat=}
      [[ $repeat =~ ^[1-9][0-9]*$ ]] || {
        echo "scripts/test.sh: --repeat needs a number of runs (1 or more)" >&2
        usage
      }
      ;;
    *)
      echo "scripts/test.sh: unknown option $1" >&2
      usage
      ;;
  esac
  shift
done

suite_start=$SECONDS
stage_name=""
stage_start=$SECONDS
# Closes the running stage (printing its duration) and opens the next one, if named.
stage() {
  if [[ -n $stage_name ]]; then
    echo "== $stage_name: $((SECONDS - stage_start)) s"
  fi
  stage_name="${1:-}"
  stage_start=$SECONDS
  [[ -n $stage_name ]] && echo "== $stage_name"
  return 0
}
# The CPU burners of --under-load (killed on exit, whatever the outcome).
burners=()
stop_burners() {
  if [[ ${#burners[@]} -gt 0 ]]; then
    kill "${burners[@]}" 2>/dev/null || true
    wait "${burners[@]}" 2>/dev/null || true
    burners=()
  fi
}
# On failure too, so the log shows how long the failing stage ran.
trap 'stage; stop_burners; echo "== total: $((SECONDS - suite_start)) s"' EXIT

stage "bootstrap"
scripts/bootstrap.sh --test
stage "oracle venv"
OPENK_ORACLE_PYTHON="$(scripts/oracle-venv.sh | tail -n 1)"
export OPENK_ORACLE_PYTHON

stage "rustfmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
stage "ruff"
.venv/bin/ruff check python tests benches plugins
.venv/bin/ruff format --check python tests benches plugins
stage "stubtest"
# The stub must match what the native module really exports.
.venv/bin/python -m mypy.stubtest openk._core
stage "mypy"
# The Python package type-checks (strict, see pyproject.toml) against that stub.
.venv/bin/python -m mypy python/openk

if $under_load; then
  # A busy machine: two processes that never sleep, beside every test stage.
  for _ in 1 2; do
    (while :; do :; done) &
    burners+=("$!")
  done
  echo "== under load: CPU burners ${burners[*]}"
fi
for run in $(seq "$repeat"); do
  [[ $repeat -gt 1 ]] && echo "== run $run of $repeat"
  stage "cargo test"
  # One test at a time: the integration tests run real-time simulators and loops, and ten of
  # them at once on a 2-core machine turn scheduling delays into spurious bus timeouts.
  cargo test -p openk-core -- --test-threads=1
  stage "pytest"
  .venv/bin/python -m pytest tests
done
