package metrics

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the file system holding d (syncfs(2)): every file written
// there so far, and the directory's entries, are durable after it.
func syncFS(d *os.File) error { return unix.Syncfs(int(d.Fd())) }
