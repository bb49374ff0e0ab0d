package acpi

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acpidiag/acpidiag/aml"
	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func q35DSDT(t *testing.T) []byte {
	b, err := os.ReadFile(filepath.Join(fixtures.Real(t), "tables", "q35_seabios_default", "DSDT.dat"))
	require.NoError(t, err)
	return b
}

func TestDescribeTableQ35DSDT(t *testing.T) {
	var sb strings.Builder
	require.NoError(t, DescribeTable(&sb, q35DSDT(t), DescribeOptions{}))
	out := sb.String()
	for _, want := range []string{
		`Signature        "DSDT"`,
		"Length           0x00002088 (8328)",
		"Checksum         0x26 (OK)",
		`OEM ID           "BOCHS "`,
		`Creator ID       "BXPC"`,
		"revision 1: the OS runs all AML with 32-bit integers",
		`DefinitionBlock ("", "DSDT", 1, "BOCHS ", "BXPC    ", 0x00000001)`,
		"    Scope (_SB.PCI0)\n",
		"        Device (PCI0)\n",
		"Method (_OSC, 4, NotSerialized)",
	} {
		assert.Contains(t, out, want)
	}
	assert.True(t, strings.HasSuffix(out, "}\n"))
}

func TestDescribeTableOffsets(t *testing.T) {
	var sb strings.Builder
	require.NoError(t, DescribeTable(&sb, q35DSDT(t), DescribeOptions{Offsets: true}))
	// The first term of the body is at table offset 0x24.
	assert.Contains(t, sb.String(), "/* 0x0024 */     Scope (\\)\n")
}

func TestDescribeTableBadChecksum(t *testing.T) {
	b := q35DSDT(t)
	b[9]++
	var sb strings.Builder
	err := DescribeTable(&sb, b, DescribeOptions{})
	require.ErrorIs(t, err, ErrChecksum)
	assert.Contains(t, sb.String(), "Checksum         0x27 (BAD, should be 0x26)")
	assert.Contains(t, sb.String(), "Device (PCI0)", "the body is still decoded")
}

func TestDescribeTableBrokenAML(t *testing.T) {
	b := q35DSDT(t)
	h, body, err := Parse(b)
	require.NoError(t, err)
	// A valid header around AML cut in the middle of a construct.
	cut, err := Marshal(h, body[:1000])
	require.NoError(t, err)
	var sb strings.Builder
	err = DescribeTable(&sb, cut, DescribeOptions{})
	var fe *FormatError
	require.ErrorAs(t, err, &fe)
	var de *aml.DecodeError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, int64(HeaderSize+de.Off), fe.Off)
	assert.GreaterOrEqual(t, fe.Off, int64(HeaderSize))
	assert.LessOrEqual(t, fe.Off, int64(len(cut)))
	assert.Contains(t, sb.String(), `Signature        "DSDT"`)

	// A truncated file: the header's length is checked first.
	err = DescribeTable(&sb, b[:1000], DescribeOptions{})
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, int64(1000), fe.Off)
	assert.Equal(t, "Length", fe.Field)
	assert.False(t, errors.Is(err, ErrChecksum))
}

func TestDescribeTableNotAMLAndHostileIDs(t *testing.T) {
	b, err := Marshal(Header{Signature: "WAET", OEMID: `a"b\`, CreatorID: "QEMU"}, []byte{1, 2, 3, 4})
	require.NoError(t, err)
	b[12] = 0x07 // a control character inside the OEM ID
	b[9] = 0
	b[9] = Checksum(b)
	var sb strings.Builder
	require.NoError(t, DescribeTable(&sb, b, DescribeOptions{}))
	assert.Contains(t, sb.String(), `OEM ID           "a\"\x07\\"`)
	assert.Contains(t, sb.String(), "WAET: 4 bytes of table data after the header (not AML)")
	assert.NotContains(t, sb.String(), "DefinitionBlock")
}

func TestDescribeAllRealTables(t *testing.T) {
	m, err := filepath.Glob(filepath.Join(fixtures.Real(t), "tables", "*", "*.dat"))
	require.NoError(t, err)
	for _, p := range m {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		var sb strings.Builder
		require.NoError(t, DescribeTable(&sb, b, DescribeOptions{}), p)
	}
}

func BenchmarkParseQ35DSDT(b *testing.B) {
	tbl, err := os.ReadFile(filepath.Join(fixtures.Real(b), "tables", "q35_seabios_default", "DSDT.dat"))
	require.NoError(b, err)
	b.SetBytes(int64(len(tbl)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(tbl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDescribeTableQ35DSDT is the work of "ssdtgen decode" on the q35
// DSDT without process start-up: parse, decode, print.
func BenchmarkDescribeTableQ35DSDT(b *testing.B) {
	tbl, err := os.ReadFile(filepath.Join(fixtures.Real(b), "tables", "q35_seabios_default", "DSDT.dat"))
	require.NoError(b, err)
	b.SetBytes(int64(len(tbl)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DescribeTable(io.Discard, tbl, DescribeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDescribeTableErrors: any bytes as a table file. No panic; failures are
// *FormatError with an offset inside the input.
func FuzzDescribeTableErrors(f *testing.F) {
	m, err := filepath.Glob(filepath.Join(fixtures.Real(f), "tables", "*", "*.dat"))
	require.NoError(f, err)
	for _, p := range m {
		b, err := os.ReadFile(p)
		require.NoError(f, err)
		if len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := DescribeTable(io.Discard, b, DescribeOptions{Offsets: true})
		if err == nil {
			return
		}
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Fatalf("error is %T, not *FormatError: %v", err, err)
		}
		if fe.Off < 0 || fe.Off > int64(len(b)) {
			t.Fatalf("offset %d outside the %d-byte input: %v", fe.Off, len(b), err)
		}
	})
}
