package acpi_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/acpi"
	"github.com/acpidiag/acpidiag/region"
)

// tickTarget says how to run the tick of one SSDT under acpiexec.
type tickTarget struct {
	ssdt string      // path of the SSDT (.aml)
	cfg  acpi.Config // the configuration it was built for
	base uint64      // where the region is (BAR2 preset for ivshmem)
}

func (tt tickTarget) tmp() string  { return `\_TZ.` + tt.cfg.ZoneName + `._TMP` }
func (tt tickTarget) tzp() string  { return `\_TZ.` + tt.cfg.ZoneName + `._TZP` }
func (tt tickTarget) tick() string { return "execute " + tt.tmp() }

// pciInit presets the ivshmem device's PCI config fields for acpiexec.
func (tt tickTarget) pciInit(ids uint32, bar2, bar3 uint32) map[string]uint64 {
	if tt.cfg.Placement != acpi.PlaceIvshmem {
		return nil
	}
	dev := `\_SB.PCI0.` + tt.cfg.DeviceName + `.`
	return map[string]uint64{dev + "PVID": uint64(ids), dev + "BAR2": uint64(bar2), dev + "BAR3": uint64(bar3)}
}

// goodInit is a valid ivshmem device: 1af4:1110, 64-bit prefetchable BAR2
// (flag bits 0xC set, which the AML must mask off) below 4 GiB.
func (tt tickTarget) goodInit() map[string]uint64 {
	return tt.pciInit(0x11101af4, uint32(tt.base)|0xC, 0)
}

func (tt tickTarget) run(t *testing.T, machine string, init map[string]uint64, extra []string, cmds ...string) execRun {
	t.Helper()
	tables := append([]string{qemuDSDT(t, machine), tt.ssdt}, extra...)
	r := runAcpiexec(t, tables, init, cmds...)
	require.Empty(t, r.Errors, "acpiexec reported errors:\n%s", r.Out)
	return r
}

func word(img []byte, off uint32) uint32 { return binary.LittleEndian.Uint32(img[off:]) }

func writtenOffsets(t *testing.T, tt tickTarget, evals []evalResult) map[uint32]bool {
	t.Helper()
	set := map[uint32]bool{}
	for _, e := range evals {
		for _, w := range e.writes() {
			require.Equal(t, 32, w.Bits, "every region write is one 32-bit word: %+v", w)
			require.GreaterOrEqual(t, w.Addr, tt.base, "write below the region: %+v", w)
			require.Less(t, w.Addr+3, tt.base+tt.cfg.Size, "write beyond the region: %+v", w)
			set[uint32(w.Addr-tt.base)] = true
		}
	}
	return set
}

// checkTwoTicks runs the tick twice on a fresh region and checks every word.
func checkTwoTicks(t *testing.T, tt tickTarget, machine string) []byte {
	r := tt.run(t, machine, tt.goodInit(), nil, tt.tick(), tt.tick())
	ticks := r.evals(tt.tmp())
	require.Len(t, ticks, 2)
	for i, e := range ticks {
		require.Empty(t, e.Status, "tick %d failed", i)
		require.Equal(t, fmt.Sprintf("%016X", acpi.SafeTemperature), e.Ret, "tick %d must return the safe temperature", i)
	}
	img := r.image(tt.base, int(tt.cfg.Size))
	assert.Equal(t, region.Magic, word(img, region.OffMagic))
	assert.Equal(t, uint32(region.Version), word(img, region.OffVersion))
	assert.Equal(t, uint32(region.HeaderSize), word(img, region.OffHeaderSize))
	assert.Equal(t, uint32(tt.cfg.Size), word(img, region.OffRegionSize))
	assert.Equal(t, uint32(4), word(img, region.OffSeq), "two ticks leave seq even: 0→1→2→3→4")
	assert.Equal(t, uint32(2), word(img, region.OffTicks))
	assert.Equal(t, uint32(1), word(img, region.OffBoots), "the second tick of a boot must not count a boot")
	assert.Equal(t, uint32(tt.cfg.Tick.Milliseconds()/100), word(img, region.OffPeriod))
	osi := word(img, region.OffOSI)
	assert.NotZero(t, osi&region.OSIValid, "OSI word valid bit")
	assert.NotZero(t, osi&(1<<7), "acpiexec answers _OSI(\"Windows 2015\") true")
	assert.Zero(t, osi&1, "acpiexec answers _OSI(\"Linux\") false")
	assert.Equal(t, uint32(2), word(img, region.OffRev), "acpiexec's _REV is 2")

	// seqlock: first write of each tick makes seq odd, last makes it even.
	for i, e := range ticks {
		w := e.writes()
		require.NotEmpty(t, w)
		assert.Equal(t, tt.base+region.OffSeq, w[0].Addr, "tick %d: first write is seq", i)
		assert.Equal(t, uint32(2*i+1), w[0].Val, "tick %d: seq odd during update", i)
		assert.Equal(t, tt.base+region.OffSeq, w[len(w)-1].Addr, "tick %d: last write is seq", i)
		assert.Equal(t, uint32(2*i+2), w[len(w)-1].Val, "tick %d: seq even after update", i)
	}
	// Timer low word moves between ticks.
	var timers []uint32
	for _, e := range ticks {
		for _, w := range e.writes() {
			if w.Addr == tt.base+region.OffTimerLo {
				timers = append(timers, w.Val)
			}
		}
	}
	require.Len(t, timers, 2)
	assert.NotEqual(t, timers[0], timers[1], "Timer() low word must change between ticks")
	return img
}

func TestHandASLTwoTicks(t *testing.T) {
	// The hand-written ASL this package's generator was designed from
	// (testdata/ssdt_hand.asl), compiled by the real iasl: a reference for
	// the generated table's behaviour.
	src, err := os.ReadFile(filepath.Join("testdata", "ssdt_hand.asl"))
	require.NoError(t, err)
	tt := tickTarget{ssdt: iaslCompile(t, string(src)), cfg: acpi.DefaultConfig(), base: 0xFE000000}
	for _, m := range []string{"q35", "pc"} {
		t.Run(m, func(t *testing.T) { checkTwoTicks(t, tt, m) })
	}
}

// sortedKeys is for readable failure messages.
func sortedKeys(m map[uint32]bool) []uint32 {
	var k []uint32
	for o := range m {
		k = append(k, o)
	}
	sort.Slice(k, func(i, j int) bool { return k[i] < k[j] })
	return k
}
