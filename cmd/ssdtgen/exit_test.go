package main

import (
	"bytes"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every usage error exits 2 (it was 1 for a bad flag value and 2 for an
// unknown flag); every --help documents the exit codes and exits 0.
func TestExitCodes(t *testing.T) {
	runIn := func(args ...string) (int, string, string) {
		var o, e bytes.Buffer
		code := run(args, &o, &e)
		return code, o.String(), e.String()
	}
	for _, args := range [][]string{
		{"--tick", "10ms", "-o", "x"},
		{"--tick", "soon", "-o", "x"},
		{"--size", "lots", "-o", "x"},
		{"--region", "pci:3", "-o", "x"},
		{"--oem-id", "WAYTOOLONG", "-o", "x"},
		{"--no-such-flag"},
		{},
		{"-o", "x", "extra"},
		{"qemu-args"},
		{"qemu-args", "--backing", "b", "--tick", "1ms"},
		{"qemu-args", "--backing", "b", "--memory", "many"},
		{"qemu-args", "--backing", "b", "extra"},
		{"qemu-args", "--bogus"},
		{"decode"},
		{"decode", "--bogus", "x"},
	} {
		code, _, stderr := runIn(args...)
		assert.Equal(t, exitUsage, code, "%q: %s", args, stderr)
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"qemu-args", "--help"}, {"decode", "--help"}} {
		code, _, stderr := runIn(args...)
		assert.Equal(t, exitOK, code, "%q", args)
		assert.Contains(t, stderr, "Exit status:", "%q", args)
	}
	// Not usage errors: an unwritable output file is exit 1.
	code, _, _ := runIn("-o", filepath.Join(t.TempDir(), "no", "such", "dir", "t.aml"))
	assert.Equal(t, exitError, code)
}

// A named pipe given to decode is refused at once (it blocked in read).
func TestDecodeRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "DSDT")
	require.NoError(t, syscall.Mkfifo(fifo, 0o666))
	done := make(chan struct{})
	var code int
	var e bytes.Buffer
	go func() { defer close(done); code = run([]string{"decode", fifo}, &bytes.Buffer{}, &e) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("decode blocked on a FIFO")
	}
	assert.Equal(t, exitError, code)
	assert.Contains(t, e.String(), "not a regular file")
}
