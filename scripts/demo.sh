#!/usr/bin/env bash
# Installs openk into .venv and records a dataset from the simulated OpenK arm.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/openk record --config_path=config/record_sim.yaml "$@"
