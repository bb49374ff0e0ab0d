package monitor

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
)

// startBareQEMU starts a real QEMU without a guest kernel (SeaBIOS runs):
// enough for QMP, the gdbstub and memory dumps. extra are more QEMU
// arguments (e.g. a -device).
func startBareQEMU(t *testing.T, qmp string, extra ...string) *exec.Cmd {
	t.Helper()
	qemu := fixtures.RequireTool(t, "qemu-system-x86_64")
	os.Remove(qmp)
	cmd := exec.Command(qemu, append([]string{"-machine", "q35,accel=tcg", "-m", "64", "-nodefaults", "-display", "none",
		"-qmp", "unix:" + qmp + ",server=on,wait=off"}, extra...)...)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// TestQEMUDiagnoseAndRedial: against a real QEMU, the qmp probe passes;
// the qmp, registers (HMP + gdbstub), host and memory diagnostics produce
// their artifacts (the VM runs afterwards); the memory cap refuses a dump;
// and when QEMU is killed and a new one listens on the same socket, the
// probe fails and then passes again (QMP re-dialled).
func TestQEMUDiagnoseAndRedial(t *testing.T) {
	dir, err := os.MkdirTemp("", "mq")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	qmp := filepath.Join(dir, "qmp")
	q1 := startBareQEMU(t, qmp)
	vm := VMConfig{Name: "bare", QMP: qmp}
	sc := ScenarioConfig{Name: "qmp", VMs: []string{"bare"}, Probe: ProbeConfig{Kind: ProbeQMP}, Every: "200ms", Timeout: "200ms", Failures: 1000}
	tm := startMonitor(t, Config{VMs: []VMConfig{vm}, Scenarios: []ScenarioConfig{sc}, Limits: Limits{MemoryBytes: 128 << 20}})
	passing := func() bool { st, _ := tm.State("bare", "qmp"); return st.Last != nil && st.Last.OK }
	require.Eventually(t, passing, 20*time.Second, 20*time.Millisecond)

	res, err := tm.Diagnose(context.Background(), "bare", diagList("qmp", "registers", "host", "memory"))
	require.NoError(t, err)
	arts := map[string]Artifact{}
	for _, a := range res.Manifest.Artifacts {
		require.Empty(t, a.Error, a.Name)
		arts[a.Name] = a
		t.Logf("%-18s %9d B %5d ms", a.Name, a.Size, a.Duration.Milliseconds())
	}
	bdir := res.Locations[0]
	elf, err := os.ReadFile(filepath.Join(bdir, "memory.elf"))
	require.NoError(t, err)
	require.Equal(t, "\x7fELF", string(elf[:4]))
	require.Equal(t, int64(len(elf)), arts["memory.elf"].Size)
	var gdb struct {
		CPUs []struct{ Registers []struct{ Name, Hex string } }
	}
	b, err := os.ReadFile(filepath.Join(bdir, "registers-gdb.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &gdb))
	require.Len(t, gdb.CPUs, 1)
	var host HostReport
	b, err = os.ReadFile(filepath.Join(bdir, "host.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &host))
	require.Len(t, host.VCPUs, 1)
	require.Equal(t, q1.Process.Pid, host.QEMU.PID)
	require.Eventually(t, passing, 5*time.Second, 20*time.Millisecond, "the VM runs after the gdbstub")

	// The cap refuses a dump of a guest larger than limits.memory_bytes.
	p, err := Check(Config{VMs: []VMConfig{vm}, Scenarios: []ScenarioConfig{sc}, Sinks: []SinkConfig{{Kind: "dir", Path: tm.sinkDir}},
		Limits: Limits{MemoryBytes: 32 << 20}}, CheckOptions{})
	require.NoError(t, err)
	require.NoError(t, tm.Apply(p))
	res, err = tm.Diagnose(context.Background(), "bare", diagList("memory"))
	require.NoError(t, err)
	require.Contains(t, res.Manifest.Artifacts[0].Error, "exceeds limits.memory_bytes 33554432")

	// QEMU restarts on the same socket: QMP is re-dialled.
	q1.Process.Kill()
	q1.Wait()
	require.Eventually(t, func() bool { st, _ := tm.State("bare", "qmp"); return st.Last != nil && !st.Last.OK }, 5*time.Second, 20*time.Millisecond)
	startBareQEMU(t, qmp)
	require.Eventually(t, passing, 20*time.Second, 20*time.Millisecond, "probe passes again on the new QEMU")
}

func diagList(names ...string) []DiagSpec {
	var out []DiagSpec
	for _, n := range names {
		out = append(out, ParseDiagSpec(n))
	}
	return out
}
