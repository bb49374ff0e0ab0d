package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The modes hungtask and softlockup refuse a test module without the mode
// parameter (one built from the oops-only source would ignore mode=hang
// and oops instead) and a missing one.
func TestTestModule(t *testing.T) {
	dir := t.TempDir()
	_, err := testModule(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no test module in "+dir)

	ko := filepath.Join(dir, "oops.ko")
	require.NoError(t, os.WriteFile(ko, []byte("\x7fELF...description=acpidiag test guest: oops on load\x00license=GPL\x00"), 0o644))
	_, err = testModule(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "oops.ko has no mode parameter")

	require.NoError(t, os.WriteFile(ko, []byte("\x7fELF...parm=mode:oops (default), hang or softlockup\x00parmtype=mode:charp\x00"), 0o644))
	got, err := testModule(dir)
	require.NoError(t, err)
	assert.Equal(t, ko, got)
}

// Every test-module mode is a guest mode, and its task name fits comm.
func TestKmodModes(t *testing.T) {
	require.Len(t, kmodModes, 2)
	for m, spec := range kmodModes {
		assert.Contains(t, modes, m)
		assert.LessOrEqual(t, len(spec.comm), 15, "comm %q", spec.comm)
		assert.Positive(t, spec.def)
	}
}
