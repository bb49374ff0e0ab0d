package aml

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode. Seeds: the real QEMU
// DSDT/SSDT bodies, the iasl-compiled golden fixtures and encoder output.
// Properties: no panic; errors are *DecodeError with an offset inside the
// input; a successful decode re-encodes to exactly the input, covers it
// completely and prints without error.
func FuzzDecode(f *testing.F) {
	for _, b := range allTables(f) {
		f.Add(b[36:])
	}
	f.Add(builtTree(f))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		root, err := Decode(body)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is %T, not *DecodeError: %v", err, err)
			}
			if de.Off < 0 || de.Off > len(body) {
				t.Fatalf("error offset %d outside the %d-byte input: %v", de.Off, len(body), err)
			}
			return
		}
		if int(root.Len()) != len(body) {
			t.Fatalf("root covers %d of %d bytes", root.Len(), len(body))
		}
		again, err := root.AppendAML(nil)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, body) {
			t.Fatalf("re-encoding differs from input:\n% x\n% x", body, again)
		}
		if err := Format(io.Discard, root); err != nil {
			t.Fatalf("format: %v", err)
		}
	})
}
