package hostreader

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

// putWord writes a little-endian word at a region offset of an image.
func putWord(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

// fieldOff returns the offset of a region field by name (region.Fields is
// the single source of truth; tests fail if a name disappears).
func fieldOff(t testing.TB, name string) int {
	f, ok := region.FieldByName(name)
	require.True(t, ok, "region field %q", name)
	return int(f.Offset)
}

// newImage returns an initialised v1 region image of size bytes: header
// valid, seq even, ticks 1, boots 1, period 10 ds.
func newImage(size int) []byte {
	b := make([]byte, size)
	putWord(b, region.OffMagic, region.Magic)
	putWord(b, region.OffVersion, region.Version)
	putWord(b, region.OffHeaderSize, region.HeaderSize)
	putWord(b, region.OffRegionSize, uint32(size))
	putWord(b, region.OffSeq, 2)
	putWord(b, region.OffTicks, 1)
	putWord(b, region.OffBoots, 1)
	putWord(b, region.OffPeriod, 10)
	return b
}

// setEcho writes an echo of host time at (ms since epoch, lo then hi).
func setEcho(b []byte, at time.Time) {
	ms := uint64(at.UnixMilli())
	putWord(b, region.OffEchoLo, uint32(ms))
	putWord(b, region.OffEchoHi, uint32(ms>>32))
}

func setHostStamp(b []byte, at time.Time) {
	ms := uint64(at.UnixMilli())
	putWord(b, region.OffHostStampLo, uint32(ms))
	putWord(b, region.OffHostStampHi, uint32(ms>>32))
}

func setSlot(b []byte, i int, beat, periodMs uint32, tag string) {
	off, err := region.SlotOffset(i)
	if err != nil {
		panic(err)
	}
	putWord(b, int(off)+region.SlotBeat, beat)
	putWord(b, int(off)+region.SlotPeriodMs, periodMs)
	copy(b[int(off)+region.SlotTag:int(off)+region.SlotTag+region.SlotTagLen], tag)
}

// writeRegionFile writes an image to a new file in dir and returns its path.
func writeRegionFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

// amlWriter imitates the SSDT's tick method on a (separate, writable)
// mapping of a region: under the seqlock (seq odd, words, seq even) it
// bumps ticks, sets timer_lo and copies the host stamp into the echo,
// low word then high word, as the AML does.
type amlWriter struct {
	r     *Region
	ticks uint32
	boots uint32
}

func (a *amlWriter) init(period uint32) {
	a.r.store(region.OffMagic, region.Magic)
	a.r.store(region.OffVersion, region.Version)
	a.r.store(region.OffHeaderSize, region.HeaderSize)
	a.r.store(region.OffRegionSize, uint32(a.r.Len()))
	a.r.store(region.OffPeriod, period)
}

func (a *amlWriter) boot() { a.boots++; a.ticks = 0 }

func (a *amlWriter) tick() {
	seq := a.r.load(region.OffSeq)
	a.r.store(region.OffSeq, seq+1) // odd
	a.ticks++
	a.r.store(region.OffTicks, a.ticks)
	a.r.store(region.OffBoots, a.boots)
	a.r.store(region.OffTimerLo, a.ticks*7)
	a.r.store(region.OffEchoLo, a.r.load(region.OffHostStampLo))
	a.r.store(region.OffEchoHi, a.r.load(region.OffHostStampHi))
	a.r.store(region.OffSeq, seq+2) // even
}

func unsafePointer(p *[numWords]uint32) unsafe.Pointer { return unsafe.Pointer(p) }
