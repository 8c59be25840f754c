#!/usr/bin/env bash
# Installs everything the tests need and runs them all: formatting and lints, the stub check,
# Rust tests, Python tests (simulators over ptys, peer clients, the lerobot 0.6.1 oracle, CLI,
# Hub). Each stage prints its duration so the CI time budget can be watched.
set -euo pipefail
cd "$(dirname "$0")/.."

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
# On failure too, so the log shows how long the failing stage ran.
trap 'stage; echo "== total: $((SECONDS - suite_start)) s"' EXIT

stage "bootstrap"
scripts/bootstrap.sh --test
stage "oracle venv"
OPENK_ORACLE_PYTHON="$(scripts/oracle-venv.sh | tail -n 1)"
export OPENK_ORACLE_PYTHON

stage "rustfmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
stage "ruff"
.venv/bin/ruff check python tests benches
.venv/bin/ruff format --check python tests benches
stage "stubtest"
# The stub must match what the native module really exports.
.venv/bin/python -m mypy.stubtest openk._core
stage "mypy"
# The Python package type-checks (strict, see pyproject.toml) against that stub.
.venv/bin/python -m mypy python/openk
stage "cargo test"
# One test at a time: the integration tests run real-time simulators and loops, and ten of
# them at once on a 2-core machine turn scheduling delays into spurious bus timeouts.
cargo test -p openk-core -- --test-threads=1
stage "pytest"
.venv/bin/python -m pytest tests
