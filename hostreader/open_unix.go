//go:build unix

package hostreader

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular is wrapped by the error of every function that opens a
// host file (OpenRegion, ReadERSTFile, ReadERSTBytes) when the path is not
// a regular file: a named pipe, a device, a socket or a directory. Such a
// file is refused before it is opened for reading (an open(2) of a FIFO
// blocks until a writer appears, and a device such as /dev/zero never
// ends), so a hostile file in a shared directory cannot freeze a reader.
var ErrNotRegular = errors.New("not a regular file")

// openRegular opens path with flag after making sure it is a regular file:
// a stat before the open refuses pipes and devices without blocking, the
// open itself is non-blocking (a file swapped for a FIFO in between does
// not block either), and the opened file is checked again.
func openRegular(path string, flag int) (*os.File, fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, notRegular(path, fi.Mode())
	}
	f, err := os.OpenFile(path, flag|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, notRegular(path, fi.Mode())
	}
	return f, fi, nil
}

func notRegular(path string, m fs.FileMode) error {
	return fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, fileKind(m))
}

// fileKind names a file type for an error message.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	}
	return "file mode " + m.String()
}
