package aml

import (
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
