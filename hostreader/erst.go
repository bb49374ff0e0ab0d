package hostreader

// Decoding of QEMU's acpi-erst backing file.
//
// The storage format is QEMU's (hw/acpi/erst.c): the file is divided into
// slots of record_size bytes. Slot 0 (and, for large stores, the following
// ones up to storage_offset) holds ERSTStorageHeader:
//
//	0x00 u64 magic          "ERSTSTOR" (ERST_STORE_MAGIC 0x524F545354535245)
//	0x08 u32 record_size    power of two, >= 4096 (check_erst_backend_storage)
//	0x0c u32 storage_offset header+map size rounded up to record_size
//	0x10 u16 version        0x0100
//	0x12 u16 reserved       0
//	0x14 u32 record_count   number of used map entries
//	0x18 u64 map[]          map[i] = record id stored in slot i
//	                        (0 = free; all-ones = "empty/end" id, never stored)
//
// Slot i starts at file offset i*record_size and holds one CPER record
// (write_erst_record copies record_length bytes and fills the rest of the
// slot with 0xFF). Only slots i >= storage_offset/record_size hold records
// (find_next_empty_record_index). Every byte of the file is treated as
// hostile: the guest wrote it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/linuxboot/fiano/pkg/guid"
)

// ERSTMagic is ERST_STORE_MAGIC, the bytes "ERSTSTOR" read as a
// little-endian u64.
const ERSTMagic = 0x524F545354535245

// ERSTVersion is the only storage header version QEMU accepts.
const ERSTVersion = 0x0100

// Layout of ERSTStorageHeader (QEMU hw/acpi/erst.c).
const (
	erstOffMagic         = 0x00
	erstOffRecordSize    = 0x08
	erstOffStorageOffset = 0x0c
	erstOffVersion       = 0x10
	erstOffReserved      = 0x12
	erstOffRecordCount   = 0x14
	erstOffMap           = 0x18
	// ERSTHeaderSize is the size of the fixed part of ERSTStorageHeader,
	// before map[].
	ERSTHeaderSize = erstOffMap
	// erstMinRecordSize is QEMU's lower bound on record_size (PAGE_SIZE).
	erstMinRecordSize = 4096
)

// Record ids with special meaning (ACPI ERST; QEMU ERST_UNSPECIFIED_RECORD_ID
// and ERST_EMPTY_END_RECORD_ID). A map entry holding either is a free slot.
const (
	ERSTUnspecifiedID uint64 = 0
	ERSTEmptyEndID    uint64 = ^uint64(0)
)

// Limits that keep decoding of hostile files bounded.
const (
	// MaxERSTFileSize is the largest file ReadERSTFile reads (QEMU's
	// storage size is a uint32; real stores are 64 KiB to a few MiB). It
	// keeps a reader's memory bounded: the file is held in memory while
	// it is decoded.
	MaxERSTFileSize = 64 << 20
	// MaxRecordText is the most text one compressed record may inflate
	// to; a record that inflates to more is reported as an error.
	MaxRecordText = 1 << 20
	// MaxStoreText is the text budget of one DecodeERST call: the total
	// size of the records' text once escaped for printing (TextCost: a
	// byte counts as much as its escaped form takes in the larger of the
	// text and JSON outputs, a NUL 6). It bounds what a hostile store can
	// make a reader hold and print, whatever the bytes: a record whose
	// text does not fit in what is left is reported as an error naming
	// the budget, and not decoded.
	MaxStoreText = 32 << 20
)

// ErrTextTooLarge is wrapped by the RecordError of a record whose text is
// over a limit: a compressed record that inflates to more than
// MaxRecordText bytes, or a record whose escaped text does not fit in
// what is left of the store's MaxStoreText budget.
var ErrTextTooLarge = errors.New("text exceeds the limit")

// ErrUnsupportedCompression is wrapped by the RecordError of a DMESG_Z
// record compressed with something other than deflate (the guest chose
// another pstore.compress algorithm; the section type does not say which).
var ErrUnsupportedCompression = errors.New("unsupported pstore compression")

// ERSTFormatError reports why a file cannot be read as an ERST store at all
// (a bad storage header). Off is the byte offset of the offending field.
type ERSTFormatError struct {
	Off   int64
	Field string
	Msg   string
}

func (e *ERSTFormatError) Error() string {
	return fmt.Sprintf("erst: %s at offset %#x: %s", e.Field, e.Off, e.Msg)
}

// RecordError reports a problem with one record slot; the other records of
// the store are still decoded. Slot is the slot index (-1 for a store-level
// inconsistency such as a wrong record_count), ID the record id from the slot
// map, Off the file offset of the offending field. A RecordError may also
// accompany a record that was still decoded (see Record.Slot): Decoded is
// true then.
type RecordError struct {
	Slot    int
	ID      uint64
	Off     int64
	Field   string
	Decoded bool
	Err     error
}

func (e *RecordError) Error() string {
	where := "store"
	if e.Slot >= 0 {
		where = fmt.Sprintf("slot %d (record id %#x)", e.Slot, e.ID)
	}
	return fmt.Sprintf("erst: %s: %s at offset %#x: %v", where, e.Field, e.Off, e.Err)
}

// Unwrap returns the underlying error.
func (e *RecordError) Unwrap() error { return e.Err }

// fieldError is the internal form of a layout problem inside a record.
type fieldError struct {
	off   int64
	field string
	msg   string
	err   error
}

func (f *fieldError) toRecordError(slot int, id uint64) *RecordError {
	err := f.err
	if err == nil {
		err = errors.New(f.msg)
	} else if f.msg != "" {
		err = fmt.Errorf("%s: %w", f.msg, f.err)
	}
	return &RecordError{Slot: slot, ID: id, Off: f.off, Field: f.field, Err: err}
}

// ERSTHeader is QEMU's ERSTStorageHeader without the map.
type ERSTHeader struct {
	Magic         uint64
	RecordSize    uint32
	StorageOffset uint32
	Version       uint16
	Reserved      uint16
	RecordCount   uint32
}

// ERSTSlot is one record slot of the store and its slot-map entry.
type ERSTSlot struct {
	// Index is the slot number: the slot starts at Index*RecordSize.
	Index int
	// Offset is the file offset of the slot.
	Offset int64
	// ID is the slot-map entry (record id), 0 for a free slot.
	ID uint64
	// Used is true when ID is a valid record id (neither 0 nor all-ones).
	Used bool
	// InFile is false when the slot lies (partly) beyond the end of the file.
	InFile bool
}

// Record kinds (from the CPER section type of a pstore record).
const (
	KindDmesg   = "dmesg"   // CPER_SECTION_TYPE_DMESG: plain kernel log
	KindDmesgZ  = "dmesg-z" // CPER_SECTION_TYPE_DMESG_Z: deflate-compressed kernel log
	KindMCE     = "mce"     // CPER_SECTION_TYPE_MCE: machine check
	KindUnknown = "unknown" // any other creator or section type
)

// Record is one decoded CPER record from a slot.
type Record struct {
	// Slot is the slot index; Offset the file offset of the record.
	Slot   int
	Offset int64
	// ID is the record id (from the slot map; the CPER header's copy is in
	// Header.RecordID).
	ID     uint64
	Header CPERHeader
	// Sections are all section descriptors of the record; the first one
	// (Linux writes exactly one) decides Kind.
	Sections []CPERSection
	// Timestamp is when the record was written (zero if not valid).
	Timestamp   time.Time
	Creator     guid.GUID
	SectionType guid.GUID
	// Kind is KindDmesg, KindDmesgZ, KindMCE or KindUnknown.
	Kind string
	// Reason, Count and Part come from the pstore header line
	// "<Reason>#<Count> Part<Part>" (fs/pstore/platform.c pstore_dump):
	// Reason is "Panic", "Oops", "Emergency", "Shutdown", ...; Count is the
	// kernel's dump counter; Part 1 is the newest chunk of the log, Part 2
	// the chunk before it, and so on. Empty/zero when the text has no such
	// header line.
	Reason string
	Count  int
	Part   int
	// Text is the kernel log of a dmesg record (decompressed when
	// Compressed), including the header line. It is raw guest data: escape
	// it (EscapeLog) before printing.
	Text string
	// Compressed is true for a DMESG_Z record.
	Compressed bool
	// StoredLength is the section length as stored (the compressed size for
	// DMESG_Z).
	StoredLength int
}

// ERSTStore is a decoded ERST backing file.
type ERSTStore struct {
	Header ERSTHeader
	// Size is the length of the decoded file.
	Size int64
	// Slots lists every record slot inside the file (free or used) plus any
	// used map entry pointing beyond the file, in slot order.
	Slots []ERSTSlot
	// Records are the decoded records in slot order.
	Records []Record
	// Errors lists the problems found in individual records or in the
	// consistency of the store; they did not stop the other records.
	Errors []*RecordError
}

// ReadERSTFile reads and decodes an ERST backing file (the mem-path of the
// acpi-erst device's memory backend), read with ReadERSTBytes.
func ReadERSTFile(path string) (*ERSTStore, error) {
	b, err := ReadERSTBytes(path)
	if err != nil {
		return nil, err
	}
	s, err := DecodeERST(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ReadERSTBytes reads an ERST backing file into memory, bounded: anything
// but a regular file (a named pipe, /dev/zero) is refused before it is
// read (the error wraps ErrNotRegular), and so is a file larger than
// MaxERSTFileSize. At most the file's size (plus one byte, to notice a
// file that grew past the limit) is read.
func ReadERSTBytes(path string) ([]byte, error) {
	f, fi, err := openRegular(path, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("erst: %w", err)
	}
	defer f.Close()
	if fi.Size() > MaxERSTFileSize {
		return nil, fmt.Errorf("erst: %s: %d bytes, larger than %d (MaxERSTFileSize): not an ERST store", path, fi.Size(), MaxERSTFileSize)
	}
	// The file may change while it is read (QEMU writes it): read what is
	// there now, up to the limit.
	b := make([]byte, fi.Size()+1)
	n, err := io.ReadFull(f, b)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("erst: reading %s: %w", path, err)
	case int64(n) > MaxERSTFileSize:
		return nil, fmt.Errorf("erst: %s: larger than %d bytes (MaxERSTFileSize): not an ERST store", path, MaxERSTFileSize)
	}
	if int64(n) > fi.Size() {
		// It grew while being read: take the rest too, bounded.
		rest, err := io.ReadAll(io.LimitReader(f, MaxERSTFileSize+1-int64(n)))
		if err != nil {
			return nil, fmt.Errorf("erst: reading %s: %w", path, err)
		}
		b = append(b[:n], rest...)
		n = len(b)
		if int64(n) > MaxERSTFileSize {
			return nil, fmt.Errorf("erst: %s: larger than %d bytes (MaxERSTFileSize): not an ERST store", path, MaxERSTFileSize)
		}
	}
	return b[:n:n], nil
}

// DecodeERSTHeader decodes and validates the storage header the way QEMU's
// check_erst_backend_storage does, plus the checks needed to read the file
// safely. Every failure is an *ERSTFormatError.
func DecodeERSTHeader(b []byte) (ERSTHeader, error) {
	var h ERSTHeader
	if len(b) < ERSTHeaderSize {
		return h, &ERSTFormatError{Off: int64(len(b)), Field: "header", Msg: fmt.Sprintf("file is %d bytes, the storage header needs %d", len(b), ERSTHeaderSize)}
	}
	le := binary.LittleEndian
	h.Magic = le.Uint64(b[erstOffMagic:])
	h.RecordSize = le.Uint32(b[erstOffRecordSize:])
	h.StorageOffset = le.Uint32(b[erstOffStorageOffset:])
	h.Version = le.Uint16(b[erstOffVersion:])
	h.Reserved = le.Uint16(b[erstOffReserved:])
	h.RecordCount = le.Uint32(b[erstOffRecordCount:])
	if h.Magic != ERSTMagic {
		msg := fmt.Sprintf("got %s, want \"ERSTSTOR\"", quoteBytes(b[:8]))
		if h.Magic == 0 {
			msg += " (store never initialized by QEMU)"
		}
		return h, &ERSTFormatError{Off: erstOffMagic, Field: "magic", Msg: msg}
	}
	rs := h.RecordSize
	if rs < erstMinRecordSize || rs&(rs-1) != 0 {
		return h, &ERSTFormatError{Off: erstOffRecordSize, Field: "record_size", Msg: fmt.Sprintf("%d is not a power of two >= %d", rs, erstMinRecordSize)}
	}
	if int64(rs) > int64(len(b)) {
		return h, &ERSTFormatError{Off: erstOffRecordSize, Field: "record_size", Msg: fmt.Sprintf("%d is larger than the file (%d bytes)", rs, len(b))}
	}
	if h.Version != ERSTVersion {
		return h, &ERSTFormatError{Off: erstOffVersion, Field: "version", Msg: fmt.Sprintf("got %#04x, want %#04x", h.Version, ERSTVersion)}
	}
	if h.Reserved != 0 {
		return h, &ERSTFormatError{Off: erstOffReserved, Field: "reserved", Msg: fmt.Sprintf("got %#04x, want 0", h.Reserved)}
	}
	so := h.StorageOffset
	if so%rs != 0 || so == 0 {
		return h, &ERSTFormatError{Off: erstOffStorageOffset, Field: "storage_offset", Msg: fmt.Sprintf("%#x is not a non-zero multiple of record_size %#x", so, rs)}
	}
	if int64(so) > int64(len(b)) {
		return h, &ERSTFormatError{Off: erstOffStorageOffset, Field: "storage_offset", Msg: fmt.Sprintf("%#x is beyond the end of the file (%#x bytes): header and slot map truncated", so, len(b))}
	}
	return h, nil
}

// DecodeERST decodes an ERST backing file held in b. A bad storage header is
// fatal (*ERSTFormatError); a bad record is reported in ERSTStore.Errors and
// the other records are still decoded. The returned store does not alias b.
func DecodeERST(b []byte) (*ERSTStore, error) {
	h, err := DecodeERSTHeader(b)
	if err != nil {
		return nil, err
	}
	s := &ERSTStore{Header: h, Size: int64(len(b))}
	le := binary.LittleEndian
	rs := int64(h.RecordSize)
	size := int64(len(b))
	// Number of slots that start inside the file.
	nFile := (size + rs - 1) / rs
	// map[] capacity: entries between the fixed header and storage_offset.
	nMap := (int64(h.StorageOffset) - ERSTHeaderSize) / 8
	first := int64(h.StorageOffset) / rs
	dec := newDecoder()
	used := 0
	seen := make(map[uint64]int)
	for i := int64(0); i < nMap; i++ {
		moff := int64(erstOffMap) + 8*i
		id := le.Uint64(b[moff:])
		isUsed := id != ERSTUnspecifiedID && id != ERSTEmptyEndID
		inFile := i < nFile
		if i < first {
			if isUsed {
				used++
				s.Errors = append(s.Errors, &RecordError{Slot: int(i), ID: id, Off: moff, Field: "map",
					Err: fmt.Errorf("map[%d] names slot %d, which lies in the storage header (storage_offset %#x)", i, i, h.StorageOffset)})
			}
			continue
		}
		if !inFile && !isUsed {
			continue
		}
		slotOff := i * rs
		s.Slots = append(s.Slots, ERSTSlot{Index: int(i), Offset: slotOff, ID: id, Used: isUsed, InFile: inFile && slotOff+rs <= size})
		if !isUsed {
			continue
		}
		used++
		if !inFile {
			s.Errors = append(s.Errors, &RecordError{Slot: int(i), ID: id, Off: moff, Field: "map",
				Err: fmt.Errorf("map[%d] points at slot offset %#x, beyond the end of the file (%#x bytes)", i, slotOff, size)})
			continue
		}
		end := slotOff + rs
		if end > size {
			end = size
		}
		rec, rerrs := dec.decodeRecord(b[slotOff:end], slotOff, int(i), id, h.RecordSize)
		if prev, dup := seen[id]; dup {
			// QEMU's lookup_erst_record only ever finds the first slot.
			s.Errors = append(s.Errors, &RecordError{Slot: int(i), ID: id, Off: moff, Field: "map", Decoded: rec != nil,
				Err: fmt.Errorf("record id %#x is also in slot %d", id, prev)})
		} else {
			seen[id] = int(i)
		}
		s.Errors = append(s.Errors, rerrs...)
		if rec != nil {
			s.Records = append(s.Records, *rec)
		}
	}
	if uint64(h.RecordCount) != uint64(used) {
		s.Errors = append(s.Errors, &RecordError{Slot: -1, Off: erstOffRecordCount, Field: "record_count",
			Err: fmt.Errorf("header says %d records, the slot map holds %d", h.RecordCount, used)})
	}
	return s, nil
}

// decodeRecord decodes the CPER record in one slot. rec is the slot's bytes
// present in the file (may be shorter than record_size when the file is
// truncated). It returns nil and the errors when the record cannot be used.
func (d *decoder) decodeRecord(rec []byte, base int64, slot int, id uint64, recordSize uint32) (*Record, []*RecordError) {
	fail := func(fe *fieldError) (*Record, []*RecordError) {
		return nil, []*RecordError{fe.toRecordError(slot, id)}
	}
	h, fe := decodeCPERHeader(rec, base)
	if fe != nil {
		return fail(fe)
	}
	rl := h.RecordLength
	switch {
	case rl < CPERHeaderSize:
		return fail(&fieldError{off: base + cperOffRecordLength, field: "record_length", msg: fmt.Sprintf("%d is smaller than the CPER header (%d)", rl, CPERHeaderSize)})
	case rl > recordSize:
		return fail(&fieldError{off: base + cperOffRecordLength, field: "record_length", msg: fmt.Sprintf("%d exceeds the slot size (record_size %d)", rl, recordSize)})
	case int64(rl) > int64(len(rec)):
		return fail(&fieldError{off: base + cperOffRecordLength, field: "record_length", msg: fmt.Sprintf("%d runs past the end of the file (%d bytes of the slot present): file truncated", rl, len(rec))})
	}
	rec = rec[:rl]
	if h.SectionCount == 0 {
		return fail(&fieldError{off: base + cperOffSectionCount, field: "section_count", msg: "0: no section descriptor"})
	}
	if maxSec := (rl - CPERHeaderSize) / CPERSectionDescriptorSize; uint32(h.SectionCount) > maxSec {
		return fail(&fieldError{off: base + cperOffSectionCount, field: "section_count", msg: fmt.Sprintf("%d descriptors do not fit in record_length %d (room for %d)", h.SectionCount, rl, maxSec)})
	}
	r := &Record{Slot: slot, Offset: base, ID: id, Header: h, Creator: h.CreatorID}
	r.Sections = make([]CPERSection, 0, h.SectionCount)
	for i := 0; i < int(h.SectionCount); i++ {
		sec, fe := decodeCPERSection(rec, CPERHeaderSize+i*CPERSectionDescriptorSize, rl, base)
		if fe != nil {
			fe.field = fmt.Sprintf("section[%d].%s", i, fe.field)
			return fail(fe)
		}
		r.Sections = append(r.Sections, sec)
	}
	var errs []*RecordError
	if h.RecordID != id {
		errs = append(errs, &RecordError{Slot: slot, ID: id, Off: base + cperOffRecordID, Field: "record_id", Decoded: true,
			Err: fmt.Errorf("CPER header says %#x, slot map says %#x", h.RecordID, id)})
	}
	r.Timestamp = cperTimestamp(&h)
	primary := r.Sections[0]
	r.SectionType = primary.Type
	r.StoredLength = int(primary.Length)
	body := rec[primary.Offset : primary.Offset+primary.Length]
	r.Kind = KindUnknown
	if h.CreatorID == CreatorPstore {
		switch primary.Type {
		case SectionDmesg:
			r.Kind = KindDmesg
			if err := d.spend(body); err != nil {
				ferr := &fieldError{off: base + int64(primary.Offset), field: "section[0] text", err: err}
				return nil, append(errs, ferr.toRecordError(slot, id))
			}
			r.Text = string(body)
		case SectionDmesgZ:
			r.Kind = KindDmesgZ
			r.Compressed = true
			text, err := d.inflate(body)
			if err != nil && len(body) >= 4 && string(body[:4]) == "\x28\xb5\x2f\xfd" {
				err = fmt.Errorf("zstd frame (guest pstore.compress=zstd): %w", ErrUnsupportedCompression)
			} else if err != nil && !errors.Is(err, ErrTextTooLarge) {
				err = fmt.Errorf("not a valid raw deflate stream (pstore's default compressor; lzo/lz4/842 are not decoded): %w", err)
			}
			if err != nil {
				ferr := &fieldError{off: base + int64(primary.Offset), field: "section[0] deflate data", err: err}
				return nil, append(errs, ferr.toRecordError(slot, id))
			}
			r.Text = text
		case SectionMCE:
			r.Kind = KindMCE
		}
	}
	if r.Kind == KindDmesg || r.Kind == KindDmesgZ {
		r.Reason, r.Count, r.Part = parsePstoreHeader(r.Text)
	}
	return r, errs
}

// itoa, hex32 and quoteBytes format numbers and bytes for error messages.
func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func hex32(v uint32) string { return "0x" + strconv.FormatUint(uint64(v), 16) }

func quoteBytes(b []byte) string { return strconv.QuoteToASCII(string(b)) }
