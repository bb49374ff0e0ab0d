package main

import (
	"testing"

	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/stretchr/testify/require"
)

// TestModesMatchLibrary: the modes the guest's /init accepts are exactly the
// ones package testguest documents and exports (spin was once missing there).
func TestModesMatchLibrary(t *testing.T) {
	require.ElementsMatch(t, testguest.Modes, modes)
}
