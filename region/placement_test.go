package region_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

func TestParseSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		p    region.Placement
		slot uint8
		addr uint64
	}{
		{"ivshmem", region.Ivshmem, 0x10, 0},
		{"ivshmem:0x11", region.Ivshmem, 0x11, 0},
		{"ivshmem:5", region.Ivshmem, 5, 0},
		{"ivshmem:0x1f", region.Ivshmem, 0x1f, 0},
		{"fixed:0x10000000", region.Fixed, 0, 0x10000000},
	} {
		p, slot, addr, err := region.ParseSpec(c.in)
		require.NoError(t, err, c.in)
		assert.Equal(t, []any{c.p, c.slot, c.addr}, []any{p, slot, addr}, c.in)
	}
	for _, bad := range []string{"", "ivshmem:", "ivshmem:0", "ivshmem:0x0", "ivshmem:0x20", "ivshmem:x", "fixed", "fixed:", "fixed:zz", "mmio:0x1000", "IVSHMEM"} {
		_, _, _, err := region.ParseSpec(bad)
		require.Error(t, err, "%q", bad)
		assert.Contains(t, err.Error(), fmt.Sprintf("%q", bad))
	}
	_, _, _, err := region.ParseSpec("ivshmem:0")
	assert.Contains(t, err.Error(), "host bridge", "ivshmem:0 is refused at parse, saying why")
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"4096": 4096, "0x10000": 0x10000, "64K": 64 << 10, "64k": 64 << 10, "1M": 1 << 20, "2G": 2 << 30} {
		got, err := region.ParseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "K", "64Q", "-1", "0x", "99999999999999999999G", "17179869184G"} {
		_, err := region.ParseSize(bad)
		require.Error(t, err, "%q", bad)
	}
}

func TestValidateOn(t *testing.T) {
	q35 := region.Target{Machine: region.MachineQ35, MemoryMB: 512}
	pc := region.Target{Machine: region.MachinePC, MemoryMB: 512}
	iv := func(slot uint8, size uint64) region.Spec {
		return region.Spec{Placement: region.Ivshmem, Slot: slot, Size: size}
	}
	fx := func(addr, size uint64) region.Spec {
		return region.Spec{Placement: region.Fixed, Address: addr, Size: size}
	}
	require.NoError(t, region.DefaultSpec().ValidateOn(q35))
	require.NoError(t, iv(0x1f, 4096).ValidateOn(pc))
	require.NoError(t, iv(1, 4096).ValidateOn(q35))
	require.NoError(t, fx(0x10000000, 64<<10).ValidateOn(q35))
	for _, c := range []struct {
		name  string
		s     region.Spec
		t     region.Target
		field string
		msg   string
	}{
		{"slot 0", iv(0, 64<<10), q35, "Slot", "host bridge"},
		{"slot 32", iv(32, 64<<10), q35, "Slot", "1..31"},
		{"q35 ICH9", iv(0x1f, 64<<10), q35, "Slot", "ICH9"},
		{"pc PIIX3", iv(1, 64<<10), pc, "Slot", "PIIX3"},
		{"not pow2", iv(0x10, 0x3000), q35, "Size", "power of two"},
		{"small", iv(0x10, 2048), q35, "Size", "minimum"},
		{"huge", fx(0x10000000, 4<<30), q35, "Size", "2 GiB"},
		{"unaligned size", fx(0x10000000, 5000), q35, "Size", "4096"},
		{"fixed 0", fx(0, 4096), q35, "Address", "non-zero"},
		{"fixed low", fx(0x1000, 4096), q35, "Address", "first MiB"},
		{"fixed 3G", fx(0xC0000000, 64<<10), q35, "Address", "above 2 GiB"},
		{"fixed crosses 2G", fx(0x7FFFF000, 64<<10), region.Target{Machine: "q35", MemoryMB: 4096}, "Address", "above 2 GiB"},
		{"fixed unaligned", fx(0x10000800, 4096), q35, "Address", "page aligned"},
		{"fixed small mem", fx(0x10000000, 64<<10), region.Target{Machine: "q35", MemoryMB: 256}, "MemoryMB", "too small"},
		{"fixed no mem", fx(0x10000000, 64<<10), region.Target{Machine: "q35"}, "MemoryMB", "must be set"},
		{"machine", region.DefaultSpec(), region.Target{Machine: "microvm"}, "Machine", "unknown machine"},
		{"placement", region.Spec{Placement: 7, Size: 4096}, q35, "Placement", "Ivshmem or Fixed"},
	} {
		err := c.s.ValidateOn(c.t)
		var pe *region.PlacementError
		require.True(t, errors.As(err, &pe), "%s: %v", c.name, err)
		assert.Equal(t, c.field, pe.Field, c.name)
		assert.Contains(t, pe.Msg, c.msg, c.name)
	}
	// Validate alone knows no machine: the built-in slots pass.
	require.NoError(t, iv(0x1f, 4096).Validate())
}

func TestFlagsParse(t *testing.T) {
	f := region.Flags{Region: "fixed:0xC0000000", Size: "64K", Machine: "q35", MemoryMB: 4096}
	_, _, err := f.Parse()
	require.Error(t, err)
	assert.Regexp(t, `^--region fixed:0xC0000000: region \[0xc0000000, 0xc0010000\) ends above 2 GiB`, err.Error())
	f = region.Flags{Region: "ivshmem:0", Size: "64K", Machine: "q35", MemoryMB: 512}
	_, _, err = f.Parse()
	assert.EqualError(t, err, `--region ivshmem:0: slot 0 is the host bridge, not a usable slot; pick a free slot such as 0x10`)
	f = region.Flags{Region: "fixed:0x10000000", Size: "64K", Machine: "q35", MemoryMB: 256}
	_, _, err = f.Parse()
	assert.Regexp(t, `^--memory 256: too small`, err.Error())
	f = region.Flags{Region: "ivshmem", Size: "12K", Machine: "q35", MemoryMB: 512}
	_, _, err = f.Parse()
	assert.Regexp(t, `^--size 12K: ivshmem sizes must be a power of two`, err.Error())
	var fe *region.FlagError
	assert.True(t, errors.As(err, &fe) && fe.Flag == "--size")
}
