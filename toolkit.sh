#!/usr/bin/env bash
# One entry point that sets everything up on a fresh Debian machine, then runs the toolkit.
#
#   ./toolkit.sh export --target raspberry-pi-4     # the main job on the bundled demo teacher + data
#   ./toolkit.sh test                               # the test suite (what CI runs)
#   ./toolkit.sh <any toolkit command ...>          # e.g. profiles list, distill ..., validate ...
#
# Set-up (idempotent, skipped when already done):
#   - system packages (root only; otherwise the exact sudo command is printed): qemu-user, mmdebstrap, the aarch64
#     cross compiler and qemu's plugin header (scripts/install-emulator-deps.sh); kotlin + chromium for the tests;
#   - .venv with Python 3.11: torch 2.13.0 (CPU wheel) FIRST, then this package and its pinned dependencies.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV=.venv
STAMP=$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-12)

system_packages() {
  local want="$1"
  local missing=""
  for p in $want; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "toolkit.sh: missing system packages:$missing" >&2
    echo "  install them with: sudo apt-get install -y$missing && sudo scripts/install-emulator-deps.sh" >&2
    return 1
  fi
  echo "toolkit.sh: installing system packages:$missing"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

setup_system() {
  if [ "$(id -u)" = 0 ]; then
    scripts/install-emulator-deps.sh
  elif [ ! -f /usr/local/include/qemu-plugin/qemu-plugin.h ]; then
    echo "toolkit.sh: the emulator needs root set-up once: sudo scripts/install-emulator-deps.sh" >&2
  fi
  system_packages "$1"
}

setup_python() {
  [ -f "$STAMP" ] && return 0
  echo "toolkit.sh: creating $VENV (torch 2.13.0 CPU first, then the pinned stack; a few minutes)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first: any other version would pull gigabytes of CUDA packages.
  "$VENV/bin/python" -m pip install -q torch==2.13.0
  "$VENV/bin/python" -m pip install -q -e ".[test]"
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
}

case "${1:-}" in
  test)
    shift
    setup_system "qemu-user mmdebstrap arch-test g++-aarch64-linux-gnu kotlin chromium"
    setup_python
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  "" | -h | --help)
    sed -n 2,14p "$0"
    ;;
  *)
    setup_system "qemu-user mmdebstrap arch-test g++-aarch64-linux-gnu"
    setup_python
    exec "$VENV/bin/toolkit" "$@"
    ;;
esac
