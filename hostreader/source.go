package hostreader

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/acpidiag/acpidiag/region"
)

// Errors returned by Region methods; test them with errors.Is.
var (
	// ErrClosed is returned by every method of a closed Region.
	ErrClosed = errors.New("hostreader: region is closed")
	// ErrReadOnly is returned by the host-write methods (StampHostTime, Post)
	// of a region that was not opened writable.
	ErrReadOnly = errors.New("hostreader: region is read-only")
	// ErrFault is wrapped by the error returned when reading a mapping
	// faults, typically because the backing file was truncated after it
	// was mapped (SIGBUS). The reader survives it.
	ErrFault = errors.New("hostreader: memory fault reading the region mapping")
)

// RegionError reports a region source that cannot be used: too short for
// the v1 header, shorter than its own RegionSize word, an offset outside
// the file. Offset is the byte offset (from the start of the region, or of
// the file for Field "offset") that the problem is about.
type RegionError struct {
	Source string // file name or "bytes"
	Field  string // region field name (region.Fields) or "source", "offset"
	Offset int64
	Msg    string
	// Err is the underlying error, if any (ErrNotRegular for a named pipe,
	// a device or a directory).
	Err error
}

func (e *RegionError) Error() string {
	return fmt.Sprintf("hostreader: region %s: %s at offset %#x: %s", e.Source, e.Field, e.Offset, e.Msg)
}

// Unwrap returns the underlying error (nil if none).
func (e *RegionError) Unwrap() error { return e.Err }

// DefaultRetries is the number of attempts a snapshot makes to read the
// tick words between two equal, even seqlock values when OpenOptions or
// RegionFromBytes do not say otherwise.
const DefaultRetries = 64

// maxMapSize bounds how much of a file is mapped: region.ValidSize refuses
// regions above 2 GiB, so nothing beyond that is ever needed.
const maxMapSize = 1 << 31

// numWords is the number of 32-bit words of the v1 layout (header, tick
// words, host area and slots). A reader never touches anything past them.
const numWords = region.HeaderSize / region.Width

// OpenOptions says how OpenRegion maps a backing file.
type OpenOptions struct {
	// Offset is the byte offset of the region in the file. 0 for an ivshmem
	// backing file; for the fixed-address placement (file-backed guest RAM)
	// it is the region's guest-physical address. Must be a multiple of 4.
	Offset int64
	// Size is the number of bytes mapped from Offset. 0 maps up to the end
	// of the file (at most 2 GiB).
	Size int64
	// Writable maps the file read-write so that the host-owned words can be
	// written (StampHostTime, Post). The region's other words are never
	// written by this package.
	Writable bool
	// Retries bounds the seqlock attempts per snapshot (0: DefaultRetries).
	Retries int
}

// Region is one diagnostic region: a mapped backing file, a memory dump or
// a byte slice. Snapshot and the host-write methods may be called from
// several goroutines at once; Close must not run concurrently with them.
type Region struct {
	name     string
	words    *[numWords]uint32 // the v1 words, at the start of the region
	avail    int64             // bytes readable from the region's start
	mapping  []byte            // the whole mmap, nil for byte sources
	writable bool
	retries  int
	closed   atomic.Bool
}

// OpenRegion maps the region in the file at path. The file must be a
// regular file (a named pipe or a device is refused at once, without
// blocking: the *RegionError wraps ErrNotRegular) and hold at least the v1
// header from opts.Offset on; otherwise a *RegionError says what is wrong.
// The header's words are written by the guest and are not checked here: a
// hostile header (a RegionSize larger than the file, say) opens, and every
// verdict on it is StateCorrupt naming the field, exactly as when the
// same bytes appear later. The mapping stays valid after the file descriptor is
// closed (which OpenRegion does before returning), so a Region costs no
// file descriptor; Close releases the mapping.
func OpenRegion(path string, opts OpenOptions) (*Region, error) {
	if opts.Offset < 0 || opts.Offset%region.Width != 0 {
		return nil, &RegionError{Source: path, Field: "offset", Offset: opts.Offset, Msg: "offset must be a non-negative multiple of 4"}
	}
	if opts.Size < 0 {
		return nil, &RegionError{Source: path, Field: "source", Offset: opts.Offset, Msg: fmt.Sprintf("negative size %d", opts.Size)}
	}
	flag := os.O_RDONLY
	if opts.Writable {
		flag = os.O_RDWR
	}
	f, fi, err := openRegular(path, flag)
	if errors.Is(err, ErrNotRegular) {
		return nil, &RegionError{Source: path, Field: "source", Msg: strings.TrimPrefix(err.Error(), path+": "), Err: ErrNotRegular}
	}
	if err != nil {
		return nil, fmt.Errorf("hostreader: open region: %w", err)
	}
	defer f.Close()
	fsize := fi.Size()
	if opts.Offset > fsize {
		return nil, &RegionError{Source: path, Field: "offset", Offset: opts.Offset, Msg: fmt.Sprintf("offset is past the end of the %d-byte file", fsize)}
	}
	size := fsize - opts.Offset
	if opts.Size > 0 {
		if opts.Size > size {
			return nil, &RegionError{Source: path, Field: "source", Offset: opts.Offset, Msg: fmt.Sprintf("%d bytes requested but the file has %d bytes from the offset", opts.Size, size)}
		}
		size = opts.Size
	}
	if size > maxMapSize {
		size = maxMapSize
	}
	if size < region.HeaderSize {
		return nil, &RegionError{Source: path, Field: "source", Offset: size, Msg: fmt.Sprintf("%d bytes, shorter than the v1 header (%d bytes)", size, region.HeaderSize)}
	}
	page := int64(os.Getpagesize())
	mapOff := opts.Offset &^ (page - 1)
	delta := opts.Offset - mapOff
	mapping, err := mmapFile(f, mapOff, int(delta+size), opts.Writable)
	if err != nil {
		return nil, fmt.Errorf("hostreader: map region %s: %w", path, err)
	}
	r := newRegion(path, mapping[delta:delta+size], opts.Retries)
	r.mapping = mapping
	r.writable = opts.Writable
	return r, nil
}

// RegionFromBytes returns a Region reading b, for example the output of a
// QMP pmemsave or a region file read by the caller. The region is read in
// place (a live buffer stays live), except when b is not 4-byte aligned:
// then a copy is taken once. Writes (StampHostTime, Post) go into b.
func RegionFromBytes(b []byte) (*Region, error) {
	return regionFromBytes("bytes", b)
}

// RegionFromDump returns the Region at offset in a memory dump (for the
// fixed-address placement: a copy of file-backed guest RAM, where the
// region's file offset is its guest-physical address).
func RegionFromDump(dump []byte, offset int64) (*Region, error) {
	if offset < 0 || offset%region.Width != 0 || offset > int64(len(dump)) {
		return nil, &RegionError{Source: "dump", Field: "offset", Offset: offset, Msg: fmt.Sprintf("offset must be a multiple of 4 within the %d-byte dump", len(dump))}
	}
	return regionFromBytes("dump", dump[offset:])
}

func regionFromBytes(name string, b []byte) (*Region, error) {
	if len(b) < region.HeaderSize {
		return nil, &RegionError{Source: name, Field: "source", Offset: int64(len(b)), Msg: fmt.Sprintf("%d bytes, shorter than the v1 header (%d bytes)", len(b), region.HeaderSize)}
	}
	if uintptr(unsafe.Pointer(&b[0]))%region.Width != 0 {
		c := make([]byte, len(b)+region.Width)
		skip := (region.Width - int(uintptr(unsafe.Pointer(&c[0]))%region.Width)) % region.Width
		c = c[skip : skip+len(b)]
		copy(c, b)
		b = c
	}
	if int64(len(b)) > maxMapSize {
		b = b[:maxMapSize]
	}
	r := newRegion(name, b, 0)
	r.writable = true
	return r, nil
}

func newRegion(name string, b []byte, retries int) *Region {
	if retries <= 0 {
		retries = DefaultRetries
	}
	return &Region{
		name:    name,
		words:   (*[numWords]uint32)(unsafe.Pointer(&b[0])),
		avail:   int64(len(b)),
		retries: retries,
	}
}

// Name returns the path or kind ("bytes", "dump") of the region's source.
func (r *Region) Name() string { return r.name }

// Len returns the number of bytes readable from the region's start.
func (r *Region) Len() int64 { return r.avail }

// Writable reports whether the host-owned words can be written.
func (r *Region) Writable() bool { return r.writable }

// Close releases the mapping. Further calls return ErrClosed.
func (r *Region) Close() error {
	if r.closed.Swap(true) {
		return ErrClosed
	}
	if r.mapping != nil {
		err := munmap(r.mapping)
		r.mapping = nil
		if err != nil {
			return fmt.Errorf("hostreader: unmap %s: %w", r.name, err)
		}
	}
	return nil
}

// load reads the 32-bit little-endian word at byte offset off (a region
// constant, so always within the v1 words).
func (r *Region) load(off int) uint32 {
	return wordFromLE(atomic.LoadUint32(&r.words[off/region.Width]))
}

func (r *Region) store(off int, v uint32) {
	atomic.StoreUint32(&r.words[off/region.Width], wordToLE(v))
}

// guard runs f, turning a memory fault of the mapping (SIGBUS after the
// file was truncated) into an error instead of a crash.
func (r *Region) guard(f func()) (err error) {
	if r.mapping == nil {
		f()
		return nil
	}
	defer r.endFaultGuard(debug.SetPanicOnFault(true), &err)
	f()
	return nil
}

// endFaultGuard ends an access to the mapping begun with
// old := debug.SetPanicOnFault(true), and must be deferred directly by the
// function making the access (recover works only there):
//
//	defer r.endFaultGuard(debug.SetPanicOnFault(true), &err)
//
// It restores the fault mode and turns a memory fault of the mapping
// (SIGBUS after the file was truncated) into ErrFault in *err; any other
// panic goes on. It is the one copy of that logic for guard and for the
// snapshot path, which cannot take guard's closure: a closure over the
// snapshot would move it to the heap (BenchmarkSnapshotVerdict: 0
// allocs/op), while a deferred method call with a pointer argument does
// not.
func (r *Region) endFaultGuard(old bool, err *error) {
	debug.SetPanicOnFault(old)
	if p := recover(); p != nil {
		fe, ok := p.(interface{ Addr() uintptr })
		if !ok {
			panic(p)
		}
		*err = fmt.Errorf("%w: %s at address %#x (was the file truncated?)", ErrFault, r.name, fe.Addr())
	}
}

// StampHostTime writes now (milliseconds since the Unix epoch) into the
// host stamp words, which the guest's AML copies into the echo words at
// each tick. The words are stored in region.HostStamp.WriteOrder (high,
// then low) so that the AML, which copies them in ReadOrder, can only see a
// value too large by region.TornExcess ms, which the verdict code detects
// and corrects.
func (r *Region) StampHostTime(now time.Time) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if !r.writable {
		return ErrReadOnly
	}
	order, words := region.HostStamp.WriteOrder(), region.HostStamp.Split(uint64(now.UnixMilli()))
	return r.guard(func() {
		r.store(order[0].Offset, words[0])
		r.store(order[1].Offset, words[1])
	})
}

// Post writes a mailbox command: MbxCmd, MbxArg, then a new MbxSeq (the
// previous one plus 1, never 0), which is what the AML looks at. It
// returns the sequence number the guest will acknowledge in MbxAck.
func (r *Region) Post(cmd, arg uint32) (uint32, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	if !r.writable {
		return 0, ErrReadOnly
	}
	var seq uint32
	err := r.guard(func() {
		seq = r.load(region.MbxSeq.Offset) + 1
		if seq == 0 {
			seq = 1
		}
		r.store(region.MbxCmd.Offset, cmd)
		r.store(region.MbxArg.Offset, arg)
		r.store(region.MbxSeq.Offset, seq)
	})
	return seq, err
}

// Answer reads the guest's answer to the last posted mailbox command from
// a consistent snapshot. ok is true when the guest acknowledged the
// sequence number now in MbxSeq (MbxAck == MbxSeq != 0).
func (r *Region) Answer() (ack, result, value uint32, ok bool) {
	s, err := r.Snapshot()
	if err != nil || s.Torn {
		return 0, 0, 0, false
	}
	return s.MbxAck, s.MbxResult, s.MbxValue, s.MbxSeq != 0 && s.MbxAck == s.MbxSeq
}

func wordFromLE(v uint32) uint32 {
	if hostLittleEndian {
		return v
	}
	return v>>24 | v>>8&0xff00 | v<<8&0xff0000 | v<<24
}

func wordToLE(v uint32) uint32 { return wordFromLE(v) }
