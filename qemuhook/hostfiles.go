package qemuhook

// The host side of QEMU's file-backed guest memory (the region and the
// ERST store): preallocated before QEMU starts, so a full disk fails the
// start instead of killing QEMU with SIGBUS while the guest writes its
// panic log; and, when QEMU does die of SIGBUS, the likely cause named.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/ssdt"
)

// ErrNoSpace is wrapped by the error of Start (Config.Prepare) when the
// filesystem of a file-backed guest memory has too little free space for
// it, or preallocating it fails with ENOSPC.
var ErrNoSpace = errors.New("not enough free space for QEMU's file-backed guest memory")

// BackingFile is a host file QEMU maps as guest memory.
type BackingFile struct {
	// What names it: "region" (the ivshmem region, or for the fixed
	// placement the whole guest RAM holding it) or "ERST store".
	What string
	Path string
	// Size is the number of bytes QEMU maps.
	Size int64
}

// BackingFiles returns the files QEMU maps as guest memory for c: the
// region backing file (ivshmem: the region's size; fixed placement: the
// guest RAM) and the ERST store, when configured.
func (c Config) BackingFiles() []BackingFile {
	ch := c.channel()
	var out []BackingFile
	if ch.BackingPath != "" {
		size := int64(ch.Region.Size)
		if ch.Region.Placement == ssdt.PlaceFixed {
			size = int64(c.memoryMB()) << 20
		}
		out = append(out, BackingFile{What: "region", Path: ch.BackingPath, Size: size})
	}
	if c.ERSTPath != "" {
		out = append(out, BackingFile{What: "ERST store", Path: c.ERSTPath, Size: ERSTSize})
	}
	return out
}

// allocated returns the bytes of path's blocks on disk (0 if it does not
// exist) and its size.
func allocated(path string) (blocks, size int64, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, 0, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fi.Size(), fi.Size(), nil
	}
	return st.Blocks * 512, fi.Size(), nil
}

// freeBytes returns the space available to an unprivileged writer on the
// filesystem holding dir, and an id of that filesystem.
func freeBytes(dir string) (int64, uint64, error) {
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		return 0, 0, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(sfs.Bavail) * int64(sfs.Bsize), uint64(st.Dev), nil
}

// PreallocateBackingFiles checks that the filesystems of files have room
// for them and preallocates each (fallocate(2); zeros where the
// filesystem cannot), so that QEMU never meets a hole it cannot fill.
// Existing content is kept. Config.Prepare calls it for BackingFiles.
func PreallocateBackingFiles(files []BackingFile) error {
	type fsNeed struct {
		dir   string
		free  int64
		need  int64
		parts []string
	}
	byFS := map[uint64]*fsNeed{}
	for _, f := range files {
		blocks, _, err := allocated(f.Path)
		if err != nil {
			return fmt.Errorf("qemuhook: %s file: %w", f.What, err)
		}
		dir := filepath.Dir(f.Path)
		free, dev, err := freeBytes(dir)
		if err != nil {
			return fmt.Errorf("qemuhook: %s file %s: %w", f.What, f.Path, err)
		}
		n := byFS[dev]
		if n == nil {
			n = &fsNeed{dir: dir, free: free}
			byFS[dev] = n
		}
		if missing := f.Size - blocks; missing > 0 {
			n.need += missing
		}
		n.parts = append(n.parts, fmt.Sprintf("%s %s: %d bytes", f.What, f.Path, f.Size))
	}
	devs := make([]uint64, 0, len(byFS))
	for d := range byFS {
		devs = append(devs, d)
	}
	sort.Slice(devs, func(a, b int) bool { return devs[a] < devs[b] })
	for _, d := range devs {
		n := byFS[d]
		if n.need > n.free {
			return fmt.Errorf("qemuhook: %w: the filesystem of %s has %d bytes free, %d more are needed (%s)",
				ErrNoSpace, n.dir, n.free, n.need, strings.Join(n.parts, "; "))
		}
	}
	for _, f := range files {
		if err := preallocate(f); err != nil {
			return err
		}
	}
	return nil
}

func preallocate(f BackingFile) error {
	fd, err := os.OpenFile(f.Path, os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		return fmt.Errorf("qemuhook: %s file: %w", f.What, err)
	}
	defer fd.Close()
	if fi, err := fd.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("qemuhook: %s file %s is not a regular file", f.What, f.Path)
	}
	err = syscall.Fallocate(int(fd.Fd()), 0, 0, f.Size)
	if errors.Is(err, syscall.EOPNOTSUPP) {
		err = fillZeros(fd, f.Size)
	}
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("qemuhook: %w: preallocating the %s file %s (%d bytes): %v", ErrNoSpace, f.What, f.Path, f.Size, err)
	}
	if err != nil {
		return fmt.Errorf("qemuhook: preallocating the %s file %s (%d bytes): %w", f.What, f.Path, f.Size, err)
	}
	return nil
}

// fillZeros writes zeros over the holes of the first size bytes of f
// (for a filesystem without fallocate); existing data is kept.
func fillZeros(f *os.File, size int64) error {
	zero := make([]byte, 64<<10)
	buf := make([]byte, len(zero))
	for off := int64(0); off < size; off += int64(len(zero)) {
		n := int64(len(zero))
		if off+n > size {
			n = size - off
		}
		got, err := f.ReadAt(buf[:n], off)
		if got == int(n) && err == nil {
			continue // present (zeros or data): keep
		}
		if _, err := f.WriteAt(zero[:n-int64(got)], off+int64(got)); err != nil {
			return err
		}
	}
	return nil
}

// sigbusCause names what most likely made QEMU die of SIGBUS: a backing
// file that was truncated or removed while mapped, or a full filesystem
// under a file with holes. It returns a sentence even when nothing is
// found, since a SIGBUS in QEMU is an access to a file-backed memory.
func sigbusCause(files []BackingFile) string {
	var found []string
	var names []string
	for _, f := range files {
		names = append(names, f.What+" "+f.Path)
		blocks, size, err := allocated(f.Path)
		switch {
		case err != nil:
			found = append(found, fmt.Sprintf("%s file %s: %v", f.What, f.Path, err))
			continue
		case size == 0 && blocks == 0:
			if _, err := os.Stat(f.Path); errors.Is(err, os.ErrNotExist) {
				found = append(found, fmt.Sprintf("the %s file %s was removed", f.What, f.Path))
				continue
			}
		}
		if size < f.Size {
			found = append(found, fmt.Sprintf("the %s file %s is %d bytes, QEMU mapped %d: it was truncated while QEMU ran", f.What, f.Path, size, f.Size))
			continue
		}
		if blocks < f.Size {
			free, _, err := freeBytes(filepath.Dir(f.Path))
			if err == nil && free < f.Size-blocks {
				found = append(found, fmt.Sprintf("the %s file %s has %d bytes not allocated and its filesystem has %d bytes free: the disk is full", f.What, f.Path, f.Size-blocks, free))
			}
		}
	}
	if len(found) == 0 {
		return "SIGBUS: an access to a file-backed guest memory (" + strings.Join(names, ", ") + ") failed (a full disk or a truncated file is the usual cause)"
	}
	return "SIGBUS on file-backed guest memory: " + strings.Join(found, "; ")
}

// checkHostFile refuses a path that exists and is not a regular file (a
// named pipe would block its reader, a device never ends): the error is a
// *ConfigError for field wrapping hostreader.ErrNotRegular. A missing file
// or an empty path is not its business.
func checkHostFile(field, path string) error {
	if path == "" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().IsRegular() {
		return nil
	}
	return &ConfigError{Field: field, Msg: path + " is " + fileKindOf(fi.Mode()), Err: hostreader.ErrNotRegular}
}

func fileKindOf(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return "not a regular file (" + m.Type().String() + ")"
}
