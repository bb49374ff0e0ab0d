package hostreader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/acpidiag/acpidiag/region"
)

// SlotWords is the raw content of one application heartbeat slot.
type SlotWords struct {
	Beat     uint32                  // counter the application increments
	PeriodMs uint32                  // heartbeat period it promises (0 = unset)
	Tag      [region.SlotTagLen]byte // guest-written name: escape before printing (EscapeTag)
}

// Used reports whether the slot holds anything.
func (s SlotWords) Used() bool {
	return s.Beat != 0 || s.PeriodMs != 0 || s.Tag != [region.SlotTagLen]byte{}
}

// Snapshot is one consistent read of a region's v1 words, taken under the
// guest's seqlock. It is a fixed-size value (no slices, no pointers to the
// region), so taking one allocates nothing and it stays valid after the
// region is closed. Every field is raw guest (or host) data: nothing in it
// has been validated — Assess and Tracker do that.
type Snapshot struct {
	// At is the host time the snapshot was taken.
	At time.Time
	// Avail is the number of bytes the source holds from the region's start
	// (what a RegionSize word is checked against).
	Avail int64
	// Attempts is the number of seqlock read attempts made (1 = first try).
	Attempts int
	// Torn is set when no attempt saw the same even Seq before and after
	// reading: the words below are the last (possibly mixed) values seen.
	Torn bool

	// The words from Magic to MbxSeq mirror the region layout word for
	// word, in offset order (see snapshotWords; Word reads them by field).
	Magic, Version, HeaderSize, RegionSize uint32
	Seq                                    uint32
	Ticks, Boots, Period, TimerLo          uint32
	EchoLo, EchoHi                         uint32
	OSI, Rev                               uint32
	MbxAck, MbxResult, MbxValue            uint32

	// Host-owned words (not covered by the guest's seqlock).
	HostStampLo, HostStampHi uint32
	MbxCmd, MbxArg, MbxSeq   uint32

	// Application slots (written by guest software, not under the seqlock).
	Slots [region.NumSlots]SlotWords
}

// Snapshot takes a consistent snapshot now. See SnapshotAt.
func (r *Region) Snapshot() (Snapshot, error) { return r.SnapshotAt(time.Now()) }

// SnapshotAt takes a consistent snapshot and records at as its host time.
// It reads Seq (which must be even), the words, then Seq again, and
// retries (yielding the processor between attempts) up to the region's
// retry bound; when every attempt failed the snapshot is returned with
// Torn set and the last values seen. The only errors are ErrClosed and a
// fault of the mapping (ErrFault, file truncated under the mapping).
func (r *Region) SnapshotAt(at time.Time) (s Snapshot, err error) {
	if r.closed.Load() {
		return s, ErrClosed
	}
	s.At = at
	s.Avail = r.avail
	if r.mapping == nil {
		r.readSeqlocked(&s)
		return s, nil
	}
	if err := r.readMapped(&s); err != nil {
		return Snapshot{At: at, Avail: r.avail}, err
	}
	return s, nil
}

// readMapped is readSeqlocked on the mapping, with a memory fault turned
// into ErrFault (Region.endFaultGuard).
func (r *Region) readMapped(s *Snapshot) (err error) {
	defer r.endFaultGuard(debug.SetPanicOnFault(true), &err)
	r.readSeqlocked(s)
	return nil
}

func (r *Region) readSeqlocked(s *Snapshot) {
	for attempt := 1; ; attempt++ {
		s.Attempts = attempt
		seq1 := r.load(region.Seq.Offset)
		r.readWords(s)
		seq2 := r.load(region.Seq.Offset)
		s.Seq = seq2
		if seq1 == seq2 && seq1&1 == 0 {
			s.Torn = false
			return
		}
		s.Torn = true
		if attempt >= r.retries {
			return
		}
		if attempt > 2 {
			runtime.Gosched()
		}
	}
}

// snapshotWords binds the region fields to Snapshot: the uint32 fields
// from Magic to MbxSeq mirror the layout word for word, so that one copy
// of the words [0, n) fills them. It is checked once, from region.Fields
// alone (each field's GoName must name the Snapshot field at the matching
// position), and panics at package initialisation — so in every test — if
// the two ever disagree.
var snapshotWords = func() (b struct {
	start uintptr // offset of Snapshot.Magic
	n     int     // words mirrored
}) {
	t := reflect.TypeOf(Snapshot{})
	first, _ := t.FieldByName(region.Fields[0].GoName)
	b.start = first.Offset
	for _, f := range region.Fields {
		sf, ok := t.FieldByName(f.GoName)
		if !ok || sf.Type.Kind() != reflect.Uint32 || sf.Offset != b.start+uintptr(f.Offset) {
			panic(fmt.Sprintf("hostreader: region field %s (offset %#x) needs Snapshot.%s, a uint32 at Magic+%#x", f.Name, f.Offset, f.GoName, f.Offset))
		}
		if end := (f.Offset + f.Width) / region.Width; end > b.n {
			b.n = end
		}
	}
	return b
}()

// mirror returns the Snapshot's words that mirror the layout.
func (s *Snapshot) mirror() *[numWords]uint32 {
	return (*[numWords]uint32)(unsafe.Add(unsafe.Pointer(s), snapshotWords.start))
}

// Word returns the decoded value of region field f (false if f is not a
// field of the v1 layout).
func (s *Snapshot) Word(f region.Field) (uint32, bool) {
	if g, ok := region.FieldAt(f.Offset); !ok || g != f {
		return 0, false
	}
	return s.mirror()[f.Offset/region.Width], true
}

func (r *Region) readWords(s *Snapshot) {
	w := r.words
	ld := func(off int) uint32 { return wordFromLE(atomic.LoadUint32(&w[off/region.Width])) }
	m := s.mirror()[:snapshotWords.n]
	for i := range m {
		m[i] = wordFromLE(atomic.LoadUint32(&w[i]))
	}
	for i := range s.Slots {
		base := region.OffSlots + i*region.SlotSize
		sl := &s.Slots[i]
		sl.Beat = ld(base + region.SlotBeat)
		sl.PeriodMs = ld(base + region.SlotPeriodMs)
		binary.LittleEndian.PutUint32(sl.Tag[0:4], ld(base+region.SlotTag))
		binary.LittleEndian.PutUint32(sl.Tag[4:8], ld(base+region.SlotTag+4))
	}
}

// DecodeRegion takes one snapshot of a region image held in b (a region
// file's content, a pmemsave dump) at host time at. It is RegionFromBytes
// followed by SnapshotAt.
func DecodeRegion(b []byte, at time.Time) (Snapshot, error) {
	r, err := RegionFromBytes(b)
	if err != nil {
		return Snapshot{}, err
	}
	return r.SnapshotAt(at)
}

// TagText returns a guest-written tag as it is: the bytes up to the first
// NUL, unescaped. Printers escape it once (EscapeLine for text; JSON
// escapes its strings itself).
func TagText(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// EscapeTag returns a guest-written tag (or any guest string) in a form safe
// to print: bytes up to the first NUL, printable ASCII kept except '\\' and
// '"', everything else as \xNN.
func EscapeTag(b []byte) string {
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, len(b)*4)
	for _, c := range b {
		if c == 0 {
			break
		}
		if c >= 0x20 && c < 0x7f && c != '\\' && c != '"' {
			out = append(out, c)
			continue
		}
		out = append(out, '\\', 'x', hexd[c>>4], hexd[c&0xf])
	}
	return string(out)
}
