#!/usr/bin/env bash
# Prepares a fresh machine for openk: system packages, a project venv (.venv, Python >= 3.10)
# with openk built from source (Rust toolchain required). Safe to re-run; reuses what exists.
#   scripts/bootstrap.sh          runtime only
#   scripts/bootstrap.sh --test   plus test tools and system packages the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
[[ "${1:-}" == "--test" ]] && with_test=1

need_apt=()
if [[ $with_test == 1 ]]; then
  command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)   # FFmpeg libraries for torchcodec (oracle)
  command -v tmux >/dev/null || need_apt+=(tmux)       # the terminal test drives `openk record`
  command -v chromium >/dev/null || need_apt+=(chromium)             # `openk view` browser test
  command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
fi
if [[ ${#need_apt[@]} -gt 0 ]]; then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "bootstrap: installing ${need_apt[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python="${OPENK_PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
extras="."
[[ $with_test == 1 ]] && extras=".[test]"
# Editable: Python sources stay live; the native module is rebuilt by re-running this script.
.venv/bin/python -m pip install --quiet -e "$extras"
