package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test-module modes refuse a missing module, one without the mode
// parameter (one built from the oops-only source would ignore mode=hang
// and oops instead) and one whose modes lack theirs (built before it was
// added: the module would refuse it with EINVAL).
func TestTestModule(t *testing.T) {
	dir := t.TempDir()
	_, err := testModule(dir, "hang")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no test module in "+dir)

	ko := filepath.Join(dir, "oops.ko")
	require.NoError(t, os.WriteFile(ko, []byte("\x7fELF...description=acpidiag test guest: oops on load\x00license=GPL\x00"), 0o644))
	_, err = testModule(dir, "hang")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "oops.ko has no mode parameter")

	require.NoError(t, os.WriteFile(ko, []byte("\x7fELF...parm=mode:oops (default), hang or softlockup\x00parmtype=mode:charp\x00"), 0o644))
	got, err := testModule(dir, "softlockup")
	require.NoError(t, err)
	assert.Equal(t, ko, got)
	_, err = testModule(dir, "rcustall")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `oops.ko has no mode=rcustall (its modes: "oops (default), hang or softlockup"`)
}

// Every test-module mode is a guest mode, and its task name fits comm.
func TestKmodModes(t *testing.T) {
	require.Len(t, kmodModes, 4)
	for m, spec := range kmodModes {
		assert.Contains(t, modes, m)
		assert.LessOrEqual(t, len(spec.comm), 15, "comm %q", spec.comm)
		assert.Positive(t, spec.def)
		assert.Contains(t, oopsModSource(t), `"`+spec.param+`"`, "the module source has no mode=%s", spec.param)
	}
}

// oopsModSource is the test module's C source.
func oopsModSource(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join("..", "oopsmod", "acpidiag_oops.c"))
	require.NoError(t, err)
	return string(b)
}
