#!/usr/bin/env bash
# Installs the host tools acpidiag uses, from Debian packages, when missing.
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v iasl >/dev/null || need+=(acpica-tools)
command -v acpiexec >/dev/null || need+=(acpica-tools)
[ -e /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
# make + gcc-12 build the test guest's test module (modes oops, hungtask, softlockup) against the kernel headers
command -v make >/dev/null || need+=(make)
command -v gcc-12 >/dev/null || need+=(gcc-12)
# node + npm run Azurite, the table service the metrics tests use (scripts/azurite.sh)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# chromium renders the collector's pages in a headless browser (collector tests)
command -v chromium >/dev/null || need+=(chromium)
here="$(cd "$(dirname "$0")" && pwd)"
if [ ${#need[@]} -eq 0 ]; then
  echo "deps: qemu-system-x86, acpica-tools and ovmf are present"
  bash "$here/azurite.sh"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "deps: installing ${need[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
bash "$here/azurite.sh"
