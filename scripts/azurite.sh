#!/usr/bin/env bash
# Installs the Azurite table service (npm package azurite, pinned) that the
# metrics tests start on loopback, into
#   ${ACPIDIAG_CACHE:-$HOME/.cache/acpidiag}/azurite/node_modules
# (outside the repository, so node_modules never lands in git). Idempotent.
set -euo pipefail
version=3.35.0
cache="${ACPIDIAG_CACHE:-$HOME/.cache/acpidiag}"
dest="$cache/azurite"
bin="$dest/node_modules/.bin/azurite-table"
if [ -x "$bin" ] && grep -q "\"version\": \"$version\"" "$dest/node_modules/azurite/package.json" 2>/dev/null; then
	echo "azurite: $version is installed in $dest"
	exit 0
fi
command -v npm >/dev/null || { echo "azurite: npm not found (scripts/deps.sh installs it)" >&2; exit 1; }
mkdir -p "$dest"
[ -f "$dest/package.json" ] || echo '{"private": true}' >"$dest/package.json"
echo "azurite: installing azurite@$version into $dest"
(cd "$dest" && npm install --no-audit --no-fund --save-exact --silent "azurite@$version")
[ -x "$bin" ] || { echo "azurite: $bin missing after npm install" >&2; exit 1; }
echo "azurite: installed $bin"
