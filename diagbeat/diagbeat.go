// Package diagbeat is the guest side of acpidiag's application heartbeat
// slots: a program inside the guest finds the diagnostic region, claims a
// slot (a tag and the period it promises) and beats it, so the host can
// tell that the application — not only the kernel's tick — is alive.
//
// The region is found the way the host placed it:
//   - ivshmem (the default placement): the PCI device with vendor 1af4 and
//     device 1110 under /sys/bus/pci/devices, whose BAR2 is mapped through
//     its resource2 file (OpenIvshmem);
//   - fixed placement: the guest-physical window through /dev/mem (OpenFixed;
//     the guest kernel keeps it reserved with memmap=SIZE$ADDR).
//
// Only the slot words (region.OffSlots onwards) are ever written; the
// header is read to make sure the mapping is an acpidiag region. The
// command cmd/diagbeat is a thin layer over Run.
package diagbeat

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/acpidiag/acpidiag/region"
)

// IvshmemVendor and IvshmemDevice are the PCI ids of ivshmem-plain as sysfs
// prints them.
const (
	IvshmemVendor = "0x1af4"
	IvshmemDevice = "0x1110"
)

// ErrNotFound is wrapped by OpenIvshmem's error when no ivshmem device is
// present.
var ErrNotFound = errors.New("diagbeat: no ivshmem device (1af4:1110)")

// ErrNoRegion is wrapped by Open's errors when the mapping does not (yet)
// hold an initialised acpidiag region (magic, version, header size): the
// SSDT has not ticked yet, or the window is not a region at all.
var ErrNoRegion = errors.New("diagbeat: no initialised acpidiag region")

// Region is the diagnostic region mapped into this guest process.
type Region struct {
	// Source says where it was found, e.g. "ivshmem 0000:00:10.0" or
	// "/dev/mem at 0x10000000".
	Source string
	mem    []byte
	unmap  func([]byte) error
}

// FromBytes wraps memory that already holds a region (a test image, a
// mapping made by the caller). b must be 4-byte aligned and at least
// region.HeaderSize long.
func FromBytes(b []byte, source string) (*Region, error) {
	if len(b) < region.HeaderSize {
		return nil, fmt.Errorf("diagbeat: %s: %d bytes, shorter than the region header (%d)", source, len(b), region.HeaderSize)
	}
	if uintptr(unsafe.Pointer(&b[0]))%region.Width != 0 {
		return nil, fmt.Errorf("diagbeat: %s: memory not 4-byte aligned", source)
	}
	return &Region{Source: source, mem: b}, nil
}

// OpenIvshmem maps BAR2 of the ivshmem device through sysfs (root is the
// sysfs mount, "" for /sys). slot selects the PCI slot on bus 0 (1..31);
// 0 takes the first ivshmem device found.
func OpenIvshmem(root string, slot uint8) (*Region, error) {
	if root == "" {
		root = "/sys"
	}
	devs, err := filepath.Glob(filepath.Join(root, "bus", "pci", "devices", "*"))
	if err != nil {
		return nil, fmt.Errorf("diagbeat: %w", err)
	}
	for _, d := range devs {
		name := filepath.Base(d)
		if readTrim(filepath.Join(d, "vendor")) != IvshmemVendor || readTrim(filepath.Join(d, "device")) != IvshmemDevice {
			continue
		}
		if slot != 0 && !strings.HasSuffix(name, fmt.Sprintf(":00:%02x.0", slot)) {
			continue
		}
		b, err := mapFile(filepath.Join(d, "resource2"), 0, 0, os.O_SYNC)
		if err != nil {
			return nil, fmt.Errorf("diagbeat: ivshmem %s: %w", name, err)
		}
		return &Region{Source: "ivshmem " + name, mem: b, unmap: unix.Munmap}, nil
	}
	if slot != 0 {
		return nil, fmt.Errorf("%w at slot %#x under %s", ErrNotFound, slot, filepath.Join(root, "bus", "pci", "devices"))
	}
	return nil, fmt.Errorf("%w under %s", ErrNotFound, filepath.Join(root, "bus", "pci", "devices"))
}

// OpenFixed maps the fixed-placement region at guest-physical address addr
// (size bytes) through devmem ("" for /dev/mem). The address and size must
// satisfy region.Spec's rules.
func OpenFixed(devmem string, addr, size uint64) (*Region, error) {
	if devmem == "" {
		devmem = "/dev/mem"
	}
	spec := region.Spec{Placement: region.Fixed, Address: addr, Size: size}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("diagbeat: %w", err)
	}
	// Without O_SYNC: the window is RAM the kernel maps write-back, and
	// x86 PAT refuses an uncached mapping of it (mmap fails with EAGAIN,
	// "map pfn expected mapping type uncached-minus ... got write-back").
	// Write-back is also what the host's file-backed RAM is.
	b, err := mapFile(devmem, int64(addr), int(size), 0)
	if err != nil {
		return nil, fmt.Errorf("diagbeat: %s at %#x: %w", devmem, addr, err)
	}
	return &Region{Source: fmt.Sprintf("%s at %#x", devmem, addr), mem: b, unmap: unix.Munmap}, nil
}

// mapFile maps size bytes of path from off (size 0: the whole file)
// shared and writable; flags are added to the open flags.
func mapFile(path string, off int64, size int, flags int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR|flags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size == 0 {
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if st.Size() > 1<<31 {
			return nil, fmt.Errorf("%d bytes, above the 2 GiB a region may have", st.Size())
		}
		size = int(st.Size())
	}
	if size < region.HeaderSize {
		return nil, fmt.Errorf("%d bytes, shorter than the region header (%d)", size, region.HeaderSize)
	}
	b, err := unix.Mmap(int(f.Fd()), off, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return b, nil
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Len is the number of bytes mapped.
func (r *Region) Len() int { return len(r.mem) }

// Close releases the mapping.
func (r *Region) Close() error {
	if r.unmap == nil || r.mem == nil {
		return nil
	}
	err := r.unmap(r.mem)
	r.mem = nil
	return err
}

func (r *Region) word(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.mem[off])) }

// Word reads a region field as the guest sees it now (no seqlock: for
// diagnostics, not for decisions).
func (r *Region) Word(f region.Field) uint32 { return atomic.LoadUint32(r.word(f.Offset)) }

// Ready reports whether the header is that of an initialised region of
// this layout (the SSDT ticked at least once since the region was made).
func (r *Region) Ready() error {
	magic, version, hsize := r.Word(region.MagicWord), r.Word(region.VersionWord), r.Word(region.HeaderSizeWord)
	if magic != region.Magic || version != region.Version || hsize != region.HeaderSize {
		return fmt.Errorf("%w in %s (magic %#x version %d header size %d)", ErrNoRegion, r.Source, magic, version, hsize)
	}
	return nil
}

// Slot is one application heartbeat slot of a region.
type Slot struct {
	r     *Region
	index int
	off   int
}

// Slot returns slot i (0..region.NumSlots-1).
func (r *Region) Slot(i int) (*Slot, error) {
	off, err := region.SlotOffset(i)
	if err != nil {
		return nil, fmt.Errorf("diagbeat: %w", err)
	}
	return &Slot{r: r, index: i, off: off}, nil
}

// Index is the slot's number.
func (s *Slot) Index() int { return s.index }

// ValidTag checks a slot tag: 1..region.SlotTagLen printable ASCII bytes.
func ValidTag(tag string) error {
	if tag == "" || len(tag) > region.SlotTagLen {
		return fmt.Errorf("diagbeat: tag %q: want 1..%d characters", tag, region.SlotTagLen)
	}
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("diagbeat: tag %q: character %d (%q) is not printable ASCII", tag, i, c)
		}
	}
	return nil
}

// Claim writes the slot's tag and the period the application promises,
// then resets its beat counter to 0: the host sees a new user from here on
// (a slot with a period is stale after K periods without a beat).
func (s *Slot) Claim(tag string, period time.Duration) error {
	if err := ValidTag(tag); err != nil {
		return err
	}
	ms := period.Milliseconds()
	if ms < 1 || ms > 1<<31 {
		return fmt.Errorf("diagbeat: period %v: want 1ms..%v", period, time.Duration(1<<31)*time.Millisecond)
	}
	var t [region.SlotTagLen]byte
	copy(t[:], tag)
	for i := 0; i < region.SlotTagLen; i += 4 {
		v := uint32(t[i]) | uint32(t[i+1])<<8 | uint32(t[i+2])<<16 | uint32(t[i+3])<<24
		atomic.StoreUint32(s.r.word(s.off+region.SlotTag+i), v)
	}
	atomic.StoreUint32(s.r.word(s.off+region.SlotPeriodMs), uint32(ms))
	atomic.StoreUint32(s.r.word(s.off+region.SlotBeat), 0)
	return nil
}

// Beat increments the slot's beat counter and returns the new value.
func (s *Slot) Beat() uint32 { return atomic.AddUint32(s.r.word(s.off+region.SlotBeat), 1) }

// Beats returns the slot's beat counter.
func (s *Slot) Beats() uint32 { return atomic.LoadUint32(s.r.word(s.off + region.SlotBeat)) }

// Release clears the slot (tag, period and beat 0): the host reports it
// unused rather than stale once the application stops on purpose.
func (s *Slot) Release() {
	for off := 0; off < region.SlotSize; off += region.Width {
		atomic.StoreUint32(s.r.word(s.off+off), 0)
	}
}

// Check is one health check: nil means healthy.
type Check func(ctx context.Context) error

// CommandCheck runs argv (argv[0] looked up in PATH) and is healthy when it
// exits 0. Its output goes to out (nil: discarded).
func CommandCheck(argv []string, out *os.File) Check {
	return func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		if out != nil {
			cmd.Stdout, cmd.Stderr = out, out
		}
		return cmd.Run()
	}
}

// RunOptions says how Run beats a slot.
type RunOptions struct {
	// Tag names the application in the slot (1..8 printable ASCII).
	Tag string
	// Every is the beat period the slot promises.
	Every time.Duration
	// Check, when set, runs every period (bounded by the period) and the
	// slot beats only when it succeeds. Nil: beat unconditionally.
	Check Check
	// Report, when set, is told each time the check's outcome changes
	// (err nil: healthy again).
	Report func(beats uint32, err error)
	// KeepOnExit leaves the slot claimed when Run returns (the host then
	// sees it go stale); by default Run releases it.
	KeepOnExit bool
}

// Run claims the slot and beats it every opts.Every until ctx is done
// (when it releases the slot unless KeepOnExit, and returns nil). The
// first beat (or check) happens at once.
func Run(ctx context.Context, s *Slot, opts RunOptions) error {
	if opts.Every <= 0 {
		return fmt.Errorf("diagbeat: period %v must be positive", opts.Every)
	}
	if err := s.Claim(opts.Tag, opts.Every); err != nil {
		return err
	}
	if !opts.KeepOnExit {
		defer s.Release()
	}
	t := time.NewTicker(opts.Every)
	defer t.Stop()
	var last error
	first := true
	for {
		var err error
		if opts.Check != nil {
			cctx, cancel := context.WithTimeout(ctx, opts.Every)
			err = opts.Check(cctx)
			cancel()
		}
		if ctx.Err() != nil {
			return nil
		}
		beats := s.Beats()
		if err == nil {
			beats = s.Beat()
		}
		if opts.Report != nil && (first || (err == nil) != (last == nil)) {
			opts.Report(beats, err)
		}
		first, last = false, err
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Open finds the region for a placement parsed by region.ParseSpec:
// ivshmem (slot 0: any ivshmem device) through sysfs, fixed through
// /dev/mem. It waits up to wait for the region to be Ready (the SSDT's
// first tick comes about a second after boot), polling every 100 ms.
func Open(ctx context.Context, spec region.Spec, wait time.Duration) (*Region, error) {
	deadline := time.Now().Add(wait)
	for {
		var r *Region
		var err error
		if spec.Placement == region.Fixed {
			r, err = OpenFixed("", spec.Address, spec.Size)
		} else {
			r, err = OpenIvshmem("", spec.Slot)
		}
		if err == nil {
			if err = r.Ready(); err == nil {
				return r, nil
			}
			r.Close()
		}
		if !time.Now().Before(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
