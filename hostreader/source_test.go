package hostreader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

func TestOpenRegionReadsFile(t *testing.T) {
	img := newImage(64 << 10)
	putWord(img, region.Ticks.Offset, 42)
	p := writeRegionFile(t, t.TempDir(), "r.bin", img)
	r, err := OpenRegion(p, OpenOptions{})
	require.NoError(t, err)
	defer r.Close()
	assert.Equal(t, int64(64<<10), r.Len())
	assert.False(t, r.Writable())
	s, err := r.Snapshot()
	require.NoError(t, err)
	assert.Equal(t, uint32(42), s.Ticks)
	assert.Equal(t, region.Magic, s.Magic)
	assert.False(t, s.Torn)
	assert.Equal(t, 1, s.Attempts)

	// The mapping is live: a write to the file shows in the next snapshot.
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	require.NoError(t, err)
	var w [4]byte
	binary.LittleEndian.PutUint32(w[:], 43)
	_, err = f.WriteAt(w[:], int64(region.Ticks.Offset))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	s, err = r.Snapshot()
	require.NoError(t, err)
	assert.Equal(t, uint32(43), s.Ticks)
}

func TestOpenRegionRefusesBadSources(t *testing.T) {
	dir := t.TempDir()
	short := writeRegionFile(t, dir, "short", make([]byte, region.HeaderSize-1))
	empty := writeRegionFile(t, dir, "empty", nil)
	bigp := writeRegionFile(t, dir, "big", newImage(4096))

	cases := []struct {
		name, path string
		opts       OpenOptions
		field      string
		offset     int64
	}{
		{"short", short, OpenOptions{}, "source", region.HeaderSize - 1},
		{"empty", empty, OpenOptions{}, "source", 0},
		{"odd offset", bigp, OpenOptions{Offset: 2}, "offset", 2},
		{"negative offset", bigp, OpenOptions{Offset: -4}, "offset", -4},
		{"offset past end", bigp, OpenOptions{Offset: 8192}, "offset", 8192},
		{"header past end", bigp, OpenOptions{Offset: 4096 - 128}, "source", 128},
		{"size past end", bigp, OpenOptions{Size: 8192}, "source", 0},
		{"directory", dir, OpenOptions{}, "source", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := OpenRegion(c.path, c.opts)
			require.Error(t, err)
			assert.Nil(t, r)
			var re *RegionError
			require.True(t, errors.As(err, &re), "%v", err)
			assert.Equal(t, c.field, re.Field)
			assert.Equal(t, c.offset, re.Offset)
			assert.Contains(t, err.Error(), c.path)
		})
	}
	_, err := OpenRegion(filepath.Join(dir, "missing"), OpenOptions{})
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestOpenRegionAbsentFileIsFine(t *testing.T) {
	// An all-zero file (guest not booted yet) opens; the verdict says absent.
	p := writeRegionFile(t, t.TempDir(), "zero", make([]byte, 4096))
	r, err := OpenRegion(p, OpenOptions{})
	require.NoError(t, err)
	defer r.Close()
	s, err := r.Snapshot()
	require.NoError(t, err)
	assert.Equal(t, StateAbsent, Assess(s, VerdictConfig{}, nil).State)
}

func TestOpenRegionAtOffset(t *testing.T) {
	// Fixed-address placement: the region sits in a RAM backing file at the
	// guest-physical address; here 3 pages + 256 bytes in (not page aligned).
	const off = 3*4096 + 256
	ram := make([]byte, 64<<10)
	img := newImage(4096)
	putWord(img, region.Ticks.Offset, 7)
	copy(ram[off:], img)
	p := writeRegionFile(t, t.TempDir(), "ram", ram)
	r, err := OpenRegion(p, OpenOptions{Offset: off, Size: 4096})
	require.NoError(t, err)
	defer r.Close()
	assert.Equal(t, int64(4096), r.Len())
	s, err := r.Snapshot()
	require.NoError(t, err)
	assert.Equal(t, uint32(7), s.Ticks)
	assert.Equal(t, StateUnknown, Assess(s, VerdictConfig{}, nil).State)

	// Without Size the mapping runs to the end of the file.
	r2, err := OpenRegion(p, OpenOptions{Offset: off})
	require.NoError(t, err)
	defer r2.Close()
	assert.Equal(t, int64(len(ram)-off), r2.Len())

	// The same through a dump in memory.
	d, err := RegionFromDump(ram, off)
	require.NoError(t, err)
	s, err = d.Snapshot()
	require.NoError(t, err)
	assert.Equal(t, uint32(7), s.Ticks)
	_, err = RegionFromDump(ram, int64(len(ram))+4)
	var re *RegionError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "offset", re.Field)
	_, err = RegionFromDump(ram, int64(len(ram))-16)
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "source", re.Field)
}

func TestRegionFromBytesUnaligned(t *testing.T) {
	img := newImage(4096)
	putWord(img, region.Ticks.Offset, 99)
	buf := make([]byte, len(img)+1)
	copy(buf[1:], img)
	r, err := RegionFromBytes(buf[1:])
	require.NoError(t, err)
	s, err := r.Snapshot()
	require.NoError(t, err)
	assert.Equal(t, uint32(99), s.Ticks)

	_, err = RegionFromBytes(img[:10])
	var re *RegionError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, int64(10), re.Offset)
}

func TestTruncatedMappingIsAnErrorNotACrash(t *testing.T) {
	p := writeRegionFile(t, t.TempDir(), "r", newImage(64<<10))
	r, err := OpenRegion(p, OpenOptions{Writable: true})
	require.NoError(t, err)
	defer r.Close()
	_, err = r.Snapshot()
	require.NoError(t, err)
	// Someone truncates the backing file under the mapping: reading the
	// mapped pages now raises SIGBUS, which must become ErrFault.
	require.NoError(t, os.Truncate(p, 0))
	_, err = r.Snapshot()
	require.ErrorIs(t, err, ErrFault)
	require.ErrorIs(t, r.StampHostTime(time.Now()), ErrFault)
	_, err = r.Post(region.CmdPing, 1)
	require.ErrorIs(t, err, ErrFault)
	v, err := Check(t.Context(), r, VerdictConfig{}, 0)
	require.ErrorIs(t, err, ErrFault)
	assert.Equal(t, StateCorrupt, v.State)
	assert.True(t, v.Fault)
}

func TestCloseReleases(t *testing.T) {
	p := writeRegionFile(t, t.TempDir(), "r", newImage(4096))
	r, err := OpenRegion(p, OpenOptions{Writable: true})
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.ErrorIs(t, r.Close(), ErrClosed)
	_, err = r.Snapshot()
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, r.StampHostTime(time.Now()), ErrClosed)
	_, err = r.Post(1, 1)
	require.ErrorIs(t, err, ErrClosed)
	_, _, _, ok := r.Answer()
	assert.False(t, ok)
}

func TestStampHostTimeWritesOnlyHostWords(t *testing.T) {
	img := newImage(4096)
	setSlot(img, 0, 5, 1000, "app")
	p := writeRegionFile(t, t.TempDir(), "r", img)

	ro, err := OpenRegion(p, OpenOptions{})
	require.NoError(t, err)
	defer ro.Close()
	require.ErrorIs(t, ro.StampHostTime(time.Now()), ErrReadOnly)
	_, err = ro.Post(region.CmdPing, 1)
	require.ErrorIs(t, err, ErrReadOnly)

	r, err := OpenRegion(p, OpenOptions{Writable: true})
	require.NoError(t, err)
	defer r.Close()
	at := time.UnixMilli(0x1_2345_6789_ab)
	require.NoError(t, r.StampHostTime(at))
	seq, err := r.Post(region.CmdSetPeriod, 20)
	require.NoError(t, err)
	assert.Equal(t, uint32(1), seq)

	got, err := os.ReadFile(p)
	require.NoError(t, err)
	want := append([]byte(nil), img...)
	putWord(want, region.HostStampLo.Offset, 0x456789ab)
	putWord(want, region.HostStampHi.Offset, 0x123)
	putWord(want, region.MbxCmd.Offset, region.CmdSetPeriod)
	putWord(want, region.MbxArg.Offset, 20)
	putWord(want, region.MbxSeq.Offset, 1)
	assert.True(t, bytes.Equal(want, got), "only the host-owned words may change:\n% x\n% x", want[:0x60], got[:0x60])
	for _, f := range region.Fields {
		if f.Writer != region.Host {
			assert.Equal(t, want[f.Offset:f.Offset+4], got[f.Offset:f.Offset+4], f.Name)
		}
	}

	// The reader sees the stamp as a host time.
	s, err := r.SnapshotAt(at.Add(time.Second))
	require.NoError(t, err)
	v := Assess(s, VerdictConfig{}, nil)
	assert.True(t, v.HostStamp.Equal(at), "%v", v.HostStamp)
}

func TestMailboxPostAnswer(t *testing.T) {
	img := newImage(4096)
	r, err := RegionFromBytes(img)
	require.NoError(t, err)
	_, _, _, ok := r.Answer()
	assert.False(t, ok, "nothing posted")

	seq, err := r.Post(region.CmdPing, 0xabc)
	require.NoError(t, err)
	assert.Equal(t, uint32(1), seq)
	_, _, _, ok = r.Answer()
	assert.False(t, ok, "not answered yet")

	// The guest (AML) answers at its next tick: result, value, then ack.
	putWord(img, region.MbxResult.Offset, region.ResultOK)
	putWord(img, region.MbxValue.Offset, 0xabc)
	putWord(img, region.MbxAck.Offset, seq)
	ack, res, val, ok := r.Answer()
	assert.True(t, ok)
	assert.Equal(t, []uint32{seq, region.ResultOK, 0xabc}, []uint32{ack, res, val})

	seq2, err := r.Post(region.CmdPing, 1)
	require.NoError(t, err)
	assert.Equal(t, seq+1, seq2)
	_, _, _, ok = r.Answer()
	assert.False(t, ok, "old ack does not answer the new command")

	// The sequence never posts 0 (0 = nothing posted).
	putWord(img, region.MbxSeq.Offset, 0xffffffff)
	seq3, err := r.Post(region.CmdPing, 1)
	require.NoError(t, err)
	assert.Equal(t, uint32(1), seq3)
}
