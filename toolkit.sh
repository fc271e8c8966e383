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
# Each set-up step prints one line; its apt/pip output goes to a log under .cache/setup/ (shown live with -v or
# --verbose among the arguments; its last lines are printed if the step fails).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV=.venv
STAMP=$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-12)
LOGS=.cache/setup
VERBOSE=""
for arg in "$@"; do
  case "$arg" in -v | --verbose) VERBOSE=1 ;; esac
done

# logged LOG COMMAND...: run a set-up command with its output in $LOGS/LOG (live too with -v); on failure, say which
# log and show its end.
logged() {
  local log="$LOGS/$1"
  shift
  mkdir -p "$LOGS"
  if [ -n "$VERBOSE" ]; then
    "$@" 2>&1 | tee -a "$log"
    return "${PIPESTATUS[0]}"
  fi
  if ! "$@" >>"$log" 2>&1; then
    echo "toolkit.sh: '$*' failed; the end of $log:" >&2
    tail -n 25 "$log" >&2
    return 1
  fi
}

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
  echo "toolkit.sh: installing system packages:$missing (log: $LOGS/apt.log)"
  mkdir -p "$LOGS"
  : >"$LOGS/apt.log"
  logged apt.log env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # shellcheck disable=SC2086
  logged apt.log env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

setup_system() {
  if [ "$(id -u)" = 0 ]; then
    local header=/usr/local/include/qemu-plugin
    local version
    version=$(dpkg-query -W -f '${source:Version}' qemu-user 2>/dev/null || true)
    if [ -z "$version" ] || [ "$(cat "$header/VERSION" 2>/dev/null)" != "$version" ]; then
      echo "toolkit.sh: installing the emulator's dependencies: qemu-user, cross compiler, qemu plugin header" \
           "(log: $LOGS/emulator-deps.log)"
    fi
    mkdir -p "$LOGS"
    : >"$LOGS/emulator-deps.log"
    logged emulator-deps.log scripts/install-emulator-deps.sh  # idempotent: a quick check when all is there
  elif [ ! -f /usr/local/include/qemu-plugin/qemu-plugin.h ]; then
    echo "toolkit.sh: the emulator needs root set-up once: sudo scripts/install-emulator-deps.sh" >&2
  fi
  system_packages "$1"
}

setup_python() {
  [ -f "$STAMP" ] && return 0
  echo "toolkit.sh: creating $VENV (torch 2.13.0 CPU first, then the pinned stack; a few minutes; log: $LOGS/venv.log)"
  mkdir -p "$LOGS"
  : >"$LOGS/venv.log"
  logged venv.log "$PYTHON" -m venv "$VENV"
  logged venv.log "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first: any other version would pull gigabytes of CUDA packages.
  # Byte-compiled once, on every core (pip compiles its ~24,000 modules in one process: ~75 s on 2 cores, ~43 s so).
  # Not left to imports: with PYTHONDONTWRITEBYTECODE set (as on this project's machines) every process would
  # compile torch again, and the test suite took 16 minutes instead of 11.
  logged venv.log "$VENV/bin/python" -m pip install -q --no-compile torch==2.13.0
  logged venv.log "$VENV/bin/python" -m pip install -q --no-compile -e ".[test]"
  # A few vendored files are not Python 3 (pip skips them the same way): compileall's exit status is ignored.
  "$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    >>"$LOGS/venv.log" 2>&1 || true
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
}

case "${1:-}" in
  test)
    shift
    setup_system "qemu-user mmdebstrap arch-test g++-aarch64-linux-gnu kotlin chromium"
    setup_python
    # Two workers, each taking whole test files (module fixtures are built once per file): much of the suite waits
    # on subprocesses, qemu and compilers, so two files at a time fill the machine's cores better than one.
    exec "$VENV/bin/python" -m pytest -q -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
    ;;
  "" | -h | --help)
    sed -n 2,13p "$0"
    ;;
  *)
    setup_system "qemu-user mmdebstrap arch-test g++-aarch64-linux-gnu"
    setup_python
    exec "$VENV/bin/toolkit" "$@"
    ;;
esac
