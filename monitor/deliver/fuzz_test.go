package deliver

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzDecodeHeader: a spool file's header decoder on any bytes returns a
// meta with an id and a length within the input, or an error.
func FuzzDecodeHeader(f *testing.F) {
	f.Add([]byte(spoolMagic + `{"id":"a","vm":"v","spooled":"2026-11-29T10:00:00Z"}` + "\n\x1f\x8b"))
	f.Add([]byte(spoolMagic + "{}\n"))
	f.Add([]byte("ACPIDIAG-SPOOL 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, n, err := DecodeHeader(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		if m.ID == "" || n <= 0 || n > int64(len(data)) {
			t.Fatalf("meta %+v, header length %d of %d bytes", m, n, len(data))
		}
	})
}
