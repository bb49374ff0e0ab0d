package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
)

func decodeCmd(args ...string) (string, string, int) {
	var o, e bytes.Buffer
	code := runDecode(args, &o, &e)
	return o.String(), e.String(), code
}

func TestDecodeRealFixtures(t *testing.T) {
	tables := filepath.Join(fixtures.Real(t), "tables")
	files, err := filepath.Glob(filepath.Join(tables, "*", "*.dat"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out, errOut, code := decodeCmd(files...)
	require.Equal(t, 0, code, errOut)
	assert.Empty(t, errOut)
	assert.Equal(t, len(files), strings.Count(out, "\n * Signature "))
	for _, want := range []string{
		"Scope (_SB.PCI0)",
		"Device (PCI0)",
		`Name (_HID, EisaId ("PNP0A08"))`,
		"Method (\\_GPE._E05, 0, NotSerialized)", // the vmgenid SSDT
		"Checksum         0x26 (OK)",
		"FACS: 56 bytes of table data after the header (not AML)",
	} {
		assert.Contains(t, out, want)
	}
}

func TestDecodeDispatchAndOffsets(t *testing.T) {
	dsdt := filepath.Join(fixtures.Real(t), "tables", "q35_seabios_default", "DSDT.dat")
	var o, e bytes.Buffer
	code := run([]string{"decode", "-offsets", dsdt}, &o, &e)
	require.Equal(t, 0, code, e.String())
	assert.Contains(t, o.String(), "/* 0x0024 */     Scope (\\)")
}

func TestDecodeMalformedKeepsGoing(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(fixtures.Real(t), "tables", "q35_seabios_default", "DSDT.dat"))
	require.NoError(t, err)
	trunc := filepath.Join(dir, "trunc.dat")
	require.NoError(t, os.WriteFile(trunc, src[:0x1234], 0o644))
	junk := filepath.Join(dir, "junk.aml")
	require.NoError(t, os.WriteFile(junk, []byte("SSDT\x30\x00\x00\x00\x02\x00ACPIDGTEST\x00\x00\x00\x00\x01\x00\x00\x00INTL\x01\x00\x00\x00\x5b\xee\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), 0o644))
	good := filepath.Join(fixtures.Real(t), "tables", "q35_vmgenid", "SSDT.dat")
	missing := filepath.Join(dir, "missing.dat")

	out, errOut, code := decodeCmd(trunc, junk, good, missing)
	assert.NotEqual(t, 0, code)
	// The truncated file: its header promises 0x2088 bytes.
	assert.Contains(t, errOut, trunc+": offset 0x1234: Length: table DSDT truncated: header says 8328 bytes, have 4660\n")
	// The junk SSDT: the bad opcode is reported; its wrong checksum shows
	// in the printed header.
	assert.Contains(t, errOut, junk+": offset 0x24: unknown extended opcode 0x5B 0xEE\n")
	assert.Regexp(t, regexp.MustCompile(`Checksum         0x00 \(BAD, should be 0x[0-9A-F]{2}\)`), out)
	assert.Contains(t, errOut, missing+": ")
	// The good table after the bad ones is still decoded.
	assert.Contains(t, out, "Device (VGEN)")
}

func TestDecodeBadOpcodeOffset(t *testing.T) {
	dir := t.TempDir()
	// A valid header and checksum around AML with an unknown extended
	// opcode at body offset 2 (table offset 0x26).
	body := []byte{0xA3, 0xA3, 0x5B, 0xEE}
	tbl := append([]byte("SSDT\x28\x00\x00\x00\x02\x00ACPIDGTEST\x00\x00\x00\x00\x01\x00\x00\x00INTL\x01\x00\x00\x00"), body...)
	var s byte
	for _, c := range tbl {
		s += c
	}
	tbl[9] = -s
	p := filepath.Join(dir, "bad.aml")
	require.NoError(t, os.WriteFile(p, tbl, 0o644))
	out, errOut, code := decodeCmd(p)
	assert.Equal(t, 1, code)
	assert.Equal(t, p+": offset 0x26: unknown extended opcode 0x5B 0xEE\n", errOut)
	assert.Contains(t, out, `Signature        "SSDT"`)
}

func TestDecodeUsage(t *testing.T) {
	_, errOut, code := decodeCmd()
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "usage: ssdtgen decode")
}

// BenchmarkProcessDecodeQ35 is the whole-process cost of
// "ssdtgen decode" on the q35 DSDT (start-up, read, decode, print);
// compare with BenchmarkProcessIaslDisassembleQ35.
func BenchmarkProcessDecodeQ35(b *testing.B) {
	bin := fixtures.BuildCommand(b, "ssdtgen")
	dsdt := filepath.Join(fixtures.Real(b), "tables", "q35_seabios_default", "DSDT.dat")
	for b.Loop() {
		cmd := exec.Command(bin, "decode", dsdt)
		cmd.Stdout = io.Discard
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcessIaslDisassembleQ35 is "iasl -d" on the q35 DSDT (it
// writes the .dsl file next to its input, in a temporary directory).
func BenchmarkProcessIaslDisassembleQ35(b *testing.B) {
	iasl := fixtures.RequireTool(b, "iasl")
	src, err := os.ReadFile(filepath.Join(fixtures.Real(b), "tables", "q35_seabios_default", "DSDT.dat"))
	require.NoError(b, err)
	dir := b.TempDir()
	in := filepath.Join(dir, "DSDT.dat")
	require.NoError(b, os.WriteFile(in, src, 0o644))
	for b.Loop() {
		cmd := exec.Command(iasl, "-d", in)
		cmd.Dir = dir
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}
