package main

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/hostreader"
)

// buildStore writes a store of size bytes, 8 KiB slots, every record slot
// holding a copy of a real store's first record with body(slot) as its
// deflate data.
func buildStore(t *testing.T, size int, body func(slot int) []byte) string {
	t.Helper()
	tmpl, err := os.ReadFile(backing(t, "q35_sysrq_deflate"))
	require.NoError(t, err)
	const rs = 8192
	b := make([]byte, size)
	copy(b, tmpl[:hostreader.ERSTHeaderSize])
	le := binary.LittleEndian
	storage := 0x18 + 8*(size/rs)
	storage = (storage + rs - 1) / rs * rs
	le.PutUint32(b[0x0c:], uint32(storage))
	n := 0
	for slot := storage / rs; slot < size/rs; slot++ {
		o := slot * rs
		d := body(slot)
		copy(b[o:], tmpl[rs:rs+200])
		copy(b[o+200:], d)
		le.PutUint32(b[o+hostreader.CPERHeaderSize+4:], uint32(len(d))) // section length
		le.PutUint32(b[o+20:], uint32(200+len(d)))                      // record length
		le.PutUint64(b[o+96:], uint64(slot))                            // record id
		le.PutUint64(b[0x18+8*slot:], uint64(slot))                     // slot map
		n++
	}
	le.PutUint32(b[0x14:], uint32(n))
	p := filepath.Join(t.TempDir(), "store.erst")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

func deflate(t *testing.T, data []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	w, err := flate.NewWriter(&z, flate.BestCompression)
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return z.Bytes()
}

// nulStore builds the store: 512 KiB, 8 KiB slots, 63 records
// (copied from a real store's first record), each a deflate stream that
// inflates to exactly 1 MiB of NUL bytes.
func nulStore(t *testing.T) string {
	t.Helper()
	body := deflate(t, make([]byte, 1<<20))
	p := buildStore(t, 512<<10, func(int) []byte { return body })
	s, err := hostreader.ReadERSTFile(p)
	require.NoError(t, err)
	require.Len(t, s.Slots, 63)
	return p
}

// countWriter counts bytes.
type countWriter struct{ n int64 }

func (c *countWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }

// runMeasured runs diagread with args in a fresh process (this test
// binary, re-executed into TestDiagreadHelperProcess) and returns its exit
// code, output size, stderr and peak RSS (VmHWM of /proc/self/status, read
// by that process at the end: wait4's ru_maxrss would include the memory of
// the forking test process).
func runMeasured(t *testing.T, args ...string) (int, int64, string, int64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiagreadHelperProcess$")
	cmd.Env = append(os.Environ(), "ACPIDIAG_DIAGREAD_HELPER="+strings.Join(args, "\x1f"))
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), errb.String())
	var code int
	var outBytes, hwm int64
	i := strings.Index(out.String(), "HELPER ")
	require.GreaterOrEqual(t, i, 0, out.String())
	_, err := fmt.Sscanf(out.String()[i:], "HELPER code %d out %d hwm %d", &code, &outBytes, &hwm)
	require.NoError(t, err, out.String())
	return code, outBytes, errb.String(), hwm
}

// TestDiagreadHelperProcess is runMeasured's child, not a test.
func TestDiagreadHelperProcess(t *testing.T) {
	spec, ok := os.LookupEnv("ACPIDIAG_DIAGREAD_HELPER")
	if !ok {
		t.Skip("helper process for runMeasured")
	}
	var out countWriter
	code := run(context.Background(), strings.Split(spec, "\x1f"), &out, os.Stderr)
	st, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	var hwm int64
	for _, l := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			_, err := fmt.Sscanf(strings.TrimPrefix(l, "VmHWM:"), "%d kB", &hwm)
			require.NoError(t, err)
		}
	}
	require.NotZero(t, hwm)
	fmt.Printf("HELPER code %d out %d hwm %d\n", code, out.n, hwm*1024)
}

// The amplification store: 134 MB of text output and 517 MB RSS
// (--json: 201 MB, 1.2 GB) before the budget was counted after escaping.
// Targets: under 40 MB of output and under 200 MB RSS.
func TestErstNulStoreBounded(t *testing.T) {
	store := nulStore(t)
	for _, args := range [][]string{{"erst", store}, {"erst", "--json", store}} {
		code, outBytes, errOut, rss := runMeasured(t, args...)
		require.Equal(t, 0, code, errOut)
		t.Logf("NUMBER diagread %v: output %d bytes, peak RSS %d bytes", args[:len(args)-1], outBytes, rss)
		assert.Less(t, outBytes, int64(40e6), "%v output", args)
		assert.Less(t, rss, int64(200e6), "%v RSS", args)
	}
	// The records past the budget are named, with the budget.
	code, out, _ := runErstCapture(store)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "MaxStoreText")
	assert.NotContains(t, out, "more than 0 bytes")
}

// Any input stays under 256 MiB RSS: /dev/zero is refused at once, and the
// largest file read (MaxERSTFileSize, all zero) is refused by its header.
func TestErstAnyInputBounded(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(big)
	require.NoError(t, err)
	_, err = io.Copy(f, io.LimitReader(zeroReader{}, hostreader.MaxERSTFileSize))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	// The most a store can cost: the largest file, every record one part
	// of one event, each inflating to 1 MiB of printable text (cost 1 a
	// byte), so the whole budget is text held and printed.
	fatBody := deflate(t, []byte("Panic#1 Part1\n"+strings.Repeat("A", 1<<20-14)))
	fat := buildStore(t, hostreader.MaxERSTFileSize, func(int) []byte { return fatBody })
	for _, args := range [][]string{{"erst", fat}, {"erst", "--json", fat}, {"erst", "/dev/zero"}, {"erst", "--json", "/dev/zero"}, {"erst", big}, {"erst", "--json", big}} {
		code, _, errOut, rss := runMeasured(t, args...)
		if args[len(args)-1] == fat {
			assert.Equal(t, 0, code, errOut)
		} else {
			assert.Equal(t, 2, code, "%v: %s", args, errOut)
		}
		t.Logf("NUMBER diagread %v: peak RSS %d bytes", args, rss)
		if !raceEnabled { // 144 MB here for the worst store; 346 MB under -race
			assert.Less(t, rss, int64(256<<20), "%v RSS", args)
		}
	}
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}
