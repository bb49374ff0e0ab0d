package metrics

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/qmp"
	"github.com/acpidiag/acpidiag/ssdt"
)

// testQEMU is a real QEMU (q35, the diagnostic channel, no guest OS) and
// a QMP session to it, for the balloon and pipeline tests.
type testQEMU struct {
	Dir string
	P   *qemuhook.Process
	Q   *qmp.Client
}

// startQEMU starts a real QEMU with memMB of RAM, the balloon device when
// balloon is set and extra arguments, and dials its QMP socket. Everything
// stops at the end of the test; ctx bounds the start.
func startQEMU(ctx context.Context, t *testing.T, memMB int, balloon bool, extra ...string) *testQEMU {
	t.Helper()
	fixtures.RequireTool(t, "qemu-system-x86_64")
	// Short, not t.TempDir: the QMP socket path must fit sun_path.
	dir, err := os.MkdirTemp("", "acpidiag-m-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ch, err := qemuhook.NewChannel(dir, ssdt.DefaultConfig(), "q35")
	require.NoError(t, err)
	cfg := qemuhook.Config{MemoryMB: memMB, Workdir: dir, Balloon: balloon, Channel: ch, QMPSocket: filepath.Join(dir, "qmp"), Extra: extra}
	p, err := qemuhook.Start(ctx, cfg, qemuhook.StartOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { p.Kill() })
	q, err := qmp.Dial(ctx, cfg.QMPSocket, qmp.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	return &testQEMU{Dir: dir, P: p, Q: q}
}
