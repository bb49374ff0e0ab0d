package main

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attach refuses a named pipe or a device given as the region or ERST file
// at once, as a usage error, before it dials QMP or opens anything.
func TestAttachRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "vm.diag")
	require.NoError(t, syscall.Mkfifo(fifo, 0o666))
	region := filepath.Join(dir, "region")
	require.NoError(t, os.WriteFile(region, make([]byte, 4096), 0o644))
	for _, args := range [][]string{
		{"attach", "--qmp", filepath.Join(dir, "qmp"), "--region", fifo},
		{"attach", "--qmp", filepath.Join(dir, "qmp"), "--region", "/dev/zero"},
		{"attach", "--qmp", filepath.Join(dir, "qmp"), "--region", region, "--erst", fifo},
	} {
		done := make(chan struct{})
		var code int
		var stderr string
		go func() {
			defer close(done)
			code, _, stderr = runCLI(t, context.Background(), args...)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%q blocked", args)
		}
		assert.Equal(t, exitUsage, code, "%q: %s", args, stderr)
		assert.Contains(t, stderr, "not a regular file", "%q", args)
	}
}
