package aml

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/stretchr/testify/require"
)

// amlTables returns the DSDT/SSDT fixtures (path -> whole table bytes).
func amlTables(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, pat := range []string{"DSDT.dat", "SSDT*.dat"} {
		m, err := filepath.Glob(filepath.Join(fixtures.Shared(t), "tables", "*", pat))
		require.NoError(t, err)
		for _, p := range m {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Greater(t, len(b), 36)
			out[p] = b
		}
	}
	require.GreaterOrEqual(t, len(out), 9)
	return out
}

// allTables adds the iasl-compiled golden fixtures (fixtures/aml/*.aml) to
// the real QEMU tables.
func allTables(t testing.TB) map[string][]byte {
	t.Helper()
	out := amlTables(t)
	m, err := filepath.Glob(filepath.Join(fixtures.Dir(), "aml", "*.aml"))
	require.NoError(t, err)
	require.NotEmpty(t, m)
	for _, p := range m {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		out[p] = b
	}
	return out
}

func TestDecodeRealTables(t *testing.T) {
	for p, b := range allTables(t) {
		root, err := Decode(b[36:])
		require.NoError(t, err, p)
		require.Equal(t, len(b)-36, int(root.Len))
	}
}

func TestDecodeReencodeRealTables(t *testing.T) {
	for p, b := range allTables(t) {
		body := b[36:]
		root, err := Decode(body)
		require.NoError(t, err, p)
		again, err := root.AppendAML(nil)
		require.NoError(t, err, p)
		require.Equal(t, body, again, p)
	}
}
