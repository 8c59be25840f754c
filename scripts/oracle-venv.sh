#!/usr/bin/env bash
# Creates (or reuses) the lerobot 0.6.1 oracle: a Python 3.12 venv that the tests call in a
# subprocess to prove our datasets and simulators against the real lerobot. It lives outside the
# checkout so it survives between runs; a marker file records a finished, matching install.
# Prints the venv's python path on the last line of stdout.
set -euo pipefail

LEROBOT_VERSION="0.6.1"
venv="${OPENK_ORACLE_VENV:-$HOME/.cache/openk/oracle/lerobot-${LEROBOT_VERSION}-py312}"
marker="$venv/.openk-oracle-ready"
# deepdiff: lerobot's motor bus imports it but lerobot[dataset] does not install it.
# training: `lerobot-train` (accelerate, wandb), which the policy tests use to train a tiny ACT.
# async: grpcio for lerobot's policy_server / robot_client, which the plugin tests run.
# openk itself is not installed here: the tests run it from the checkout with
# PYTHONPATH=<checkout>/python (the abi3 native module that scripts/bootstrap.sh built works
# on 3.12 too), so the venv never holds a stale copy and one venv serves every checkout.
want="lerobot[dataset,training,async]==${LEROBOT_VERSION} feetech-servo-sdk pydamiao pyserial deepdiff"

# `pip install 'openk[policy]'` must resolve beside lerobot (e.g. one huggingface_hub both
# accept): pip resolves this checkout's extra in the venv without installing or compiling
# anything (maturin writes the metadata only), once per pyproject.toml.
checkout="$(cd "$(dirname "$0")/.." && pwd)"
check_policy_extra() {
  local stamp
  stamp="$venv/.openk-policy-extra-$(sha256sum "$checkout/pyproject.toml" | cut -c1-16)"
  [[ -f "$stamp" ]] && return 0
  if ! "$venv/bin/python" -m pip install --dry-run --quiet "$checkout[policy]" >&2; then
    echo "oracle-venv: pip cannot install openk[policy] beside lerobot ${LEROBOT_VERSION}" \
      "(see above); fix the dependencies in pyproject.toml" >&2
    exit 1
  fi
  touch "$stamp"
}

if [[ -f "$marker" && "$(cat "$marker")" == "$want" && -x "$venv/bin/python" ]]; then
  check_policy_extra
  echo "$venv/bin/python"
  exit 0
fi

# Find a Python 3.12: PATH first, then pyenv's installs (any 3.12 patch version).
py312=""
for candidate in python3.12 $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12.* 2>/dev/null | sort -V -r | sed 's|$|/bin/python3.12|'); do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    py312="$(command -v "$candidate")"
    break
  fi
done
if [[ -z "$py312" ]]; then
  echo "oracle-venv: no Python 3.12 found (install one, e.g. 'pyenv install 3.12')" >&2
  exit 1
fi

# A finished venv with the right lerobot only needs the extras topped up, not a rebuild.
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('lerobot') != '${LEROBOT_VERSION}')" 2>/dev/null; then
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install --quiet $want >&2
  echo "$want" > "$marker"
  check_policy_extra
  echo "$venv/bin/python"
  exit 0
fi

echo "oracle-venv: building $venv with $py312 (about 4 minutes, 2.2 GB of downloads)" >&2
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$py312" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install --quiet $want >&2
"$venv/bin/python" -c 'import lerobot, scservo_sdk; from lerobot.datasets.lerobot_dataset import LeRobotDataset' >&2
echo "$want" > "$marker"
check_policy_extra
echo "$venv/bin/python"
