package acpi

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func realTables(t testing.TB) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(fixtures.Real(t), "tables", "*", "*.dat"))
	require.NoError(t, err)
	require.NotEmpty(t, m)
	return m
}

func TestParseRealTables(t *testing.T) {
	for _, p := range realTables(t) {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		h, body, err := Parse(b)
		require.NoError(t, err, p)
		assert.Equal(t, strings.TrimSuffix(filepath.Base(p), ".dat"), h.Signature, p)
		assert.Equal(t, uint32(len(b)), h.Length)
		if h.Signature == "FACS" {
			assert.Equal(t, b[8:], body)
			_, err := Marshal(h, body)
			var fe *FormatError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, "Signature", fe.Field)
			assert.Equal(t, int64(offSignature), fe.Off)
			continue
		}
		assert.Equal(t, b[HeaderSize:], body)
		// Marshal reproduces the exact bytes, checksum included.
		again, err := Marshal(h, body)
		require.NoError(t, err, p)
		assert.Equal(t, b, again, p)
	}
}

func TestParseQ35DSDTHeader(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixtures.Real(t), "tables", "q35_seabios_default", "DSDT.dat"))
	require.NoError(t, err)
	h, _, err := Parse(b)
	require.NoError(t, err)
	assert.Equal(t, "DSDT", h.Signature)
	assert.Equal(t, uint8(1), h.Revision)
	assert.Equal(t, "BOCHS ", h.OEMID)
	assert.Equal(t, "BXPC    ", h.OEMTableID)
	assert.Equal(t, "BXPC", h.CreatorID)
}

func TestMarshalChecksum(t *testing.T) {
	h := Header{Signature: "SSDT", Revision: 2, OEMID: "ACPIDG", OEMTableID: "DIAG", OEMRevision: 7, CreatorID: "ADGN", CreatorRevision: 1}
	b, err := Marshal(h, []byte{0x10, 0x05, 0x5c, 0x5f, 0x53, 0x42, 0x5f})
	require.NoError(t, err)
	assert.Len(t, b, HeaderSize+7)
	assert.Equal(t, uint8(0), Checksum(b))
	h2, body, err := Parse(b)
	require.NoError(t, err)
	assert.Equal(t, uint32(len(b)), h2.Length)
	h.Length, h.Checksum = h2.Length, h2.Checksum
	assert.Equal(t, h, h2)
	assert.Equal(t, []byte{0x10, 0x05, 0x5c, 0x5f, 0x53, 0x42, 0x5f}, body)
}

func TestChecksum(t *testing.T) {
	assert.Equal(t, uint8(0), Checksum(nil))
	assert.Equal(t, uint8(0xff), Checksum([]byte{1}))
	assert.Equal(t, uint8(0x01), Checksum([]byte{0x80, 0x7f}))
}

func TestMarshalErrors(t *testing.T) {
	ok := Header{Signature: "SSDT", OEMID: "ACPIDG", OEMTableID: "DIAG", CreatorID: "ADGN"}
	for _, tc := range []struct {
		name  string
		mod   func(*Header)
		field string
		off   int64
	}{
		{"short sig", func(h *Header) { h.Signature = "SSD" }, "Signature", 0},
		{"long sig", func(h *Header) { h.Signature = "SSDTX" }, "Signature", 0},
		{"oemid", func(h *Header) { h.OEMID = "1234567" }, "OEMID", 10},
		{"oemtableid", func(h *Header) { h.OEMTableID = "123456789" }, "OEMTableID", 16},
		{"creator", func(h *Header) { h.CreatorID = "ABC" }, "CreatorID", 28},
		{"nonprintable", func(h *Header) { h.OEMTableID = "DI\x01G" }, "OEMTableID", 16 + 2},
		{"utf8", func(h *Header) { h.OEMID = "é" }, "OEMID", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := ok
			tc.mod(&h)
			_, err := Marshal(h, nil)
			var fe *FormatError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tc.field, fe.Field)
			assert.Equal(t, tc.off, fe.Off, "offset of the header field")
			assert.Equal(t, err, h.Check(), "Marshal refuses what Check refuses")
		})
	}
}

func TestParseErrors(t *testing.T) {
	good, err := Marshal(Header{Signature: "SSDT", CreatorID: "ADGN"}, []byte{1, 2, 3, 4})
	require.NoError(t, err)

	mut := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	for _, tc := range []struct {
		name  string
		in    []byte
		off   int64
		field string
	}{
		{"empty", nil, 0, ""},
		{"short header", good[:20], 20, ""},
		{"truncated body", good[:38], 38, "Length"},
		{"trailing", append(append([]byte(nil), good...), 0), 40, "Length"},
		{"length below header", mut(func(b []byte) []byte { b[4] = 10; return b }), 4, "Length"},
		{"bad sig", mut(func(b []byte) []byte { b[2] = 0; return b }), 2, "Signature"},
		{"checksum", mut(func(b []byte) []byte { b[39]++; return b }), 9, "Checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse(tc.in)
			var fe *FormatError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tc.off, fe.Off, err.Error())
			assert.Equal(t, tc.field, fe.Field)
		})
	}
	// A checksum mismatch still yields header and body.
	bad := mut(func(b []byte) []byte { b[39]++; return b })
	h, body, err := Parse(bad)
	require.True(t, errors.Is(err, ErrChecksum))
	assert.Equal(t, "SSDT", h.Signature)
	assert.Equal(t, []byte{1, 2, 3, 5}, body)
	assert.Contains(t, err.Error(), "want")
}

func TestSplitAndReadDir(t *testing.T) {
	dir := filepath.Join(fixtures.Real(t), "tables", "q35_vmgenid")
	tabs, err := ReadDir(dir)
	require.NoError(t, err)
	var blob []byte
	var sigs []string
	for _, tb := range tabs {
		blob = append(blob, tb.Raw...)
		sigs = append(sigs, tb.Header.Signature)
		assert.Equal(t, tb.Header.Signature+".dat", filepath.Base(tb.Source))
	}
	assert.Equal(t, []string{"APIC", "DSDT", "FACP", "FACS", "HPET", "MCFG", "SSDT", "WAET"}, sigs)

	split, err := Split(blob)
	require.NoError(t, err)
	require.Len(t, split, len(tabs))
	var off int64
	for i := range split {
		assert.Equal(t, off, split[i].Off)
		assert.Equal(t, tabs[i].Raw, split[i].Raw)
		assert.Equal(t, tabs[i].Header, split[i].Header)
		off += int64(len(split[i].Raw))
	}

	// Corrupt the 3rd table's checksum: the error names its absolute offset.
	bad := append([]byte(nil), blob...)
	bad[split[2].Off+HeaderSize]++
	_, err = Split(bad)
	var fe *FormatError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, split[2].Off+9, fe.Off)
	assert.ErrorIs(t, err, ErrChecksum)
	assert.Contains(t, err.Error(), "table #2")

	// Truncated blob: the last table's length runs past the end.
	_, err = Split(blob[:len(blob)-1])
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, split[len(split)-1].Off+4, fe.Off)
	assert.Equal(t, "Length", fe.Field)

	// A zero length field must not loop forever (u-root's NewRaw does).
	zero := append([]byte(nil), blob[:HeaderSize]...)
	zero[4], zero[5], zero[6], zero[7] = 0, 0, 0, 0
	_, err = Split(zero)
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, int64(4), fe.Off)
}

func TestReadDirBadFile(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(fixtures.Real(t), "tables", "q35_seabios_default", "HPET.dat"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "HPET"), src, 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "data"), 0o755))
	tabs, err := ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, tabs, 1)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "JUNK"), []byte("not a table at all, this is text!!!!!!!!"), 0o644))
	_, err = ReadDir(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, "JUNK"))
	var fe *FormatError
	require.ErrorAs(t, err, &fe)

	_, err = ReadDir(filepath.Join(dir, "missing"))
	require.Error(t, err)
}

func TestReadSysfs(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(fixtures.Real(t), "tables", "q35_vmgenid", "SSDT.dat"))
	require.NoError(t, err)
	dsdt, err := os.ReadFile(filepath.Join(fixtures.Real(t), "tables", "q35_vmgenid", "DSDT.dat"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "DSDT"), dsdt, 0o644))
	tabs, err := ReadSysfs(dir)
	require.NoError(t, err)
	require.Len(t, tabs, 1)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "dynamic"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dynamic", "SSDT1"), src, 0o644))
	tabs, err = ReadSysfs(dir)
	require.NoError(t, err)
	require.Len(t, tabs, 2)
	assert.Equal(t, "SSDT", tabs[1].Header.Signature)
	assert.True(t, bytes.Equal(src, tabs[1].Raw))
}

func FuzzParse(f *testing.F) {
	for _, p := range realTables(f) {
		b, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := Parse(b)
		if err == nil || errors.Is(err, ErrChecksum) {
			hdr := HeaderSize
			if h.Signature == "FACS" {
				hdr = 8
			}
			if int(h.Length) != len(b) || len(body) != len(b)-hdr {
				t.Fatalf("Parse accepted inconsistent length %d for %d bytes", h.Length, len(b))
			}
		} else {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Off < 0 || fe.Off > int64(len(b)) {
				t.Fatalf("bad error %v", err)
			}
		}
		tabs, err := Split(b)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Off < 0 || fe.Off > int64(len(b)) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		var n int
		for _, tb := range tabs {
			if (tb.Header.Signature != "FACS" && Checksum(tb.Raw) != 0) || int64(n) != tb.Off {
				t.Fatalf("Split returned a bad table at %d", tb.Off)
			}
			n += len(tb.Raw)
		}
		if n != len(b) {
			t.Fatalf("Split covered %d of %d bytes", n, len(b))
		}
	})
}

// TestReadSysfsLive reads the running system's tables when they are
// readable (root on a machine with ACPI): every table must parse and every
// AML table decode.
func TestReadSysfsLive(t *testing.T) {
	ents, err := os.ReadDir(SysfsTablesDir)
	if err != nil || len(ents) == 0 {
		t.Skipf("no ACPI tables in %s: %v", SysfsTablesDir, err)
	}
	if _, err := os.ReadFile(filepath.Join(SysfsTablesDir, ents[0].Name())); err != nil {
		t.Skipf("tables not readable (need root): %v", err)
	}
	tabs, err := ReadSysfs(SysfsTablesDir)
	require.NoError(t, err)
	require.NotEmpty(t, tabs)
	for _, tb := range tabs {
		var sb strings.Builder
		require.NoError(t, DescribeTable(&sb, tb.Raw, DescribeOptions{}), tb.Source)
		if IsAML(tb.Header.Signature) {
			assert.Contains(t, sb.String(), "DefinitionBlock (", tb.Source)
		}
	}
}
