//go:build unix

package hostreader

import (
	"os"
	"syscall"
)

// mmapFile maps length bytes of f from off (page-aligned) with MAP_SHARED,
// read-only unless writable. Writes through a writable mapping reach the
// file and every other mapping of it (QEMU's memory-backend-file share=on).
func mmapFile(f *os.File, off int64, length int, writable bool) ([]byte, error) {
	prot := syscall.PROT_READ
	if writable {
		prot |= syscall.PROT_WRITE
	}
	return syscall.Mmap(int(f.Fd()), off, length, prot, syscall.MAP_SHARED)
}

func munmap(b []byte) error { return syscall.Munmap(b) }
