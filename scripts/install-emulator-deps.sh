#!/bin/sh
# Install what the emulated ARM device needs on a Debian 12 (bookworm) host, as root. Idempotent: run it again freely.
#
#   sudo scripts/install-emulator-deps.sh
#
# Installs:
#   qemu-user              the DYNAMIC qemu-aarch64 (the static one in qemu-user-static cannot load TCG plugins)
#   mmdebstrap, arch-test  build the arm64 rootfs without emulation (--variant=extract)
#   gcc, g++               host builds: the x86_64 pte_runner and the qemu plugin
#   g++-aarch64-linux-gnu  cross-builds the aarch64 pte_runner
#   llvm-19                llvm-mca / llvm-mc: the cycle estimate times each emulated block with the core's scheduling
#                          model (LLVM >= 17 has the Neoverse-N1 model the Cortex-A76 profiles use; llvm-14 also works,
#                          with the Cortex-A57 model for every core). Without it latency falls back to instructions.
#   qemu-plugin.h          qemu's plugin API header, which no Debian binary package ships: it is copied out of the
#                          Debian source package of the INSTALLED qemu (so the API version matches) to
#                          /usr/local/include/qemu-plugin/. License: GPL-2.0-or-later (qemu's COPYING is copied beside).
# Not needed: binfmt-support / binfmt_misc (qemu is always started explicitly), chroot, bind mounts.
# Afterwards, `python -m toolkit.emulate` builds the rootfs, the plugin and the aarch64 runner (~1 min, cached).
set -eu

if [ "$(id -u)" != 0 ]; then
  echo "install-emulator-deps.sh: run as root (sudo $0)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
packages="qemu-user mmdebstrap arch-test gcc g++ g++-aarch64-linux-gnu xz-utils ca-certificates llvm-19"
missing=""
for p in $packages; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update -q
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing
fi

header_dir=/usr/local/include/qemu-plugin
version=$(dpkg-query -W -f '${source:Version}' qemu-user)
if [ -f "$header_dir/qemu-plugin.h" ] && [ "$(cat "$header_dir/VERSION" 2>/dev/null)" = "$version" ]; then
  echo "qemu-plugin.h for qemu $version already in $header_dir"
  exit 0
fi

# Fetch Debian's qemu source (~24 MB) through a deb-src entry and package lists used for this call only: the host's
# apt configuration stays as it is.
work=$(mktemp -d)
chmod 755 "$work"  # apt's sandbox user (_apt) must be able to write the downloads
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
# The deb-src entries mirror this machine's own Debian sources (whatever mirror it is configured with).
mkdir -p "$work/parts"
: > "$work/src.list"
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$work/parts/debian-src.sources"
fi
if [ -f /etc/apt/sources.list ]; then
  grep -E '^deb .*debian' /etc/apt/sources.list | sed 's/^deb /deb-src /' >> "$work/src.list" || true
fi
apt_opts="-o Dir::Etc::SourceList=$work/src.list -o Dir::Etc::SourceParts=$work/parts -o Dir::State::Lists=$work/lists"
# shellcheck disable=SC2086
apt-get $apt_opts update -q
cd "$work"
# shellcheck disable=SC2086
apt-get $apt_opts source --download-only -q "qemu=$version"
orig=$(ls qemu_*.orig.tar.xz)
tar -xJf "$orig" --wildcards '*/include/qemu/qemu-plugin.h' '*/COPYING'
mkdir -p "$header_dir"
cp qemu-*/include/qemu/qemu-plugin.h "$header_dir/qemu-plugin.h"
cp qemu-*/COPYING "$header_dir/COPYING"
echo "$version" > "$header_dir/VERSION"
echo "installed qemu-plugin.h for qemu $version into $header_dir"
