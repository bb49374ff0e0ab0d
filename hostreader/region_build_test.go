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

// newImage returns an initialised v1 region image of size bytes: header
// valid, seq even, ticks 1, boots 1, period 10 ds.
func newImage(size int) []byte {
	b := make([]byte, size)
	putWord(b, region.MagicWord.Offset, region.Magic)
	putWord(b, region.VersionWord.Offset, region.Version)
	putWord(b, region.HeaderSizeWord.Offset, region.HeaderSize)
	putWord(b, region.RegionSize.Offset, uint32(size))
	putWord(b, region.Seq.Offset, 2)
	putWord(b, region.Ticks.Offset, 1)
	putWord(b, region.Boots.Offset, 1)
	putWord(b, region.Period.Offset, 10)
	return b
}

// setEcho writes an echo of host time at (ms since epoch, lo then hi).
func setEcho(b []byte, at time.Time) {
	ms := uint64(at.UnixMilli())
	putWord(b, region.EchoLo.Offset, uint32(ms))
	putWord(b, region.EchoHi.Offset, uint32(ms>>32))
}

func setHostStamp(b []byte, at time.Time) {
	ms := uint64(at.UnixMilli())
	putWord(b, region.HostStampLo.Offset, uint32(ms))
	putWord(b, region.HostStampHi.Offset, uint32(ms>>32))
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
	a.r.store(region.MagicWord.Offset, region.Magic)
	a.r.store(region.VersionWord.Offset, region.Version)
	a.r.store(region.HeaderSizeWord.Offset, region.HeaderSize)
	a.r.store(region.RegionSize.Offset, uint32(a.r.Len()))
	a.r.store(region.Period.Offset, period)
}

func (a *amlWriter) boot() { a.boots++; a.ticks = 0 }

func (a *amlWriter) tick() {
	seq := a.r.load(region.Seq.Offset)
	a.r.store(region.Seq.Offset, seq+1) // odd
	a.ticks++
	a.r.store(region.Ticks.Offset, a.ticks)
	a.r.store(region.Boots.Offset, a.boots)
	a.r.store(region.TimerLo.Offset, a.ticks*7)
	a.r.store(region.EchoLo.Offset, a.r.load(region.HostStampLo.Offset))
	a.r.store(region.EchoHi.Offset, a.r.load(region.HostStampHi.Offset))
	a.r.store(region.Seq.Offset, seq+2) // even
}

func unsafePointer(p *[numWords]uint32) unsafe.Pointer { return unsafe.Pointer(p) }
