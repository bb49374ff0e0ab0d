#!/usr/bin/env bash
# Fetches the Debian guest kernel (vmlinuz) and the pvpanic modules used by
# the bundled test guest (internal/testguest), and caches them in
#   ${ACPIDIAG_CACHE:-$HOME/.cache/acpidiag}/kernel/
# with a manifest (kernel/manifest) that testguest.Kernel() reads.
#
# Idempotent: when the cache is complete a second run does nothing and says
# so. Set ACPIDIAG_KERNEL_PACKAGE=linux-image-6.1.0-N-amd64 to pin a package
# instead of the one linux-image-amd64 depends on. Needs apt-get and dpkg-deb;
# no root needed unless the apt lists are missing (then apt-get update runs).
set -euo pipefail

log() { echo "fetch-kernel: $*"; }
die() { echo "fetch-kernel: error: $*" >&2; exit 1; }

cache="${ACPIDIAG_CACHE:-$HOME/.cache/acpidiag}"
dest="$cache/kernel"
manifest="$dest/manifest"

# complete reports whether the manifest exists and every file it names is there.
complete() {
	[ -s "$manifest" ] || return 1
	local key val
	while IFS='=' read -r key val; do
		case "$key" in
		vmlinuz | module) [ -s "$dest/$val" ] || return 1 ;;
		esac
	done <"$manifest"
	grep -q '^vmlinuz=' "$manifest" && grep -q '^module=' "$manifest"
}

if complete; then
	log "cache is complete, nothing to do: $(grep '^version=' "$manifest" | cut -d= -f2) in $dest"
	exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found (a Debian-based host is needed to fetch the guest kernel)"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found"

# find the package: linux-image-amd64 depends on linux-image-6.1.0-N-amd64.
pkg_of_meta() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}
pkg="${ACPIDIAG_KERNEL_PACKAGE:-}"
if [ -z "$pkg" ]; then
	pkg="$(pkg_of_meta || true)"
	if [ -z "$pkg" ]; then
		log "apt lists missing or stale, running apt-get update"
		SUDO=""
		[ "$(id -u)" -eq 0 ] || SUDO=sudo
		$SUDO apt-get update -q >/dev/null
		pkg="$(pkg_of_meta || true)"
	fi
	[ -n "$pkg" ] || die "cannot find the kernel package linux-image-amd64 depends on (apt-cache depends linux-image-amd64)"
fi
log "kernel package: $pkg"

work="$(mktemp -d "${TMPDIR:-/tmp}/acpidiag-kernel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" # apt-get download runs as _apt when root

log "downloading $pkg (apt-get download)"
(cd "$work" && apt-get download -q "$pkg" >/dev/null) || die "apt-get download $pkg failed"
deb="$(ls "$work"/*.deb 2>/dev/null | head -n1)"
[ -n "$deb" ] || die "apt-get download produced no .deb in $work"
log "extracting $(basename "$deb") ($(du -h "$deb" | cut -f1))"
dpkg-deb -x "$deb" "$work/x"

vmlinuz="$(ls "$work"/x/boot/vmlinuz-* 2>/dev/null | head -n1)"
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $pkg"
version="${vmlinuz##*/vmlinuz-}"
moddir="$work/x/lib/modules/$version/kernel/drivers/misc/pvpanic"
[ -d "$moddir" ] || die "no pvpanic module directory lib/modules/$version/kernel/drivers/misc/pvpanic in $pkg"

mkdir -p "$dest"
tmpman="$dest/manifest.tmp"
{
	echo "# written by scripts/fetch-kernel.sh; read by internal/testguest"
	echo "version=$version"
	echo "package=$pkg"
	echo "vmlinuz=vmlinuz-$version"
} >"$tmpman"
cp "$vmlinuz" "$dest/vmlinuz-$version"
log "kernel: $dest/vmlinuz-$version"
# pvpanic.ko is the core the others depend on: list it first (load order).
n=0
for name in pvpanic pvpanic-mmio pvpanic-pci; do
	f="$(ls "$moddir/$name".ko* 2>/dev/null | head -n1 || true)"
	[ -n "$f" ] || continue
	mkdir -p "$dest/modules"
	cp "$f" "$dest/modules/"
	echo "module=modules/$(basename "$f")" >>"$tmpman"
	log "module: $dest/modules/$(basename "$f")"
	n=$((n + 1))
done
[ "$n" -gt 0 ] || die "no pvpanic*.ko* in $moddir"
mv "$tmpman" "$manifest"
log "done: $version cached in $dest"
