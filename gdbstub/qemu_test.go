package gdbstub_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/gdbstub"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/qmp"
)

// TestQEMUGdbstub starts a real QEMU (2 vCPUs, no guest kernel: SeaBIOS
// runs), starts its gdbstub on a unix socket over HMP and reads every
// vCPU's registers through the protocol; after Detach the VM runs again.
func TestQEMUGdbstub(t *testing.T) {
	qemu := fixtures.RequireTool(t, "qemu-system-x86_64")
	dir, err := os.MkdirTemp("", "gdb")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	qmpPath := filepath.Join(dir, "qmp")
	cmd := exec.Command(qemu, "-machine", "q35,accel=tcg", "-smp", "2", "-m", "64", "-nodefaults", "-display", "none",
		"-qmp", "unix:"+qmpPath+",server=on,wait=off")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var q *qmp.Client
	require.Eventually(t, func() bool {
		q, err = qmp.Dial(ctx, qmpPath, qmp.Options{})
		return err == nil
	}, 20*time.Second, 50*time.Millisecond)
	defer q.Close()

	sock := filepath.Join(dir, "gdb")
	out, err := q.HMP(ctx, "gdbserver unix:"+sock+",server=on,wait=off")
	require.NoError(t, err)
	t.Logf("gdbserver: %q", out)
	c, err := gdbstub.Dial(ctx, "unix", sock)
	require.NoError(t, err)
	defer c.Close()
	snap, err := c.ReadAll(ctx)
	require.NoError(t, err)
	require.Equal(t, "+", snap.Supported["qXfer:features:read"], "features %v", snap.Supported)
	require.Len(t, snap.CPUs, 2, "one thread per vCPU")
	names := map[string]bool{}
	for _, r := range snap.Layout {
		names[r.Name] = true
	}
	for _, n := range []string{"rax", "rip", "eflags", "cs", "cr0"} {
		require.True(t, names[n], "layout has %s: %v", n, snap.Layout)
	}
	for i, cpu := range snap.CPUs {
		require.Empty(t, cpu.Error)
		require.Contains(t, cpu.Info, "CPU#")
		var rip, cs string
		for _, v := range cpu.Registers {
			switch v.Name {
			case "rip":
				rip = v.Hex
			case "cs":
				cs = v.Hex
			}
		}
		require.NotEmpty(t, rip, "cpu %d rip", i)
		require.NotEmpty(t, cs, "cpu %d cs", i)
		t.Logf("cpu %d thread %s %q rip=%s cs=%s", i, cpu.Thread, cpu.Info, rip, cs)
	}
	st, err := qemuhook.QueryStatus(ctx, q)
	require.NoError(t, err)
	require.False(t, st.Running, "a debugger attached stops the VM (status %s)", st.Status)
	require.NoError(t, c.Detach(ctx))
	require.Eventually(t, func() bool {
		st, err := qemuhook.QueryStatus(ctx, q)
		return err == nil && st.Running
	}, 5*time.Second, 20*time.Millisecond, "detach resumes the VM")
	out, err = q.HMP(ctx, "gdbserver none")
	require.NoError(t, err)
	require.False(t, strings.Contains(out, "rror"), out)
}
