#!/usr/bin/env bash
# Installs everything the tests need and runs them all: formatting and lints, Rust tests,
# Python tests (simulators over ptys, peer clients, the lerobot 0.6.1 oracle, CLI, Hub).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh --test
OPENK_ORACLE_PYTHON="$(scripts/oracle-venv.sh | tail -n 1)"
export OPENK_ORACLE_PYTHON

echo "== rustfmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
echo "== ruff"
.venv/bin/ruff check python tests benches
.venv/bin/ruff format --check python tests benches
echo "== cargo test"
cargo test -p openk-core
echo "== pytest"
.venv/bin/python -m pytest tests
