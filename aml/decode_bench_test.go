package aml

import (
	"runtime"

	"github.com/stretchr/testify/assert"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
)

func q35DSDTBody(b *testing.B) []byte {
	t, err := os.ReadFile(filepath.Join(fixtures.Real(b), "tables", "q35_seabios_default", "DSDT.dat"))
	if err != nil {
		b.Fatal(err)
	}
	return t[36:]
}

// BenchmarkDecodeQ35DSDT: target >= 50 MB/s.
func BenchmarkDecodeQ35DSDT(b *testing.B) {
	body := q35DSDTBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFormatQ35DSDT(b *testing.B) {
	body := q35DSDTBody(b)
	root, err := Decode(body)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Format(io.Discard, root); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReencodeQ35DSDT(b *testing.B) {
	body := q35DSDTBody(b)
	root, err := Decode(body)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = root.AppendAML(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// decodeBytesPerOp returns the bytes Decode allocates for body, averaged
// over runs decodes.
func decodeBytesPerOp(tb testing.TB, body []byte, runs int) float64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		if _, err := Decode(body); err != nil {
			tb.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(runs)
}

// TestDecodeMemoryBound: decoding a real QEMU table allocates at most 4
// times its size (issue 9); allocation counts, unlike timings, are exact.
func TestDecodeMemoryBound(t *testing.T) {
	for p, b := range amlTables(t) {
		body := b[36:]
		if len(body) < 1024 {
			continue // fixed costs dominate tiny tables
		}
		per := decodeBytesPerOp(t, body, 20)
		t.Logf("%s: %d bytes, %.0f B/op = %.2fx", filepath.Base(filepath.Dir(p))+"/"+filepath.Base(p), len(body), per, per/float64(len(body)))
		assert.LessOrEqual(t, per, 4*float64(len(body)), p)
	}
}
