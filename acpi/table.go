// Package acpi frames and parses ACPI tables (the 36-byte System
// Description Table header, checksums, tables from a dump or from
// /sys/firmware/acpi/tables). Every error about table bytes or header
// fields is a *FormatError with its offset. The AML inside a table is
// encoded and decoded by package aml; acpidiag's diagnostic SSDT is built
// by package ssdt.
package acpi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// HeaderSize is the size in bytes of the standard ACPI System Description
// Table header (ACPI 6.5, section 5.2.6) that precedes every table body.
const HeaderSize = 36

// Byte offsets of the header fields.
const (
	offSignature       = 0
	offLength          = 4
	offRevision        = 8
	offChecksum        = 9
	offOEMID           = 10
	offOEMTableID      = 16
	offOEMRevision     = 24
	offCreatorID       = 28
	offCreatorRevision = 32
)

// Header is the decoded 36-byte ACPI table header.
//
// The string fields hold the raw header bytes with trailing NUL padding
// removed (spaces are kept, so Marshal(Parse(b)) reproduces b).
type Header struct {
	Signature       string // 4 characters, e.g. "SSDT"
	Length          uint32 // whole table length including the header
	Revision        uint8
	Checksum        uint8  // byte making the sum of the whole table 0
	OEMID           string // up to 6 characters
	OEMTableID      string // up to 8 characters
	OEMRevision     uint32
	CreatorID       string // 4 characters, e.g. "INTL" for iasl
	CreatorRevision uint32
}

// ErrChecksum is wrapped by the *FormatError that Parse returns when a
// table's bytes do not sum to zero. Parse still returns the header and body
// in that case, so callers may report the mismatch and continue.
var ErrChecksum = errors.New("checksum mismatch")

// FormatError reports a malformed ACPI table. Off is the byte offset of the
// problem relative to the start of the data given to Parse, Split or
// ReadDir's file; Field names the header field involved, if any.
type FormatError struct {
	Off   int64
	Field string
	Msg   string
	Err   error // underlying cause, e.g. ErrChecksum; may be nil
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("acpi: offset %#x", e.Off)
	if e.Field != "" {
		s += " (" + e.Field + ")"
	}
	s += ": " + e.Msg
	if e.Err != nil && !strings.Contains(e.Msg, e.Err.Error()) {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *FormatError) Unwrap() error { return e.Err }

// Checksum returns the byte value that makes the sum of b plus that value
// zero modulo 256. For a whole table whose checksum byte is zero, it is the
// value to store in the checksum field; for a valid table it returns 0.
func Checksum(b []byte) uint8 {
	var s uint8
	for _, c := range b {
		s += c
	}
	return -s
}

func printable(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return i
		}
	}
	return -1
}

// checkID checks the header field Header.<field> that Marshal writes at
// offset off; the error is a *FormatError naming it.
func checkID(field string, off int64, v string, min, max int) error {
	if len(v) < min || len(v) > max {
		want := fmt.Sprintf("%d", max)
		if min != max {
			want = fmt.Sprintf("at most %d", max)
		}
		return &FormatError{Off: off, Field: field, Msg: fmt.Sprintf("%d characters, want %s", len(v), want)}
	}
	if i := printable(v); i >= 0 {
		return &FormatError{Off: off + int64(i), Field: field, Msg: fmt.Sprintf("non-printable character %#02x at index %d", v[i], i)}
	}
	return nil
}

// Check checks the header fields Marshal writes: a signature and creator
// id of exactly 4 printable ASCII characters (not "FACS", which has no
// standard header), an OEMID of at most 6 and an OEMTableID of at most 8
// printable characters. The error is a *FormatError whose Field names the
// header field and Off its offset in the table.
func (h Header) Check() error {
	if err := checkID("Signature", offSignature, h.Signature, 4, 4); err != nil {
		return err
	}
	if h.Signature == "FACS" {
		return &FormatError{Off: offSignature, Field: "Signature", Msg: "the FACS has no standard table header"}
	}
	if err := checkID("OEMID", offOEMID, h.OEMID, 0, 6); err != nil {
		return err
	}
	if err := checkID("OEMTableID", offOEMTableID, h.OEMTableID, 0, 8); err != nil {
		return err
	}
	return checkID("CreatorID", offCreatorID, h.CreatorID, 4, 4)
}

// Marshal returns the table made of h and body. It computes the Length and
// Checksum fields itself (the values in h are ignored). It refuses the
// header fields Check refuses, and a table longer than 4 GiB - 1, with a
// *FormatError naming the header field (Signature, ..., Length).
func Marshal(h Header, body []byte) ([]byte, error) {
	if err := h.Check(); err != nil {
		return nil, err
	}
	if uint64(len(body))+HeaderSize > math.MaxUint32 {
		return nil, &FormatError{Off: offLength, Field: "Length", Msg: fmt.Sprintf("table %s: a %d-byte body makes the table longer than the 32-bit Length field allows", h.Signature, len(body))}
	}
	total := HeaderSize + len(body)
	b := make([]byte, total)
	copy(b[offSignature:], h.Signature)
	binary.LittleEndian.PutUint32(b[offLength:], uint32(total))
	b[offRevision] = h.Revision
	copy(b[offOEMID:offOEMID+6], h.OEMID)
	copy(b[offOEMTableID:offOEMTableID+8], h.OEMTableID)
	binary.LittleEndian.PutUint32(b[offOEMRevision:], h.OEMRevision)
	copy(b[offCreatorID:offCreatorID+4], h.CreatorID)
	binary.LittleEndian.PutUint32(b[offCreatorRevision:], h.CreatorRevision)
	copy(b[HeaderSize:], body)
	b[offChecksum] = Checksum(b)
	return b, nil
}

func trimNUL(b []byte) string {
	n := len(b)
	for n > 0 && b[n-1] == 0 {
		n--
	}
	return string(b[:n])
}

// parseHeader decodes and validates the header in b (len(b) >= HeaderSize)
// without looking at the length of b.
func parseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, &FormatError{Off: int64(len(b)), Msg: fmt.Sprintf("truncated header: %d bytes, need %d", len(b), HeaderSize)}
	}
	sig := b[offSignature : offSignature+4]
	for i, c := range sig {
		if c < 0x20 || c > 0x7e {
			return Header{}, &FormatError{Off: int64(offSignature + i), Field: "Signature", Msg: fmt.Sprintf("non-printable byte %#02x in signature %q", c, sig)}
		}
	}
	if string(sig) == "FACS" {
		// The FACS (ACPI 6.5, 5.2.10) has only Signature and Length in
		// common with the standard header, and no checksum.
		h := Header{Signature: "FACS", Length: binary.LittleEndian.Uint32(b[offLength:]), Revision: b[facsVersionOff]}
		if h.Length < facsMinSize {
			return h, &FormatError{Off: offLength, Field: "Length", Msg: fmt.Sprintf("table FACS: length %d is smaller than %d bytes", h.Length, facsMinSize)}
		}
		return h, nil
	}
	h := Header{
		Signature:       string(sig),
		Length:          binary.LittleEndian.Uint32(b[offLength:]),
		Revision:        b[offRevision],
		Checksum:        b[offChecksum],
		OEMID:           trimNUL(b[offOEMID : offOEMID+6]),
		OEMTableID:      trimNUL(b[offOEMTableID : offOEMTableID+8]),
		OEMRevision:     binary.LittleEndian.Uint32(b[offOEMRevision:]),
		CreatorID:       trimNUL(b[offCreatorID : offCreatorID+4]),
		CreatorRevision: binary.LittleEndian.Uint32(b[offCreatorRevision:]),
	}
	if h.Length < HeaderSize {
		return h, &FormatError{Off: offLength, Field: "Length", Msg: fmt.Sprintf("table %s: length %d is smaller than the %d-byte header", h.Signature, h.Length, HeaderSize)}
	}
	return h, nil
}

// FACS layout facts: the FACS has no standard header.
const (
	facsVersionOff = 32
	facsMinSize    = 64
)

// Parse decodes one whole ACPI table. The header's Length must equal
// len(b) (a longer b is refused as trailing data; use Split for several
// tables). It returns the header and the body (b[HeaderSize:], not copied).
//
// All errors are *FormatError with the byte offset of the problem. When only
// the checksum is wrong, the error wraps ErrChecksum and the header and body
// are returned as well.
//
// The FACS, which has no standard header and no checksum, is accepted:
// its Header holds only Signature, Length and Revision (the FACS Version
// field), and the body is everything after the Length field (b[8:]).
func Parse(b []byte) (Header, []byte, error) {
	h, err := parseHeader(b)
	if err != nil {
		return Header{}, nil, err
	}
	if int64(h.Length) > int64(len(b)) {
		return Header{}, nil, &FormatError{Off: int64(len(b)), Field: "Length", Msg: fmt.Sprintf("table %s truncated: header says %d bytes, have %d", h.Signature, h.Length, len(b))}
	}
	if int64(h.Length) < int64(len(b)) {
		return Header{}, nil, &FormatError{Off: int64(h.Length), Field: "Length", Msg: fmt.Sprintf("table %s: %d bytes of trailing data after the %d bytes the header declares", h.Signature, int64(len(b))-int64(h.Length), h.Length)}
	}
	if h.Signature == "FACS" {
		return h, b[8:], nil
	}
	body := b[HeaderSize:]
	if s := Checksum(b); s != 0 {
		want := h.Checksum + s
		return h, body, &FormatError{Off: offChecksum, Field: "Checksum", Msg: fmt.Sprintf("table %s: checksum byte is %#02x, want %#02x", h.Signature, h.Checksum, want), Err: ErrChecksum}
	}
	return h, body, nil
}

// Table is one ACPI table found by Split or ReadDir.
type Table struct {
	Header Header
	Body   []byte // the AML or table-specific data after the header
	Raw    []byte // the whole table, header included
	Off    int64  // byte offset of the table in the blob given to Split (0 for ReadDir files holding one table)
	Source string // file the table was read from (ReadDir), empty for Split
}

// Split cuts a blob of concatenated tables (for example a dump or QEMU's
// etc/acpi/tables) into tables. Every table is validated as by Parse; the
// error (a *FormatError) carries the absolute offset of the bad table's
// problem in blob. Split does not copy: the slices point into blob.
func Split(blob []byte) ([]Table, error) {
	var out []Table
	var off int64
	for int(off) < len(blob) {
		rest := blob[off:]
		h, err := parseHeader(rest)
		if err != nil {
			return nil, shift(err, off, len(out))
		}
		if int64(h.Length) > int64(len(rest)) {
			return nil, &FormatError{Off: off + offLength, Field: "Length", Msg: fmt.Sprintf("table #%d (%s at %#x): length %d runs past the end of the data (%d bytes left)", len(out), h.Signature, off, h.Length, len(rest))}
		}
		raw := rest[:h.Length]
		h, body, err := Parse(raw)
		if err != nil {
			return nil, shift(err, off, len(out))
		}
		out = append(out, Table{Header: h, Body: body, Raw: raw, Off: off})
		off += int64(h.Length)
	}
	return out, nil
}

func shift(err error, off int64, idx int) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		return &FormatError{Off: fe.Off + off, Field: fe.Field, Msg: fmt.Sprintf("table #%d at %#x: %s", idx, off, fe.Msg), Err: fe.Err}
	}
	return err
}

// ReadDir reads every regular file in dir (not recursively; subdirectories
// and symbolic links to directories are skipped) as one or more concatenated
// ACPI tables, e.g. /sys/firmware/acpi/tables or a directory of *.dat
// fixtures. Tables are returned in file-name order, each with Source set.
// A file that is not a valid table fails the whole call with an error naming
// the file (wrapping a *FormatError with the offset in that file).
func ReadDir(dir string) ([]Table, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("acpi: reading table directory: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var out []Table
	for _, name := range names {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("acpi: %w", err)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("acpi: %w", err)
		}
		tabs, err := Split(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if len(tabs) == 0 {
			return nil, fmt.Errorf("%s: %w", p, &FormatError{Off: 0, Msg: "empty file, no ACPI table"})
		}
		for i := range tabs {
			tabs[i].Source = p
		}
		out = append(out, tabs...)
	}
	return out, nil
}
