package hostreader

// Damaged stores, all built from the real fixtures: every damage must give a
// clear error naming the field and offset, never a panic, and must not stop
// the undamaged records from decoding.

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const fixRS = 8192 // record_size of the fixtures (checked in cloneCase)

func cloneCase(t *testing.T, name string) []byte {
	t.Helper()
	b := readCase(t, name)
	require.Equal(t, uint32(fixRS), binary.LittleEndian.Uint32(b[erstOffRecordSize:]))
	return append([]byte(nil), b...)
}

func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func put64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }
func get32(b []byte, off int) uint32    { return binary.LittleEndian.Uint32(b[off:]) }

func requireFormatError(t *testing.T, b []byte, field string, off int64) *ERSTFormatError {
	t.Helper()
	s, err := DecodeERST(b)
	require.Nil(t, s)
	var fe *ERSTFormatError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, field, fe.Field, "error: %v", err)
	assert.Equal(t, off, fe.Off, "error: %v", err)
	assert.Contains(t, err.Error(), field)
	return fe
}

// recordErrors returns the errors for one slot.
func recordErrors(s *ERSTStore, slot int) []*RecordError {
	var out []*RecordError
	for _, e := range s.Errors {
		if e.Slot == slot {
			out = append(out, e)
		}
	}
	return out
}

func slotsOf(s *ERSTStore) []int {
	var out []int
	for _, r := range s.Records {
		out = append(out, r.Slot)
	}
	return out
}

func TestERSTHeaderErrors(t *testing.T) {
	base := cloneCase(t, "q35_sysrq_deflate")
	mod := func(f func(b []byte)) []byte {
		b := append([]byte(nil), base...)
		f(b)
		return b
	}
	requireFormatError(t, nil, "header", 0)
	requireFormatError(t, base[:0x17], "header", 0x17)
	requireFormatError(t, mod(func(b []byte) { copy(b, "ERSTSTOP") }), "magic", 0)
	requireFormatError(t, mod(func(b []byte) { put32(b, 8, 0) }), "record_size", 8)
	requireFormatError(t, mod(func(b []byte) { put32(b, 8, 3000) }), "record_size", 8)
	requireFormatError(t, mod(func(b []byte) { put32(b, 8, 12288) }), "record_size", 8)
	requireFormatError(t, mod(func(b []byte) { put32(b, 8, 1<<31) }), "record_size", 8)
	requireFormatError(t, mod(func(b []byte) { put32(b, 8, 1<<17) }), "record_size", 8) // larger than the file
	requireFormatError(t, mod(func(b []byte) { binary.LittleEndian.PutUint16(b[0x10:], 0x0200) }), "version", 0x10)
	requireFormatError(t, mod(func(b []byte) { binary.LittleEndian.PutUint16(b[0x12:], 1) }), "reserved", 0x12)
	requireFormatError(t, mod(func(b []byte) { put32(b, 0xc, 0) }), "storage_offset", 0xc)
	requireFormatError(t, mod(func(b []byte) { put32(b, 0xc, 0x2001) }), "storage_offset", 0xc)
	requireFormatError(t, mod(func(b []byte) { put32(b, 0xc, 0xfffe0000) }), "storage_offset", 0xc)
	fe := requireFormatError(t, mod(func(b []byte) { put32(b, 0xc, 0x20000) }), "storage_offset", 0xc)
	assert.Contains(t, fe.Msg, "beyond the end of the file")
}

// TestERSTTruncated cuts the real two-panics store at many points: before
// storage_offset the header is unusable; after it, every record that lies
// wholly before the cut decodes and every other used slot has an error.
func TestERSTTruncated(t *testing.T) {
	full := cloneCase(t, "q35_two_panics_deflate")
	ref, err := DecodeERST(full)
	require.NoError(t, err)
	require.Len(t, ref.Records, 6)
	cuts := []int{0, 1, 8, 0x17, 0x18, 0x20, 0x100, 0x1fff}
	for _, r := range ref.Records {
		o := int(r.Offset)
		cuts = append(cuts, o, o+1, o+64, o+127, o+128, o+199, o+200, o+int(r.Header.RecordLength)/2,
			o+int(r.Header.RecordLength)-1, o+int(r.Header.RecordLength), o+fixRS-1)
	}
	cuts = append(cuts, 7*fixRS, len(full)-1)
	for _, cut := range cuts {
		t.Run(fmt.Sprintf("cut_%#x", cut), func(t *testing.T) {
			s, err := DecodeERST(full[:cut])
			if cut < 0x2000 {
				var fe *ERSTFormatError
				require.ErrorAs(t, err, &fe)
				return
			}
			require.NoError(t, err)
			var want []int
			for _, r := range ref.Records {
				if int(r.Offset)+int(r.Header.RecordLength) <= cut {
					want = append(want, r.Slot)
				} else {
					errs := recordErrors(s, r.Slot)
					require.Len(t, errs, 1, "slot %d cut at %#x", r.Slot, cut)
					e := errs[0]
					switch {
					case int(r.Offset) >= cut:
						assert.Equal(t, "map", e.Field)
						assert.Contains(t, e.Error(), "beyond the end of the file")
					case int(r.Offset)+CPERHeaderSize > cut:
						assert.Equal(t, "cper header", e.Field)
						assert.Equal(t, r.Offset, e.Off)
					default:
						assert.Equal(t, "record_length", e.Field)
						assert.Equal(t, r.Offset+cperOffRecordLength, e.Off)
						assert.Contains(t, e.Error(), "truncated")
					}
				}
			}
			assert.Equal(t, want, slotsOf(s))
			for _, r := range s.Records {
				assert.Equal(t, ref.Records[r.Slot-1].Text, r.Text)
			}
		})
	}
}

func TestERSTMapOutsideFile(t *testing.T) {
	b := cloneCase(t, "q35_sysrq_none")
	// map[20] names slot 20 at 20*8 KiB = 160 KiB, past the 64 KiB file.
	put64(b, erstOffMap+8*20, 0x1234)
	put32(b, erstOffRecordCount, 3)
	s, err := DecodeERST(b)
	require.NoError(t, err)
	assert.Equal(t, []int{1, 2}, slotsOf(s))
	errs := recordErrors(s, 20)
	require.Len(t, errs, 1)
	assert.Equal(t, "map", errs[0].Field)
	assert.Equal(t, int64(erstOffMap+8*20), errs[0].Off)
	assert.Equal(t, uint64(0x1234), errs[0].ID)
	assert.Contains(t, errs[0].Error(), "beyond the end of the file")
	assert.Len(t, s.Errors, 1, "record_count matches the map: no other error")

	// A map entry naming a slot inside the storage header.
	b = cloneCase(t, "q35_sysrq_none")
	put64(b, erstOffMap, 0x77)
	s, err = DecodeERST(b)
	require.NoError(t, err)
	assert.Equal(t, []int{1, 2}, slotsOf(s))
	errs = recordErrors(s, 0)
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), "storage header")
}

func TestERSTRecordCountLies(t *testing.T) {
	for _, n := range []uint32{0, 1, 5, 0xffffffff} {
		b := cloneCase(t, "q35_sysrq_none")
		put32(b, erstOffRecordCount, n)
		s, err := DecodeERST(b)
		require.NoError(t, err)
		assert.Equal(t, []int{1, 2}, slotsOf(s))
		errs := recordErrors(s, -1)
		require.Len(t, errs, 1)
		assert.Equal(t, "record_count", errs[0].Field)
		assert.Equal(t, int64(erstOffRecordCount), errs[0].Off)
		assert.Contains(t, errs[0].Error(), fmt.Sprintf("header says %d records, the slot map holds 2", n))
	}
}

// TestERSTRecordDamage damages slot 1 in many ways; slot 2 must still decode.
func TestERSTRecordDamage(t *testing.T) {
	const o = fixRS // slot 1
	secOff := o + CPERHeaderSize
	tests := []struct {
		name  string
		file  string
		mod   func(b []byte)
		field string
		off   int
		msg   string
	}{
		{"signature", "q35_sysrq_none", func(b []byte) { copy(b[o:], "XPER") }, "cper signature", o, `"XPER"`},
		{"signature_end", "q35_sysrq_none", func(b []byte) { put32(b, o+6, 0) }, "cper signature_end", o + 6, "0x0"},
		{"record_length_huge", "q35_sysrq_none", func(b []byte) { put32(b, o+20, 0xfffffff0) }, "record_length", o + 20, "exceeds the slot size"},
		{"record_length_small", "q35_sysrq_none", func(b []byte) { put32(b, o+20, 100) }, "record_length", o + 20, "smaller than the CPER header"},
		{"section_count_zero", "q35_sysrq_none", func(b []byte) { binary.LittleEndian.PutUint16(b[o+10:], 0) }, "section_count", o + 10, "no section"},
		{"section_count_huge", "q35_sysrq_none", func(b []byte) { binary.LittleEndian.PutUint16(b[o+10:], 0xffff) }, "section_count", o + 10, "do not fit"},
		{"section_offset_inside_header", "q35_sysrq_none", func(b []byte) { put32(b, secOff, 5) }, "section[0].section_offset", secOff, "outside the record"},
		{"section_offset_past_record", "q35_sysrq_none", func(b []byte) { put32(b, secOff, 0x7fffffff) }, "section[0].section_offset", secOff, "outside the record"},
		{"section_length_huge", "q35_sysrq_none", func(b []byte) { put32(b, secOff+4, 0xffffffff) }, "section[0].section_length", secOff + 4, "runs past record_length"},
		{"deflate_bad_block_type", "q35_sysrq_deflate", func(b []byte) { b[o+200] |= 0x06 }, "section[0] deflate data", o + 200, "corrupt input"},
		{"deflate_truncated", "q35_sysrq_deflate", func(b []byte) {
			n := get32(b, secOff+4) / 2
			put32(b, secOff+4, n)
			put32(b, o+20, 200+n)
		}, "section[0] deflate data", o + 200, "truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := cloneCase(t, tc.file)
			tc.mod(b)
			s, err := DecodeERST(b)
			require.NoError(t, err)
			assert.Equal(t, []int{2}, slotsOf(s), "slot 2 still decodes")
			assert.Equal(t, "Panic#1 Part2", firstLine(s.Records[0].Text))
			errs := recordErrors(s, 1)
			require.Len(t, errs, 1, "errors: %v", s.Errors)
			e := errs[0]
			assert.Equal(t, tc.field, e.Field, "error: %v", e)
			assert.Equal(t, int64(tc.off), e.Off, "error: %v", e)
			assert.False(t, e.Decoded)
			assert.Contains(t, e.Error(), tc.msg)
			assert.Contains(t, e.Error(), "slot 1")
			// The surviving record still forms an event (with Part 1 missing).
			evs := s.Events()
			require.Len(t, evs, 1)
			assert.Equal(t, []int{1}, evs[0].MissingParts)
		})
	}
}

// TestERSTDeflateGarbageMidStream: raw deflate has no checksum, so bytes
// overwritten in the middle of a stream are not always detected; the
// decoder must then either report the record or return (garbled) text, and
// the other record is unaffected.
func TestERSTDeflateGarbageMidStream(t *testing.T) {
	for _, at := range []int{50, 100, 1000, 3000} {
		b := cloneCase(t, "q35_sysrq_deflate")
		for i := 0; i < 64; i++ {
			b[fixRS+200+at+i] = 0xff
		}
		s, err := DecodeERST(b)
		require.NoError(t, err)
		errs := recordErrors(s, 1)
		if len(errs) == 0 {
			require.Len(t, s.Records, 2)
		} else {
			require.Len(t, errs, 1)
			assert.Equal(t, "section[0] deflate data", errs[0].Field)
			require.Len(t, s.Records, 1)
		}
		assert.Equal(t, "Panic#1 Part2", firstLine(s.Records[len(s.Records)-1].Text))
	}
}

func TestERSTDeflateErrorsUnwrap(t *testing.T) {
	b := cloneCase(t, "q35_sysrq_deflate")
	b[fixRS+200] |= 0x06 // BTYPE 11: reserved, invalid
	s, err := DecodeERST(b)
	require.NoError(t, err)
	errs := recordErrors(s, 1)
	require.Len(t, errs, 1)
	var ce flate.CorruptInputError
	assert.ErrorAs(t, errs[0], &ce)

	b = cloneCase(t, "q35_sysrq_deflate")
	secOff := fixRS + CPERHeaderSize
	n := get32(b, secOff+4) / 3
	put32(b, secOff+4, n)
	s, err = DecodeERST(b)
	require.NoError(t, err)
	errs = recordErrors(s, 1)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], io.ErrUnexpectedEOF)
}

// putBody replaces the section body of the record in slot, adjusting
// section_length and record_length.
func putBody(t *testing.T, b []byte, slot int, body []byte) {
	t.Helper()
	o := slot * fixRS
	require.LessOrEqual(t, 200+len(body), fixRS)
	copy(b[o+200:], body)
	put32(b, o+CPERHeaderSize+4, uint32(len(body)))
	put32(b, o+20, uint32(200+len(body)))
}

func deflateBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestERSTZipBomb(t *testing.T) {
	b := cloneCase(t, "q35_sysrq_deflate")
	bomb := deflateBytes(t, append([]byte("Panic#1 Part1\n"), make([]byte, 4<<20)...))
	putBody(t, b, 1, bomb)
	s, err := DecodeERST(b)
	require.NoError(t, err)
	assert.Equal(t, []int{2}, slotsOf(s))
	errs := recordErrors(s, 1)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], ErrTextTooLarge)

	// Exactly at the limit is fine.
	b = cloneCase(t, "q35_sysrq_deflate")
	text := "Panic#1 Part1\n" + strings.Repeat("A", MaxRecordText-14)
	putBody(t, b, 1, deflateBytes(t, []byte(text)))
	s, err = DecodeERST(b)
	require.NoError(t, err)
	require.Empty(t, s.Errors)
	assert.Equal(t, text, s.Records[0].Text)
}

// TestERSTStoreBudget fills every slot of a store with a record that
// inflates to MaxRecordText: the store-wide budget stops the total.
func TestERSTStoreBudget(t *testing.T) {
	// A 1 MiB store with 8 KiB slots: storage_offset 0x2000, 127 slots.
	b := make([]byte, 1<<20)
	tmpl := cloneCase(t, "q35_sysrq_deflate")
	copy(b, tmpl[:ERSTHeaderSize])
	body := deflateBytes(t, []byte("Panic#1 Part1\n"+strings.Repeat("z", MaxRecordText-14)))
	n := 0
	for slot := 1; slot < len(b)/fixRS; slot++ {
		copy(b[slot*fixRS:], tmpl[fixRS:fixRS+200])
		putBody(t, b, slot, body)
		put64(b, slot*fixRS+cperOffRecordID, uint64(slot))
		put64(b, erstOffMap+8*slot, uint64(slot))
		n++
	}
	put32(b, erstOffRecordCount, uint32(n))
	s, err := DecodeERST(b)
	require.NoError(t, err)
	total := 0
	for _, r := range s.Records {
		total += TextCost([]byte(r.Text))
	}
	assert.LessOrEqual(t, total, MaxStoreText)
	perRecord := TextCost([]byte("Panic#1 Part1\n" + strings.Repeat("z", MaxRecordText-14)))
	assert.Len(t, s.Records, MaxStoreText/perRecord)
	assert.Len(t, s.Errors, n-MaxStoreText/perRecord)
	for _, e := range s.Errors {
		assert.ErrorIs(t, e, ErrTextTooLarge)
		// The message names the budget (it said "more than 0 bytes").
		assert.Contains(t, e.Error(), "MaxStoreText")
		assert.NotContains(t, e.Error(), "more than 0 bytes")
	}
}

// The budget is counted after escaping: 1 MiB of NUL bytes prints as
// 4 MiB (\x00) or 6 MiB (JSON \u0000), so far fewer such records fit.
func TestERSTStoreBudgetCountsEscapes(t *testing.T) {
	b := make([]byte, 512<<10)
	tmpl := cloneCase(t, "q35_sysrq_deflate")
	copy(b, tmpl[:ERSTHeaderSize])
	body := deflateBytes(t, make([]byte, MaxRecordText))
	n := 0
	for slot := 1; slot < len(b)/fixRS; slot++ {
		copy(b[slot*fixRS:], tmpl[fixRS:fixRS+200])
		putBody(t, b, slot, body)
		put64(b, slot*fixRS+cperOffRecordID, uint64(slot))
		put64(b, erstOffMap+8*slot, uint64(slot))
		n++
	}
	require.Equal(t, 63, n)
	put32(b, erstOffRecordCount, uint32(n))
	s, err := DecodeERST(b)
	require.NoError(t, err)
	assert.Len(t, s.Records, MaxStoreText/(6*MaxRecordText))
	assert.Len(t, s.Errors, n-len(s.Records))
	escaped := 0
	for _, e := range s.Events() {
		escaped += len(EscapeLog(e.Text()))
	}
	assert.LessOrEqual(t, escaped, MaxStoreText)
}

func TestTextCost(t *testing.T) {
	for _, c := range []struct {
		in   string
		cost int
	}{
		{"", 0}, {"abc", 3}, {"a\n", 3}, {"\t", 2}, {`\`, 2}, {`"`, 2},
		{"\x00", 6}, {"\x1b", 6}, {"<4>", 13}, {"&", 6}, {"\x7f", 4},
		{"café", 5}, {"\xff", 6}, {"\u0085", 12}, {"\u2028", 18},
	} {
		assert.Equal(t, c.cost, TextCost([]byte(c.in)), "%q", c.in)
		// Never less than either printed form.
		js, _ := json.Marshal(c.in)
		assert.GreaterOrEqual(t, TextCost([]byte(c.in)), len(EscapeLog(c.in)), "%q", c.in)
		assert.GreaterOrEqual(t, TextCost([]byte(c.in)), len(js)-2, "%q", c.in)
	}
}

func TestERSTRecordIDMismatchAndDuplicates(t *testing.T) {
	b := cloneCase(t, "q35_sysrq_none")
	put64(b, fixRS+cperOffRecordID, 42)
	s, err := DecodeERST(b)
	require.NoError(t, err)
	assert.Equal(t, []int{1, 2}, slotsOf(s), "a record whose header id disagrees is still decoded")
	errs := recordErrors(s, 1)
	require.Len(t, errs, 1)
	assert.Equal(t, "record_id", errs[0].Field)
	assert.True(t, errs[0].Decoded)
	assert.Equal(t, int64(fixRS+cperOffRecordID), errs[0].Off)

	b = cloneCase(t, "q35_sysrq_none")
	copy(b[erstOffMap+16:erstOffMap+24], b[erstOffMap+8:erstOffMap+16]) // map[2] = map[1]
	s, err = DecodeERST(b)
	require.NoError(t, err)
	errs = recordErrors(s, 2)
	var fields []string
	for _, e := range errs {
		fields = append(fields, e.Field)
	}
	assert.ElementsMatch(t, []string{"map", "record_id"}, fields)
}

func TestERSTEmptyEndIDIsFree(t *testing.T) {
	b := cloneCase(t, "q35_sysrq_none")
	put64(b, erstOffMap+8*3, ERSTEmptyEndID)
	s, err := DecodeERST(b)
	require.NoError(t, err)
	assert.Empty(t, s.Errors)
	assert.Equal(t, []int{1, 2}, slotsOf(s))
}

func TestERSTNonPstoreRecords(t *testing.T) {
	b := cloneCase(t, "q35_sysrq_none")
	// Slot 1 becomes an MCE record, slot 2 a record from another creator.
	copy(b[fixRS+CPERHeaderSize+secOffType:], SectionMCE[:])
	copy(b[2*fixRS+cperOffCreatorID:], NotifyMCE[:])
	s, err := DecodeERST(b)
	require.NoError(t, err)
	require.Len(t, s.Records, 2)
	assert.Equal(t, KindMCE, s.Records[0].Kind)
	assert.Equal(t, KindUnknown, s.Records[1].Kind)
	assert.Empty(t, s.Records[0].Text)
	assert.Empty(t, s.Events())
	// A non-pstore creator's timestamp is read as UEFI BCD: the raw Unix
	// seconds are not valid BCD here, so the time is unknown.
	assert.True(t, s.Records[1].Timestamp.IsZero())
}

func TestRecordErrorFormat(t *testing.T) {
	e := &RecordError{Slot: 3, ID: 0x10, Off: 0x6014, Field: "record_length", Err: errors.New("bad")}
	assert.Equal(t, "erst: slot 3 (record id 0x10): record_length at offset 0x6014: bad", e.Error())
	e = &RecordError{Slot: -1, Off: 0x14, Field: "record_count", Err: errors.New("x")}
	assert.Equal(t, "erst: store: record_count at offset 0x14: x", e.Error())
	fe := &ERSTFormatError{Off: 0, Field: "magic", Msg: "m"}
	assert.Equal(t, "erst: magic at offset 0x0: m", fe.Error())
}

func TestERSTZstdRecord(t *testing.T) {
	b := cloneCase(t, "q35_sysrq_deflate")
	// A zstd frame header (magic 28 b5 2f fd) in place of the deflate data.
	putBody(t, b, 1, []byte{0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x10, 0x81, 0x00, 0x00})
	s, err := DecodeERST(b)
	require.NoError(t, err)
	errs := recordErrors(s, 1)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], ErrUnsupportedCompression)
	assert.Contains(t, errs[0].Error(), "zstd")
	assert.Equal(t, []int{2}, slotsOf(s))
}
