package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMeminfoLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	require.NoError(t, os.WriteFile(p, []byte("MemTotal:         228504 kB\nMemFree:          190232 kB\nMemAvailable:     180000 kB\nBuffers:               0 kB\nCached:            20480 kB\n"), 0o644))
	line, err := meminfoLine(p)
	require.NoError(t, err)
	assert.Equal(t, "meminfo MemTotal=228504 MemFree=190232 MemAvailable=180000 Cached=20480", line)
	require.NoError(t, os.WriteFile(p, []byte("MemTotal: 1 kB\n"), 0o644))
	_, err = meminfoLine(p)
	assert.ErrorContains(t, err, "no MemFree line")
}

func TestMeminfoOption(t *testing.T) {
	o, problems := parseOptions("acpidiag.meminfo=2s")
	assert.Empty(t, problems)
	assert.Equal(t, 2*time.Second, o.meminfo)
	o, problems = parseOptions("acpidiag.meminfo=1ms")
	assert.Len(t, problems, 1)
	assert.Zero(t, o.meminfo)
}
