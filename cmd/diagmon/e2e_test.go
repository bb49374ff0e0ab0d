//go:build e2e

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
)

// TestE2EDiagmonDemo runs `diagmon demo` against the real test guest: the
// console probe passes, the guest's userspace hangs, one bundle appears.
func TestE2EDiagmonDemo(t *testing.T) {
	guesttest.Kernel(t)
	dir, err := os.MkdirTemp("", "dmd")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"demo", "--workdir", dir, "--hang-after", "20s"}, &out, &errb, nil)
	t.Logf("%s", out.String())
	require.Equal(t, exitOK, code, "stderr: %s", errb.String())
	s := out.String()
	require.Contains(t, s, "scenario=uptime pass")
	require.Contains(t, s, "scenario=uptime fail")
	require.Contains(t, s, "incident")
	require.Contains(t, s, "first failed probe → bundle on disk")
	ents, err := os.ReadDir(filepath.Join(dir, "reports"))
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.Len(t, names, 2, "bundle directory and .tar.gz: %v", names)
	require.True(t, strings.HasSuffix(names[0], ".tar.gz") || strings.HasSuffix(names[1], ".tar.gz"))
	_ = time.Second
}
