package aml

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// amlTables returns the DSDT/SSDT fixtures (path -> whole table bytes).
func amlTables(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, pat := range []string{"DSDT.dat", "SSDT*.dat"} {
		m, err := filepath.Glob(filepath.Join(fixtures.Real(t), "tables", "*", pat))
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
		require.Equal(t, len(b)-36, int(root.Len()))
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

// The single optimistic pass and the two-pass decode must build the same
// tree; the fallback is taken exactly when a later declaration could change
// a lookup (the exotic ASL calls a method declared later).
func TestDecodeSinglePassMatchesTwoPass(t *testing.T) {
	for p, b := range allTables(t) {
		body := b[36:]
		one, err := Decode(body)
		require.NoError(t, err, p)
		two, err := decodeTwoPass(body)
		require.NoError(t, err, p)
		assert.Equal(t, two.String(), one.String(), p)

		d := newDecoder(body)
		d.optimistic, d.decl = true, true
		_, err = d.tree()
		require.NoError(t, err, p)
		t.Logf("%s: fallback=%v", p, d.redo)
	}
}

func TestDecodeForwardCallFallsBack(t *testing.T) {
	// Scope (\) { Method (CALR) { Return (LATE (One)) } Method (LATE, 1) { Return (Arg0) } }
	body := []byte{
		MethodOp, 0x0C, 'C', 'A', 'L', 'R', 0x00, ReturnOp, 'L', 'A', 'T', 'E', OneOp,
		MethodOp, 0x08, 'L', 'A', 'T', 'E', 0x01, ReturnOp, Arg0Op,
	}
	d := newDecoder(body)
	d.optimistic, d.decl = true, true
	_, err := d.tree()
	require.NoError(t, err) // parses, but LATE was taken as a 0-argument name
	assert.True(t, d.redo)
	root, err := Decode(body)
	require.NoError(t, err)
	ret := root.Children()[0].Children()[0]
	require.Equal(t, Op(ReturnOp), ret.Op())
	call := ret.Args()[0]
	assert.Equal(t, OpCall, call.Op())
	assert.Len(t, call.Args(), 1)
}
