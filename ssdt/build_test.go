package ssdt_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/acpi"
	"github.com/acpidiag/acpidiag/aml"
	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/region"
	"github.com/acpidiag/acpidiag/ssdt"
)

func TestDefaultTableSize(t *testing.T) {
	b, err := ssdt.Build(ssdt.DefaultConfig())
	require.NoError(t, err)
	t.Logf("default SSDT: %d bytes", len(b))
	require.LessOrEqual(t, len(b), 1024, "the default table must fit in 1 KiB")
	h, body, err := acpi.Parse(b)
	require.NoError(t, err)
	assert.Equal(t, "SSDT", h.Signature)
	assert.Equal(t, ssdt.DefaultOEMID, h.OEMID)
	assert.Equal(t, ssdt.DefaultTableID, h.OEMTableID)
	assert.Equal(t, uint8(0), acpi.Checksum(b))
	_, err = aml.Decode(body)
	require.NoError(t, err)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, ssdt.DefaultConfig().Validate())
	require.NoError(t, fixedConfig().Validate())
	mod := func(f func(*ssdt.Config)) ssdt.Config { c := ssdt.DefaultConfig(); f(&c); return c }
	fixed := func(f func(*ssdt.Config)) ssdt.Config { c := fixedConfig(); f(&c); return c }
	for _, c := range []struct {
		name  string
		cfg   ssdt.Config
		field string
		msg   string
	}{
		{"slot_too_big", mod(func(c *ssdt.Config) { c.Slot = 32 }), "Slot", "1..31"},
		{"slot_zero", mod(func(c *ssdt.Config) { c.Slot = 0 }), "Slot", "host bridge"},
		{"placement", mod(func(c *ssdt.Config) { c.Placement = 7 }), "Placement", "Ivshmem"},
		{"size_small", mod(func(c *ssdt.Config) { c.Size = 2048 }), "Size", "minimum"},
		{"size_not_pow2", mod(func(c *ssdt.Config) { c.Size = 12288 }), "Size", "power of two"},
		{"size_not_page", fixed(func(c *ssdt.Config) { c.Size = 5000 }), "Size", "4096"},
		{"size_huge", fixed(func(c *ssdt.Config) { c.Size = 4 << 30 }), "Size", "2 GiB"},
		{"fixed_no_addr", fixed(func(c *ssdt.Config) { c.Address = 0 }), "Address", "non-zero"},
		{"fixed_unaligned", fixed(func(c *ssdt.Config) { c.Address = 0x10000010 }), "Address", "aligned"},
		{"fixed_above_4g", fixed(func(c *ssdt.Config) { c.Address = 0x100000000 }), "Address", "4 GiB"},
		{"fixed_crosses_4g", fixed(func(c *ssdt.Config) { c.Address = 0xFFFF8000 }), "Address", "4 GiB"},
		{"fixed_above_2g", fixed(func(c *ssdt.Config) { c.Address = 0xC0000000 }), "Address", "above 2 GiB"},
		{"fixed_first_mib", fixed(func(c *ssdt.Config) { c.Address = 0x1000 }), "Address", "first MiB"},
		{"tick_short", mod(func(c *ssdt.Config) { c.Tick = 50 * time.Millisecond }), "Tick", "between"},
		{"tick_long", mod(func(c *ssdt.Config) { c.Tick = 2 * time.Hour }), "Tick", "between"},
		{"tick_granularity", mod(func(c *ssdt.Config) { c.Tick = 1050 * time.Millisecond }), "Tick", "deciseconds"},
		{"oemid_long", mod(func(c *ssdt.Config) { c.OEMID = "TOOLONG" }), "OEMID", "at most 6"},
		{"oemid_empty", mod(func(c *ssdt.Config) { c.OEMID = "" }), "OEMID", ""},
		{"oemid_nonprint", mod(func(c *ssdt.Config) { c.OEMID = "A\x01" }), "OEMID", "non-printable"},
		{"tableid_long", mod(func(c *ssdt.Config) { c.TableID = "NINECHARS" }), "TableID", "at most 8"},
		{"zone_short", mod(func(c *ssdt.Config) { c.ZoneName = "DG" }), "ZoneName", "4 characters"},
		{"zone_lower", mod(func(c *ssdt.Config) { c.ZoneName = "diag" }), "ZoneName", "not allowed"},
		{"zone_digit_first", mod(func(c *ssdt.Config) { c.ZoneName = "1DIA" }), "ZoneName", "not allowed"},
		{"zone_reserved", mod(func(c *ssdt.Config) { c.ZoneName = "_TZ_" }), "ZoneName", "reserved"},
		{"zone_region_field", mod(func(c *ssdt.Config) { c.ZoneName = "TICK" }), "ZoneName", "region field ticks"},
		{"zone_internal", mod(func(c *ssdt.Config) { c.ZoneName = "DGPV" }), "ZoneName", "internally"},
		{"device_internal_osi", mod(func(c *ssdt.Config) { c.DeviceName = "DGOS" }), "DeviceName", "internally"},
		{"device_eq_zone", mod(func(c *ssdt.Config) { c.DeviceName = c.ZoneName }), "DeviceName", "differ"},
		{"device_qemu_slot", mod(func(c *ssdt.Config) { c.DeviceName = "S80_" }), "DeviceName", "S<devfn>_"},
		{"device_qemu_name", mod(func(c *ssdt.Config) { c.DeviceName = "PRES" }), "DeviceName", "already defines"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			var ce *ssdt.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, c.field, ce.Field)
			assert.Contains(t, ce.Msg, c.msg)
			assert.True(t, errors.Is(err, ssdt.ErrConfig))
			assert.Contains(t, err.Error(), c.field)
			_, berr := ssdt.Build(c.cfg)
			require.ErrorAs(t, berr, &ce, "Build refuses what Validate refuses")
		})
	}
	// Fixed placement ignores the device name; ivshmem ignores the address.
	c := fixedConfig()
	c.DeviceName = "x"
	require.NoError(t, c.Validate())
}

// fixtureTables returns every DSDT/SSDT of the shared QEMU fixtures.
func fixtureTables(t *testing.T) map[string][]string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(fixtures.Real(t), "tables", "*"))
	require.NoError(t, err)
	out := map[string][]string{}
	for _, d := range dirs {
		for _, n := range []string{"DSDT.dat", "SSDT.dat"} {
			if _, err := os.Stat(filepath.Join(d, n)); err == nil {
				out[filepath.Base(d)] = append(out[filepath.Base(d)], filepath.Join(d, n))
			}
		}
	}
	require.NotEmpty(t, out)
	return out
}

func TestDefaultNamesAbsentFromQEMUTables(t *testing.T) {
	// No QEMU table (any machine/feature in the fixtures) contains our
	// default zone or device name as a NameSeg anywhere.
	for cfgName, files := range fixtureTables(t) {
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			for _, n := range []string{ssdt.DefaultZoneName, ssdt.DefaultDeviceName} {
				assert.False(t, bytes.Contains(b, []byte(n)), "%s/%s contains %s", cfgName, filepath.Base(f), n)
			}
		}
	}
}

var reNSLine = regexp.MustCompile(`^\s*(\d+)\s+([A-Z_][A-Z0-9_]{3})\s+(\w+)`)

// namespaceNames loads tables into acpiexec and returns every namespace
// object as "depth name type", in dump order.
func namespaceNames(t *testing.T, scope string, depth int, tables ...string) []string {
	t.Helper()
	cmd := "namespace"
	if scope != "" {
		cmd = fmt.Sprintf("namespace %s %d", scope, depth)
	}
	r := runAcpiexec(t, tables, nil, cmd)
	require.Empty(t, r.Errors, r.Out)
	var names []string
	inDump := false
	for _, line := range strings.Split(r.Out, "\n") {
		if strings.HasPrefix(line, "ACPI Namespace") {
			inDump = true
			continue
		}
		if m := reNSLine.FindStringSubmatch(line); inDump && m != nil {
			names = append(names, m[1]+" "+m[2]+" "+m[3])
		}
	}
	require.NotEmpty(t, names, r.Out)
	return names
}

func TestValidateRefusesEveryQEMUPCI0Name(t *testing.T) {
	// Every name QEMU defines directly under \_SB.PCI0 in any fixture is
	// refused as DeviceName.
	seen := map[string]bool{}
	for _, files := range fixtureTables(t) {
		for _, l := range namespaceNames(t, `\_SB.PCI0`, 1, files...) {
			f := strings.Fields(l)
			if f[0] == "0" && !strings.HasPrefix(f[1], "_") {
				seen[f[1]] = true
			}
		}
	}
	require.Contains(t, seen, "PRES")
	for n := range seen {
		c := ssdt.DefaultConfig()
		c.DeviceName = n
		var ce *ssdt.ConfigError
		require.ErrorAs(t, c.Validate(), &ce, "QEMU name %s must be refused", n)
	}
}

func TestIaslDisassembleAndRecompile(t *testing.T) {
	iasl := fixtures.RequireTool(t, "iasl")
	for _, cfg := range []ssdt.Config{ssdt.DefaultConfig(), fixedConfig()} {
		t.Run(cfg.Placement.String(), func(t *testing.T) {
			tt := buildTarget(t, cfg)
			dir := filepath.Dir(tt.ssdt)
			out, err := exec.Command(iasl, "-d", tt.ssdt).CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.NotRegexp(t, `(?i)warning|error`, string(out), "iasl -d must be clean")
			dsl := filepath.Join(dir, "diag.dsl")
			src, err := os.ReadFile(dsl)
			require.NoError(t, err)
			require.NotRegexp(t, `(?i)warning|error|unresolved`, string(src))
			out, err = exec.Command(iasl, "-p", filepath.Join(dir, "re"), dsl).CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "0 Errors, 0 Warnings")
			re, err := os.ReadFile(filepath.Join(dir, "re.aml"))
			require.NoError(t, err)
			orig, err := os.ReadFile(tt.ssdt)
			require.NoError(t, err)
			// iasl re-creates our AML byte for byte (only the creator
			// fields of the header differ).
			assert.Equal(t, orig[36:], re[36:], "recompiled body")
			dsdt := qemuDSDT(t, "q35")
			assert.Equal(t, namespaceNames(t, "", 0, dsdt, tt.ssdt),
				namespaceNames(t, "", 0, dsdt, filepath.Join(dir, "re.aml")))
		})
	}
}

// randomConfig returns a random valid configuration and, for ivshmem, a
// BAR2 base aligned to its size below 4 GiB.
func randomConfig(rng *rand.Rand) (ssdt.Config, uint64) {
	c := ssdt.DefaultConfig()
	c.Tick = time.Duration(1+rng.Intn(int(region.MaxPeriod))) * 100 * time.Millisecond
	c.OEMID = []string{"ACPIDG", "X", "EDGE01"}[rng.Intn(3)]
	c.TableID = []string{"DIAGSSDT", "T", "VM42"}[rng.Intn(3)]
	c.ZoneName = []string{"DIAG", "HBT0", "Z___"}[rng.Intn(3)]
	if rng.Intn(2) == 0 {
		c.Size = 4096 << rng.Intn(11) // 4K .. 4M
		c.Slot = uint8(1 + rng.Intn(31))
		c.DeviceName = []string{"DGIV", "IVSH", "Q___"}[rng.Intn(3)]
		slots := (1<<32)/c.Size - 1
		base := (1 + uint64(rng.Int63n(int64(slots)))) * c.Size
		return c, base
	}
	c.Placement = ssdt.PlaceFixed
	c.Size = 4096 * uint64(1+rng.Intn(64))
	// Low RAM, above the first MiB, ending by 2 GiB (region.Spec.Validate).
	c.Address = region.FixedMinAddress + 4096*uint64(rng.Int63n(int64((region.FixedMaxEnd-region.FixedMinAddress-c.Size)/4096+1)))
	return c, c.Address
}

func TestPropertyRandomConfigs(t *testing.T) {
	rng := rand.New(rand.NewSource(20261122))
	for i := 0; i < 20; i++ {
		cfg, base := randomConfig(rng)
		name := fmt.Sprintf("%d_%s_%#x_%#x", i, cfg.Placement, base, cfg.Size)
		t.Run(name, func(t *testing.T) {
			require.NoError(t, cfg.Validate())
			b, err := ssdt.Build(cfg)
			require.NoError(t, err)
			require.Zero(t, acpi.Checksum(b))
			h, body, err := acpi.Parse(b)
			require.NoError(t, err)
			require.Equal(t, cfg.OEMID, h.OEMID)
			_, err = aml.Decode(body)
			require.NoError(t, err)
			tt := buildTarget(t, cfg)
			tt.base = base
			r := tt.run(t, []string{"q35", "pc"}[i%2], tt.goodInit(), nil, tt.tick(), tt.tick())
			ticks := r.evals(tt.tmp())
			require.Len(t, ticks, 2)
			n := 0
			for _, e := range ticks {
				for _, m := range e.Mem {
					require.GreaterOrEqual(t, m.Addr, base, "%+v", m)
					require.LessOrEqual(t, m.Addr+uint64(m.Bits/8), base+cfg.Size, "%+v", m)
					n++
				}
			}
			require.NotZero(t, n)
			img := r.image(base, int(cfg.Size))
			require.Equal(t, uint32(cfg.Size), word(img, region.RegionSize.Offset))
			require.Equal(t, uint32(cfg.Tick/(100*time.Millisecond)), word(img, region.Period.Offset))
		})
	}
}

func BenchmarkBuildDefault(b *testing.B) {
	c := ssdt.DefaultConfig()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ssdt.Build(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildFixed(b *testing.B) {
	c := ssdt.DefaultConfig()
	c.Placement, c.Address = ssdt.PlaceFixed, 0x10000000
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ssdt.Build(c); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDescribeTableCompilesBack(t *testing.T) {
	// The ASL that acpi.DescribeTable ("ssdtgen --asl") prints for the
	// generated table compiles with the real iasl into the same AML body.
	var fe *acpi.FormatError
	require.ErrorAs(t, acpi.DescribeTable(io.Discard, []byte("SSDT"), acpi.DescribeOptions{}), &fe)
	for _, cfg := range []ssdt.Config{ssdt.DefaultConfig(), fixedConfig()} {
		b, err := ssdt.Build(cfg)
		require.NoError(t, err)
		var asl bytes.Buffer
		require.NoError(t, acpi.DescribeTable(&asl, b, acpi.DescribeOptions{}))
		require.Contains(t, asl.String(), `DefinitionBlock ("", "SSDT", 2, "ACPIDG", "DIAGSSDT", 0x00000001)`)
		require.Contains(t, asl.String(), "ThermalZone (DIAG)")
		// The predefined \_OSI takes one argument: printed as a bare name
		// followed by the string, the ASL would not compile back.
		require.NotContains(t, asl.String(), "If (_OSI)\n", "aml.Decode must treat the predefined \\_OSI as a 1-argument method")
		require.Contains(t, asl.String(), `If (_OSI ("`)
		rePath := iaslCompile(t, asl.String())
		re, err := os.ReadFile(rePath)
		require.NoError(t, err)
		body, reBody := b[acpi.HeaderSize:], re[acpi.HeaderSize:]
		if cfg.Placement == ssdt.PlaceIvshmem {
			// The printed "If (Zero) { External (...) }" comes back from
			// iasl as its own If (Zero) {External} followed by our If
			// (Zero) {} left empty (A0 02 00); everything else is identical.
			ext := 16 // A0 0F 00 + External(\_SB.PCI0, DeviceObj, 0)
			require.Equal(t, body[:ext], reBody[:ext])
			require.Equal(t, []byte{aml.IfOp, 0x02, aml.ZeroOp}, reBody[ext:ext+3])
			reBody = append(append([]byte(nil), reBody[:ext]...), reBody[ext+3:]...)
		}
		assert.Equal(t, body, reBody, "%s:\n%s", cfg.Placement, asl.String())
		dsdt := qemuDSDT(t, "q35")
		tt := buildTarget(t, cfg)
		assert.Equal(t, namespaceNames(t, "", 0, dsdt, tt.ssdt), namespaceNames(t, "", 0, dsdt, rePath))
	}
}
