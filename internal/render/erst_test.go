package render

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/hostreader"
)

// The streamed JSON is the same document as encoding the whole report,
// for every real ERST store of the fixtures.
func TestErstJSONStreamedSameDocument(t *testing.T) {
	dirs, err := os.ReadDir(filepath.Join(fixtures.Real(t), "erst"))
	require.NoError(t, err)
	n := 0
	for _, d := range dirs {
		p := filepath.Join(fixtures.Real(t), "erst", d.Name(), "erst.backing")
		if _, err := os.Stat(p); err != nil {
			continue
		}
		n++
		s, err := hostreader.ReadERSTFile(p)
		require.NoError(t, err)
		evs := s.Events()
		var streamed bytes.Buffer
		require.NoError(t, ERSTJSON(&streamed, "f", s, evs, true))
		whole, err := marshalIndent(erstJSONReport("f", s, evs, true), "")
		require.NoError(t, err)
		assert.Equal(t, string(whole)+"\n", streamed.String(), d.Name())
	}
	require.NotZero(t, n, "no ERST stores in the fixtures")
}
