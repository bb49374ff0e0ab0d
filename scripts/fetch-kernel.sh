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
# test module internal/testguest/oopsmod against the matching Debian headers
# (linux-headers-*, linux-kbuild-*, extracted, not installed) into
# kernel/extra/oops.ko, for the guest's acpidiag.mode=oops, hungtask and
# softlockup. Without them the cache is still complete and those modes are
# unavailable. The module is keyed on a SHA-256 of its source
# (kernel/extra/oops.ko.src): when the source changes, a run on a complete
# cache rebuilds only the module. To rebuild the whole cache, remove the
# kernel/ directory.
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

oopssrc="$here/../internal/testguest/oopsmod"

# oops_src_hash prints the SHA-256 of the test module's source (every file
# of oopsmod, by name, in order): the key of kernel/extra/oops.ko.
oops_src_hash() {
	(cd "$oopssrc" && for f in $(ls | LC_ALL=C sort); do
		[ -f "$f" ] || continue
		echo "$f $(wc -c <"$f")"
		cat "$f"
	done) | sha256sum | cut -d' ' -f1
}

# oops_current reports whether the cached module was built from this source.
oops_current() {
	[ -s "$dest/extra/oops.ko" ] && [ "$(cat "$dest/extra/oops.ko.src" 2>/dev/null)" = "$(oops_src_hash)" ]
}

# can_build_oops reports whether the module can be built here.
can_build_oops() {
	[ -f "$oopssrc/acpidiag_oops.c" ] && command -v make >/dev/null && command -v gcc-12 >/dev/null
}

# build_oops builds internal/testguest/oopsmod against the Debian headers of
# $version into $dest/extra/oops.ko (copy-then-rename) and records the
# source hash in $dest/extra/oops.ko.src. Returns non-zero (with a reason
# logged) when it cannot.
build_oops() {
	local src="$oopssrc"
	[ -f "$src/acpidiag_oops.c" ] || { log "oops module: skipped: $src/acpidiag_oops.c not found"; return 1; }
	if ! command -v make >/dev/null || ! command -v gcc-12 >/dev/null; then
		log "oops module: skipped: needs make and gcc-12 (apt-get install make gcc-12); acpidiag.mode=oops, hungtask and softlockup will be unavailable"
		return 1
	fi
	local hdr="linux-headers-$version" deps hash
	hash="$(oops_src_hash)"
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
	# copy-then-rename: a guest build reading the module meanwhile never sees a partial file;
	# the source key is written last, so an interrupted run rebuilds.
	cp "$work/oops/acpidiag_oops.ko" "$dest/extra/.oops.ko.tmp" && mv "$dest/extra/.oops.ko.tmp" "$dest/extra/oops.ko"
	echo "$hash" >"$dest/extra/.oops.ko.src.tmp" && mv "$dest/extra/.oops.ko.src.tmp" "$dest/extra/oops.ko.src"
	log "oops module: $dest/extra/oops.ko (source $hash)"
}

if complete; then
	version="$(grep '^version=' "$manifest" | cut -d= -f2)"
	if oops_current; then
		log "cache is complete, nothing to do: $version in $dest"
		exit 0
	fi
	if ! can_build_oops; then
		if [ -s "$dest/extra/oops.ko" ]; then
			log "warning: $dest/extra/oops.ko was not built from the current internal/testguest/oopsmod and make/gcc-12 are missing: kept as it is (the guest refuses modes it lacks)"
		fi
		log "cache is complete, nothing to do: $version in $dest"
		exit 0
	fi
	# Only the module is stale (or missing): rebuild it, name it in the manifest.
	log "test module source changed (or module missing): rebuilding only $dest/extra/oops.ko"
	work="$(mktemp -d "${TMPDIR:-/tmp}/acpidiag-kernel.XXXXXX")"
	trap 'rm -rf "$work"' EXIT
	chmod 755 "$work"
	build_oops || exit 0
	if ! grep -q '^oops_module=' "$manifest"; then
		{ grep -v '^# oops module not built' "$manifest"; echo "oops_module=extra/oops.ko"; } >"$manifest.tmp"
		mv "$manifest.tmp" "$manifest"
	fi
	log "done: $version cached in $dest"
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

if build_oops; then
	echo "oops_module=extra/oops.ko" >>"$tmpman"
else
	echo "# oops module not built (see fetch-kernel output)" >>"$tmpman"
fi

mv "$tmpman" "$manifest"
log "done: $version cached in $dest"
