package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/ssdt"
)

// buildBinary compiles ssdtgen into a temp dir: the CLI tests run the real
// binary.
func buildBinary(t testing.TB) string {
	t.Helper()
	return fixtures.BuildCommand(t, "ssdtgen")
}

func runBin(t testing.TB, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	require.NoError(t, err)
	return o.String(), e.String(), 0
}

func TestCLI(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()

	t.Run("default_table_equals_library", func(t *testing.T) {
		out := filepath.Join(dir, "diag.aml")
		_, stderr, code := runBin(t, bin, "-o", out)
		require.Zero(t, code, stderr)
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		want, err := ssdt.Build(ssdt.DefaultConfig())
		require.NoError(t, err)
		require.Equal(t, want, got)
	})

	t.Run("flags", func(t *testing.T) {
		out := filepath.Join(dir, "f.aml")
		_, stderr, code := runBin(t, bin, "--region", "fixed:0x10000000", "--size", "8K", "--tick", "500ms",
			"--oem-id", "EDGE", "--table-id", "VM1", "--zone", "HBT0", "-o", out)
		require.Zero(t, code, stderr)
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		c := ssdt.DefaultConfig()
		c.Placement, c.Address, c.Size, c.Tick = ssdt.PlaceFixed, 0x10000000, 8192, 500*time.Millisecond
		c.OEMID, c.TableID, c.ZoneName = "EDGE", "VM1", "HBT0"
		want, err := ssdt.Build(c)
		require.NoError(t, err)
		require.Equal(t, want, got)
	})

	t.Run("stdout", func(t *testing.T) {
		stdout, _, code := runBin(t, bin, "--region", "ivshmem:0x11", "-o", "-")
		require.Zero(t, code)
		c := ssdt.DefaultConfig()
		c.Slot = 0x11
		want, _ := ssdt.Build(c)
		require.Equal(t, string(want), stdout)
	})

	t.Run("asl", func(t *testing.T) {
		stdout, stderr, code := runBin(t, bin, "--asl", "--tick", "2s")
		require.Zero(t, code, stderr)
		assert.Contains(t, stdout, `DefinitionBlock ("", "SSDT", 2, "ACPIDG", "DIAGSSDT", 0x00000001)`)
		assert.Contains(t, stdout, "ThermalZone (DIAG)")
		assert.Contains(t, stdout, "Name (DGPV, 0x14)", "2 s = 20 deciseconds")
	})

	t.Run("errors_name_the_flag", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--size", "12K", "-o", "x"}, "--size"},
			{[]string{"--size", "lots", "-o", "x"}, "--size"},
			{[]string{"--region", "fixed:0xFFFFF000", "-o", "x"}, "--region"},
			{[]string{"--region", "pci:3", "-o", "x"}, "--region"},
			{[]string{"--tick", "10ms", "-o", "x"}, "--tick"},
			{[]string{"--oem-id", "WAYTOOLONG", "-o", "x"}, "--oem-id"},
			{[]string{"--device", "PRES", "-o", "x"}, "--device"},
			{[]string{}, "-o FILE"},
			{[]string{"-o", "x", "extra"}, "unexpected argument"},
			{[]string{"qemu-args"}, "--backing"},
		} {
			_, stderr, code := runBin(t, bin, c.args...)
			assert.Equal(t, 2, code, "usage error %v", c.args)
			assert.Contains(t, stderr, c.want, "%v", c.args)
			assert.NotContains(t, stderr, "panic", "%v", c.args)
		}
		_, _, code := runBin(t, bin, "--no-such-flag")
		assert.Equal(t, 2, code)
	})

	t.Run("help", func(t *testing.T) {
		_, stderr, code := runBin(t, bin, "--help")
		require.Zero(t, code)
		for _, s := range []string{"-o FILE", "--asl", "decode FILE", "qemu-args", "Examples:", "ssdtgen -o diag.aml", "-region", "-tick"} {
			assert.Contains(t, stderr, s)
		}
	})

	t.Run("qemu_args_ivshmem", func(t *testing.T) {
		stdout, stderr, code := runBin(t, bin, "qemu-args", "--backing", "/dev/shm/vm1.diag", "--ssdt", "/tmp/d.aml", "--machine", "pc")
		require.Zero(t, code, stderr)
		assert.Equal(t, "-acpitable file=/tmp/d.aml -object memory-backend-file,id=acpidiag-region,mem-path=/dev/shm/vm1.diag,size=65536,share=on -device ivshmem-plain,id=acpidiag-ivshmem,memdev=acpidiag-region,bus=pci.0,addr=0x10\n", stdout)
	})

	t.Run("qemu_args_fixed", func(t *testing.T) {
		stdout, stderr, code := runBin(t, bin, "qemu-args", "--region", "fixed:0x10000000", "--backing", "/dev/shm/ram", "--memory", "512")
		require.Zero(t, code, stderr)
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		require.Len(t, lines, 2)
		assert.Contains(t, lines[0], "-machine memory-backend=")
		assert.Equal(t, "# guest kernel command line: 'memmap=64K$0x10000000'", lines[1])
	})
}

func TestCLIAgainstIasl(t *testing.T) {
	// The table ssdtgen writes is accepted by the real iasl disassembler.
	iasl := fixtures.RequireTool(t, "iasl")
	bin := buildBinary(t)
	out := filepath.Join(t.TempDir(), "diag.aml")
	_, stderr, code := runBin(t, bin, "-o", out)
	require.Zero(t, code, stderr)
	o, err := exec.Command(iasl, "-d", out).CombinedOutput()
	require.NoError(t, err, "%s", o)
	require.NotRegexp(t, `(?i)warning|error`, string(o))
}

// BenchmarkProcessSsdtgen and BenchmarkProcessIasl measure whole-process wall
// time: ssdtgen writing the default table vs iasl compiling the equivalent
// ASL (the reference testdata/ssdt_hand.asl), run side by side.
func BenchmarkProcessSsdtgen(b *testing.B) {
	bin := buildBinary(b)
	out := filepath.Join(b.TempDir(), "diag.aml")
	b.ReportAllocs()
	for b.Loop() {
		if err := exec.Command(bin, "-o", out).Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProcessIasl(b *testing.B) {
	iasl := fixtures.RequireTool(b, "iasl")
	src, err := os.ReadFile(filepath.Join(fixtures.RepoRoot(), "acpi", "testdata", "ssdt_hand.asl"))
	require.NoError(b, err)
	dir := b.TempDir()
	asl := filepath.Join(dir, "diag.asl")
	require.NoError(b, os.WriteFile(asl, src, 0o644))
	b.ReportAllocs()
	for b.Loop() {
		if err := exec.Command(iasl, "-p", filepath.Join(dir, "out"), asl).Run(); err != nil {
			b.Fatal(err)
		}
	}
}
