#!/usr/bin/env bash
# Fetches the Debian guest kernel (vmlinuz), the pvpanic and virtio_balloon
# (with its virtio PCI transport) modules used by
# the bundled test guest (internal/testguest), and caches them in
#   ${ACPIDIAG_CACHE:-$HOME/.cache/acpidiag}/kernel/
# with a manifest (kernel/manifest) that testguest.Kernel() reads.
#
# Idempotent: when the cache is complete a second run does nothing and says
# so. Set ACPIDIAG_KERNEL_PACKAGE=linux-image-6.1.0-N-amd64 to pin a package
# instead of the one linux-image-amd64 depends on. Needs apt-get and dpkg-deb;
# no root needed unless the apt lists are missing (then apt-get update runs).
#
# Optionally (when make and gcc-12 are installed) it also builds the tiny
# oops module internal/testguest/oopsmod against the matching Debian headers
# (linux-headers-*, linux-kbuild-*, extracted, not installed) into
# kernel/extra/oops.ko, for the guest's acpidiag.mode=oops. Without them the
# cache is still complete and the oops mode is unavailable. To rebuild the
# cache, remove the kernel/ directory.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

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
		vmlinuz | module | oops_module) [ -s "$dest/$val" ] || return 1 ;;
		esac
	done <"$manifest"
	grep -q '^vmlinuz=' "$manifest" && grep -q '^module=' "$manifest" &&
		grep -q '^module=modules/virtio_balloon' "$manifest" # caches from before the balloon modules are refreshed
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
# copy-then-rename: a QEMU reading the cached kernel meanwhile never sees a partial file
cp "$vmlinuz" "$dest/.vmlinuz.tmp" && mv "$dest/.vmlinuz.tmp" "$dest/vmlinuz-$version"
log "kernel: $dest/vmlinuz-$version"
# pvpanic.ko is the core the others depend on: list it first (load order).
n=0
for name in pvpanic pvpanic-mmio pvpanic-pci; do
	f="$(ls "$moddir/$name".ko* 2>/dev/null | head -n1 || true)"
	[ -n "$f" ] || continue
	mkdir -p "$dest/modules"
	cp "$f" "$dest/modules/.tmp" && mv "$dest/modules/.tmp" "$dest/modules/$(basename "$f")"
	echo "module=modules/$(basename "$f")" >>"$tmpman"
	log "module: $dest/modules/$(basename "$f")"
	n=$((n + 1))
done
[ "$n" -gt 0 ] || die "no pvpanic*.ko* in $moddir"

# The stock virtio_balloon driver and the virtio PCI transport it needs
# (modules in Debian's kernel), so the guest reports its memory statistics
# to the host (package metrics). The guest loads every module in /modules.
vdir="$work/x/lib/modules/$version/kernel/drivers/virtio"
for name in virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon; do
	f="$(ls "$vdir/$name".ko* 2>/dev/null | head -n1 || true)"
	if [ -z "$f" ]; then
		# built into the kernel (=y): nothing to ship
		grep -q "^kernel/drivers/virtio/$name.ko" "$work/x/lib/modules/$version/modules.builtin" 2>/dev/null ||
			die "no $name module in $vdir and not built in"
		continue
	fi
	cp "$f" "$dest/modules/.tmp" && mv "$dest/modules/.tmp" "$dest/modules/$(basename "$f")"
	echo "module=modules/$(basename "$f")" >>"$tmpman"
	log "module: $dest/modules/$(basename "$f")"
done

# build_oops builds internal/testguest/oopsmod against the Debian headers of
# $version into $dest/extra/oops.ko. Returns non-zero (with a reason logged)
# when it cannot.
build_oops() {
	local src="$here/../internal/testguest/oopsmod"
	[ -f "$src/acpidiag_oops.c" ] || { log "oops module: skipped: $src/acpidiag_oops.c not found"; return 1; }
	if ! command -v make >/dev/null || ! command -v gcc-12 >/dev/null; then
		log "oops module: skipped: needs make and gcc-12 (apt-get install make gcc-12); acpidiag.mode=oops will be unavailable"
		return 1
	fi
	local hdr="linux-headers-$version" deps
	deps="$(apt-cache depends "$hdr" 2>/dev/null | sed -n 's/^ *Depends: \(linux-\(headers\|kbuild\)-[^ ]*\)$/\1/p')"
	log "oops module: downloading $hdr $(echo $deps)"
	mkdir -p "$work/h"
	(cd "$work/h" && apt-get download -q "$hdr" $deps >/dev/null 2>&1) || { log "oops module: skipped: apt-get download $hdr failed"; return 1; }
	local d
	for d in "$work"/h/*.deb; do dpkg-deb -x "$d" "$work/h/root"; done
	local kdir="$work/h/root/usr/src/$hdr"
	[ -f "$kdir/Makefile" ] || { log "oops module: skipped: no $kdir/Makefile"; return 1; }
	# The Debian Makefile includes the -common headers by absolute path.
	sed -i "s|/usr/src/|$work/h/root/usr/src/|g" "$kdir/Makefile"
	mkdir -p "$work/oops"
	cp "$src/acpidiag_oops.c" "$src/Kbuild" "$work/oops/"
	if ! make -C "$kdir" M="$work/oops" modules >"$work/oops/build.log" 2>&1; then
		log "oops module: skipped: build failed:"
		tail -n 20 "$work/oops/build.log" | sed 's/^/fetch-kernel:   /'
		return 1
	fi
	mkdir -p "$dest/extra"
	cp "$work/oops/acpidiag_oops.ko" "$dest/extra/oops.ko"
	echo "oops_module=extra/oops.ko" >>"$tmpman"
	log "oops module: $dest/extra/oops.ko"
}
build_oops || echo "# oops module not built (see fetch-kernel output)" >>"$tmpman"

mv "$tmpman" "$manifest"
log "done: $version cached in $dest"
