package ssdt_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/acpidiag/acpidiag/acpi"
	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/region"
	"github.com/acpidiag/acpidiag/ssdt"
)

// FuzzDescribeTable: any bytes given to "ssdtgen --asl"/"ssdtgen decode"
// printing either print or return an error; never a panic or a hang. Seeded with our tables
// and every real QEMU DSDT/SSDT of the fixtures.
func FuzzDescribeTable(f *testing.F) {
	for _, c := range []ssdt.Config{ssdt.DefaultConfig(), fixedConfig()} {
		b, err := ssdt.Build(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	paths, _ := filepath.Glob(filepath.Join(fixtures.Real(f), "tables", "*", "*SDT.dat"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = acpi.DescribeTable(io.Discard, b, acpi.DescribeOptions{Offsets: len(b)%2 == 0})
	})
}

// FuzzParseRegionSpec: command-line placements (--region, --size,
// --machine, --memory) parse or fail cleanly, and whatever region.Flags
// accepts builds a table and validates in acpi too.
func FuzzParseRegionSpec(f *testing.F) {
	for _, s := range []string{"ivshmem", "ivshmem:0x10", "ivshmem:31", "fixed:0x10000000", "fixed:", "x", "ivshmem:0x100", "fixed:0xffffffffffffffff"} {
		f.Add(s, "64K", "q35", 512)
	}
	f.Fuzz(func(t *testing.T, spec, size, machine string, mem int) {
		s, _, err := region.Flags{Region: spec, Size: size, Machine: machine, MemoryMB: mem}.Parse()
		if err != nil {
			return
		}
		c := ssdt.DefaultConfig()
		c.Placement, c.Slot, c.Address, c.Size = s.Placement, s.Slot, s.Address, s.Size
		if err := c.Validate(); err != nil {
			t.Fatalf("region.Flags accepts %q %q but acpi refuses: %v", spec, size, err)
		}
		if _, err := ssdt.Build(c); err != nil {
			t.Fatalf("valid config %+v does not build: %v", c, err)
		}
	})
}

func BenchmarkDescribeTableQEMUDSDT(b *testing.B) {
	tbl, err := os.ReadFile(filepath.Join(fixtures.Real(b), "tables", "q35_seabios_default", "DSDT.dat"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := acpi.DescribeTable(io.Discard, tbl, acpi.DescribeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
