package hostreader

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smallStore builds a 12 KiB store (record_size 4096) from the header and
// CPER framing of a real fixture, holding one compressed and one plain
// record: a compact seed whose every field mutations reach quickly.
func smallStore(tb testing.TB) []byte {
	real := readCase(tb, "q35_sysrq_deflate")
	const rs = 4096
	b := make([]byte, 3*rs)
	copy(b, real[:ERSTHeaderSize])
	le := binary.LittleEndian
	le.PutUint32(b[erstOffRecordSize:], rs)
	le.PutUint32(b[erstOffStorageOffset:], rs)
	text := "Panic#1 Part1\n<4>[    9.000000] Oops: 0002 [#1] SMP\n<0>[    9.100000] Kernel panic - not syncing: Fatal exception\n"
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	w.Write([]byte(text))
	w.Close()
	bodies := [][]byte{z.Bytes(), []byte("Panic#1 Part2\n<6>[    0.000000] Linux version 6.1\n")}
	for i, body := range bodies {
		slot := 1 + i
		o := slot * rs
		copy(b[o:], real[8192:8192+200])
		if i == 1 {
			copy(b[o+CPERHeaderSize+secOffType:], SectionDmesg[:])
		}
		copy(b[o+200:], body)
		le.PutUint32(b[o+cperOffRecordLength:], uint32(200+len(body)))
		le.PutUint32(b[o+CPERHeaderSize+secOffLength:], uint32(len(body)))
		le.PutUint64(b[o+cperOffRecordID:], uint64(slot))
		le.PutUint64(b[erstOffMap+8*slot:], uint64(slot))
	}
	return b
}

func TestSmallStoreSeed(t *testing.T) {
	s, err := DecodeERST(smallStore(t))
	require.NoError(t, err)
	require.Empty(t, s.Errors)
	evs := s.Events()
	require.Len(t, evs, 1)
	assert.Equal(t, "Kernel panic - not syncing: Fatal exception", evs[0].PanicLine)
	assert.Equal(t, []string{"Oops: 0002 [#1] SMP"}, evs[0].OopsLines)
}

// FuzzDecodeERST feeds arbitrary bytes (seeded with every real fixture and
// some damaged variants) to DecodeERST and Events: no panic, header errors
// are *ERSTFormatError, and every decoded record lies inside the input.
func FuzzDecodeERST(f *testing.F) {
	for name := range erstCases(f) {
		b := readCase(f, name)
		f.Add(b)
		f.Add(b[:0x2000+300])
	}
	f.Add(smallStore(f))
	f.Add([]byte("ERSTSTOR"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeERST(data)
		if err != nil {
			var fe *ERSTFormatError
			if !errors.As(err, &fe) {
				t.Fatalf("header error of type %T: %v", err, err)
			}
			if s != nil {
				t.Fatal("store returned with an error")
			}
			return
		}
		total := 0
		for _, r := range s.Records {
			if r.Offset < 0 || r.Offset+int64(r.Header.RecordLength) > int64(len(data)) {
				t.Fatalf("record at %#x+%d outside the %d-byte input", r.Offset, r.Header.RecordLength, len(data))
			}
			if len(r.Text) > MaxRecordText {
				t.Fatalf("record text %d bytes", len(r.Text))
			}
			total += TextCost([]byte(r.Text))
			_ = EscapeLog(r.Text)
			_ = r.Body()
		}
		if total > MaxStoreText {
			t.Fatalf("escaped text %d bytes, over the MaxStoreText budget", total)
		}
		for _, e := range s.Errors {
			if e.Error() == "" || e.Field == "" {
				t.Fatalf("empty error %#v", e)
			}
		}
		for _, ev := range s.Events() {
			if len(ev.Parts) == 0 {
				t.Fatal("event without parts")
			}
			if ev.PanicLine != "" && !strings.HasPrefix(ev.PanicLine, panicPrefix) {
				t.Fatalf("panic line %q", ev.PanicLine)
			}
		}
	})
}

// FuzzEscapeLog: whatever the guest wrote, the escaped text is valid UTF-8
// with no control byte other than newline and tab, and only printable runes.
func FuzzEscapeLog(f *testing.F) {
	for _, s := range []string{"plain\n", "\x1b[2J\x07", "bad \xff utf8", "\u202e bidi", `back\slash`, "\u009b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := EscapeLog(s)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of %q", s)
		}
		for _, r := range out {
			if r == '\n' || r == '\t' {
				continue
			}
			if !unicode.IsPrint(r) {
				t.Fatalf("non-printable %U in output for %q", r, s)
			}
		}
		if strings.Count(out, "\n") != strings.Count(s, "\n") {
			t.Fatal("newlines changed")
		}
		// TextCost, the unit of the ERST budget, is never below what either
		// printer writes.
		js, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if c := TextCost([]byte(s)); c < len(out) || c < len(js)-2 {
			t.Fatalf("TextCost %d < escaped %d or JSON %d for %q", c, len(out), len(js)-2, s)
		}
	})
}

// FuzzEscapeLine: whatever the guest wrote, the one-line escape is valid
// UTF-8 of printable runes only (no newline, no tab), and it is
// injective on the input: unescaping \\ and \xNN gives the input back.
func FuzzEscapeLine(f *testing.F) {
	for _, s := range []string{"plain", "a\nb\tc", "\x1b[2J\x07", "bad \xff utf8", "\"q\" \x1b[1m café", `back\slash\x41`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := EscapeLine(s)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of %q", s)
		}
		for _, r := range out {
			if !unicode.IsPrint(r) {
				t.Fatalf("non-printable %U in output for %q", r, s)
			}
		}
		if back := unescapeLine(t, out); back != s {
			t.Fatalf("escape of %q is %q, which reads back as %q", s, out, back)
		}
	})
}

// unescapeLine reverses EscapeLine (\\ and \xNN; everything else literal).
func unescapeLine(t *testing.T, s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			b.WriteByte('\\')
			i++
			continue
		}
		if i+3 < len(s) && s[i+1] == 'x' {
			v, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				t.Fatalf("bad escape in %q at %d", s, i)
			}
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		t.Fatalf("lone backslash in %q at %d", s, i)
	}
	return b.String()
}
