package hostreader

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecodeERST feeds arbitrary bytes (seeded with every real fixture and
// some damaged variants) to DecodeERST and Events: no panic, header errors
// are *ERSTFormatError, and every decoded record lies inside the input.
func FuzzDecodeERST(f *testing.F) {
	for name := range erstCases(f) {
		b := readCase(f, name)
		f.Add(b)
		f.Add(b[:0x2000+300])
	}
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
			total += len(r.Text)
			_ = EscapeLog(r.Text)
			_ = r.Body()
		}
		if total > MaxStoreText+len(data) {
			t.Fatalf("total text %d", total)
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
