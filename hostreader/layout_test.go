package hostreader

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

// Every region field is decoded and printed: changing any one word of a
// valid region changes the decoded Snapshot word, the text verdict and the
// JSON verdict. (The printers show some words combined — the stamps as
// times, the OSI bits as names — so the test compares whole outputs.)
func TestEveryFieldDecodedAndPrinted(t *testing.T) {
	at := time.UnixMilli(0x19A_5E0A_1B2C)
	render := func(img []byte) (Snapshot, string, string) {
		s, err := DecodeRegion(img, at)
		require.NoError(t, err)
		v := Assess(s, VerdictConfig{}, nil)
		var text bytes.Buffer
		require.NoError(t, v.WriteText(&text))
		js, err := json.Marshal(v)
		require.NoError(t, err)
		return s, text.String() + "\n" + v.String(), string(js)
	}
	base := newImage(16384)
	putWord(base, region.RegionSize.Offset, 8192) // room for a changed size word
	setEcho(base, at.Add(-time.Second))
	setHostStamp(base, at.Add(-500*time.Millisecond))
	putWord(base, region.OSI.Offset, region.OSIValid|1)
	baseSnap, baseText, baseJSON := render(base)
	for _, f := range region.Fields {
		img := append([]byte(nil), base...)
		old, _ := baseSnap.Word(f)
		// Flip bit 1 (keeps seq even) and bit 2 (a visible OSI bit).
		putWord(img, f.Offset, old^0b110)
		s, text, js := render(img)
		got, ok := s.Word(f)
		require.True(t, ok, f.Name)
		require.Equal(t, old^0b110, got, "%s decoded", f.Name)
		require.NotEqual(t, baseText, text, "%s is not printed in text", f.Name)
		require.NotEqual(t, baseJSON, js, "%s is not printed in JSON", f.Name)
	}
}
