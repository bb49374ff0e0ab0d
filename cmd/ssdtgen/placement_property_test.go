package main

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/region"
)

// randomPlacementFlags draws one set of --region, --size, --machine and
// --memory values, mixing the edges of every rule with plain garbage.
func randomPlacementFlags(r *rand.Rand) []string {
	pick := func(xs ...string) string { return xs[r.Intn(len(xs))] }
	var spec string
	switch r.Intn(5) {
	case 0:
		spec = pick("ivshmem", "ivshmem:", "ivshmem:x", "IVSHMEM", "pci:3", "")
	case 1, 2:
		slot := r.Intn(34)
		spec = pick(fmt.Sprintf("ivshmem:%d", slot), fmt.Sprintf("ivshmem:%#x", slot))
	default:
		addr := []uint64{0, 0x1000, 0xFF000, 0x100000, 0x10000000, 0x10000800, 0x1B000000, 0x1F000000,
			0x7FFF0000, 0x80000000, 0xC0000000, 0xFFFF8000, 0x100000000, uint64(r.Intn(1<<19)) << 12}[r.Intn(14)]
		spec = pick(fmt.Sprintf("fixed:%#x", addr), fmt.Sprintf("fixed:%d", addr), "fixed:", "fixed:zz")
	}
	size := pick("64K", "64K", "64K", "64K", "64K", "64K", "4K", "8K", "12K", "64K", "0x3000", "1M", "5000", "2G", "3G", "0", "lots", "64Q")
	machine := pick("q35", "q35", "q35", "pc", "pc", "microvm")
	memory := pick("512", "512", "512", "512", "512", "128", "256", "1024", "4096", "16", "0", "-1")
	return []string{"--region", spec, "--size", size, "--machine", machine, "--memory", memory}
}

// The same placement flags are accepted or refused by every command, with
// the same message: ssdtgen -o, ssdtgen qemu-args and diagvm run (its
// --dry-run stops before QEMU), over random flag sets.
func TestPlacementFlagsAgreeEverywhere(t *testing.T) {
	ssdtgen := buildBinary(t)
	diagvm := fixtures.BuildCommand(t, "diagvm")
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz") // --dry-run only checks that it is readable
	require.NoError(t, os.WriteFile(kernel, []byte("not a kernel"), 0o644))

	seed := int64(20261129)
	r := rand.New(rand.NewSource(seed))
	accepted, refused := 0, 0
	for i := 0; i < 80; i++ {
		flags := randomPlacementFlags(r)
		aml := filepath.Join(dir, fmt.Sprintf("t%d.aml", i))
		_, e1, c1 := runBin(t, ssdtgen, append(append([]string{}, flags...), "-o", aml)...)
		_, e2, c2 := runBin(t, ssdtgen, append(append([]string{"qemu-args"}, flags...), "--backing", filepath.Join(dir, "b"), "--ssdt", aml)...)
		_, e3, c3 := runBin(t, diagvm, append([]string{"run", "--dry-run", "--kernel", kernel, "--workdir", filepath.Join(dir, fmt.Sprint(i))}, flags...)...)
		m1, m2 := strings.TrimPrefix(e1, "ssdtgen: "), strings.TrimPrefix(e2, "ssdtgen: ")
		m3 := strings.TrimPrefix(e3, "diagvm: run: ")
		what := fmt.Sprintf("seed %d case %d: %q", seed, i, flags)
		require.Equal(t, c1 == 0, c2 == 0, "%s: ssdtgen -o (%d %s) vs qemu-args (%d %s)", what, c1, e1, c2, e2)
		require.Equal(t, c1 == 0, c3 == 0, "%s: ssdtgen -o (%d %s) vs diagvm run (%d %s)", what, c1, e1, c3, e3)
		require.Equal(t, m1, m2, what)
		require.Equal(t, m1, m3, what)

		var mem int
		fmt.Sscan(flags[7], &mem)
		_, _, lerr := region.Flags{Region: flags[1], Size: flags[3], Machine: flags[5], MemoryMB: mem}.Parse()
		if c1 == 0 {
			accepted++
			require.NoError(t, lerr, what)
		} else {
			refused++
			if refused%10 == 1 {
				t.Logf("refused %q: %s", flags, strings.TrimSpace(m1))
			}
			require.Error(t, lerr, what)
			require.Equal(t, lerr.Error()+"\n", m1, what)
		}
	}
	t.Logf("%d flag sets accepted, %d refused", accepted, refused)
	require.NotZero(t, accepted)
	require.NotZero(t, refused)
}

// The two cases the issue names: a fixed region at 3 GiB is refused by
// ssdtgen -o as by qemu-args, and ivshmem:0 is refused when parsed.
func TestPlacementIssueCases(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	_, e1, c1 := runBin(t, bin, "--region", "fixed:0xC0000000", "-o", filepath.Join(dir, "t.aml"))
	_, e2, c2 := runBin(t, bin, "qemu-args", "--region", "fixed:0xC0000000", "--backing", filepath.Join(dir, "ram"))
	require.NotZero(t, c1)
	require.NotZero(t, c2)
	require.Equal(t, e1, e2)
	require.Contains(t, e1, "--region fixed:0xC0000000: region [0xc0000000, 0xc0010000) ends above 2 GiB")
	_, err := os.Stat(filepath.Join(dir, "t.aml"))
	require.True(t, os.IsNotExist(err), "no table is written for a refused placement")
	_, _, _, perr := region.ParseSpec("ivshmem:0")
	require.Error(t, perr)
	_, e3, c3 := runBin(t, bin, "--region", "ivshmem:0", "--asl")
	require.NotZero(t, c3)
	require.Contains(t, e3, "slot 0 is the host bridge")
}
