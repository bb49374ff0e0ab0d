package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/region"
)

// runWithin runs the CLI in process and fails if it does not return in
// time (before special files were refused, open(2) of a FIFO blocked
// forever and ignored signals).
func runWithin(t *testing.T, d time.Duration, args ...string) (int, string, string) {
	t.Helper()
	type res struct {
		code     int
		out, err string
	}
	ch := make(chan res, 1)
	go func() {
		c, o, e := runCapture(context.Background(), args...)
		ch <- res{c, o, e}
	}()
	select {
	case r := <-ch:
		return r.code, r.out, r.err
	case <-time.After(d):
		t.Fatalf("diagread %q still running after %v", args, d)
	}
	return 0, "", ""
}

func TestSpecialFilesRefusedAtOnce(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "vmX.diag")
	require.NoError(t, syscall.Mkfifo(fifo, 0o666))
	for _, args := range [][]string{
		{fifo}, {"--json", fifo}, {"erst", fifo}, {"erst", "--json", fifo},
		{"watch", fifo}, {"watch", "--stamp", fifo},
		{"/dev/zero"}, {"erst", "/dev/zero"}, {"erst", "--json", "/dev/zero"},
	} {
		code, _, errOut := runWithin(t, 3*time.Second, args...)
		assert.Equal(t, 2, code, "%q", args)
		assert.Contains(t, errOut, "not a regular file", "%q", args)
	}
}

// The built binary: a FIFO among the globbed files is reported unusable and
// the other regions are watched; one hostile region (region_size
// 0xffffffff) is watched too, and judged corrupt naming the field.
func TestDiagreadBinaryWatchHostileFiles(t *testing.T) {
	bin := buildDiagread(t)
	dir := t.TempDir()
	ok := filepath.Join(dir, "vm1.diag")
	writeAt(t, ok, regionImage(4096, 10, time.Time{}, time.Time{}))
	bad := regionImage(4096, 10, time.Time{}, time.Time{})
	binary.LittleEndian.PutUint32(bad[region.RegionSize.Offset:], 0xffffffff)
	badp := filepath.Join(dir, "vm2.diag")
	writeAt(t, badp, bad)
	fifo := filepath.Join(dir, "vm3.diag")
	require.NoError(t, syscall.Mkfifo(fifo, 0o666))
	other := filepath.Join(dir, "vm4.diag")
	writeAt(t, other, regionImage(4096, 10, time.Time{}, time.Time{}))
	files, err := filepath.Glob(filepath.Join(dir, "vm*.diag"))
	require.NoError(t, err)
	require.Len(t, files, 4)

	cmd := exec.Command(bin, append([]string{"watch", "--json", "--stamp", "--interval", "50ms"}, files...)...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr fixtures.SyncBuffer // read while the command runs
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	out := lines(stdout)
	got := map[string]map[string]any{}
	deadline := time.After(5 * time.Second)
	for len(got) < 4 {
		select {
		case l, open := <-out:
			require.True(t, open, "output ended; stderr %s", stderr.String())
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &m), l)
			name := m["region"].(string)
			if got[name] == nil {
				got[name] = m
			}
		case <-deadline:
			t.Fatalf("lines for %d files only: %v; stderr %s", len(got), got, stderr.String())
		}
	}
	assert.Contains(t, got[fifo]["error"], "not a regular file")
	v := got[badp]["verdict"].(map[string]any)
	assert.Equal(t, "corrupt", v["state"])
	assert.Equal(t, "region_size", v["field"])
	for _, p := range []string{ok, other} {
		assert.NotEqual(t, "corrupt", got[p]["verdict"].(map[string]any)["state"], p)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), stderr.String())
	assert.Contains(t, stderr.String(), fifo+": unusable")
}

func writeAt(t *testing.T, p string, b []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(p, b, 0o644))
}

// Every usage error exits 2; every --help documents the exit codes.
func TestExitCodesDocumented(t *testing.T) {
	ok := writeFile(t, "ok", regionImage(4096, 10, time.Time{}, time.Time{}))
	for _, args := range [][]string{
		{"--bogus", ok}, {"--wait", "soon", ok}, {"--k", "1001", ok}, {"--offset", "-4", ok}, {},
		{"watch", "--bogus", ok}, {"watch", "--interval", "x", ok}, {"watch", "--k", "0", ok}, {"watch"},
		{"erst", "--bogus", ok}, {"erst"}, {"erst", ok, ok},
	} {
		code, _, errOut := runCapture(context.Background(), args...)
		assert.Equal(t, 2, code, "%q: %s", args, errOut)
	}
	for _, args := range [][]string{{"--help"}, {"watch", "--help"}, {"erst", "--help"}} {
		code, out, errOut := runCapture(context.Background(), args...)
		assert.Equal(t, 0, code, "%q", args)
		assert.Contains(t, out+errOut, "Exit status:", "%q", args)
	}
}
