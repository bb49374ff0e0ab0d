//go:build e2e

package qemuhook

import (
	"context"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/ssdt"
)

// TestE2ESummaryAfterQEMUKilled: QEMU is killed (SIGKILL) under a running
// guest. The run summary reads the region at the end: its tick count is
// the region's last one (not the one of the last verdict printed), and its
// state is not alive (it said "region: alive" for a dead QEMU).
func TestE2ESummaryAfterQEMUKilled(t *testing.T) {
	// A 5 s watcher interval: the last round's tick count lags the
	// region's by several ticks when QEMU dies.
	vm := startE2E(t, e2eSpec{Machine: MachineQ35, Interval: 5 * time.Second})
	vm.waitAlive()
	time.Sleep(3 * time.Second)
	require.NoError(t, syscall.Kill(vm.s.Process().Pid(), syscall.SIGKILL))
	select {
	case <-vm.s.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("supervision did not end after QEMU was killed")
	}
	snap, _ := checkRegionAfterExit(t, vm)
	sum := vm.s.Summary()
	require.NotNil(t, sum.Region)
	assert.Equal(t, snap.Ticks, sum.Ticks, "summary ticks are the region's at the end")
	assert.Equal(t, snap.Boots, sum.Boots)
	assert.Equal(t, snap.Ticks, sum.Region.Snapshot.Ticks)
	assert.Equal(t, hostreader.StateStale, sum.Region.State, "QEMU is dead: %s", sum.Region.Reason)
	assert.Contains(t, sum.Region.Reason, "QEMU has exited")
	require.NotNil(t, sum.Exit)
	assert.Equal(t, "killed", sum.Exit.Signal)
	assert.False(t, sum.Exit.Expected)
}

// TestE2EPanicLogSurvivesFullDisk: the workdir is a small real tmpfs, and
// it is filled to the last byte right after QEMU started. The guest then
// ticks and panics: the region and the ERST store were preallocated at
// start, so the panic log is written and decoded. (Without preallocation
// QEMU died of SIGBUS at the guest's first write into a hole, and the
// panic log was lost.)
func TestE2EPanicLogSurvivesFullDisk(t *testing.T) {
	k, ird := guesttest.Require(t)
	dir := smallTmpfs(t, 512<<10)
	rc := ssdt.DefaultConfig()
	ch, err := NewChannel(dir, rc, MachineQ35)
	require.NoError(t, err)
	sockets := shortTempDir(t)
	cfg := Config{
		Machine: MachineQ35, MemoryMB: 256, Workdir: dir,
		Kernel: k.Vmlinuz, Initrd: ird.Path, Append: testguest.BootArgs(testguest.ModePanic, 3*time.Second),
		Channel: ch, ERSTPath: filepath.Join(dir, "erst"), PVPanic: true,
		QMPSocket: filepath.Join(sockets, "qmp"), SerialSocket: filepath.Join(sockets, "serial"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := Launch(ctx, cfg, SupervisorOptions{})
	require.NoError(t, err)
	defer s.Close()
	fill, err := os.Create(filepath.Join(dir, "fill"))
	require.NoError(t, err)
	_, err = fill.Write(make([]byte, 1<<20))
	require.ErrorIs(t, err, syscall.ENOSPC, "the tmpfs is full")
	fill.Close()

	var panicked *Verdict
	for v := range s.Verdicts() {
		t.Logf("verdict: %s", v)
		if v.Source == SourceERST && v.State == StatePanicked && panicked == nil {
			vv := v
			panicked = &vv
		}
	}
	sum := s.Summary()
	require.NotNil(t, panicked, "no ERST panic verdict; summary %+v", sum.Exit)
	assert.Equal(t, "Kernel panic - not syncing: sysrq triggered crash", panicked.Panic.PanicLine)
	require.NotNil(t, sum.Exit)
	assert.NotEqual(t, "bus error", sum.Exit.Signal, "QEMU died of SIGBUS: %s", sum.Exit.Cause)
	st, err := hostreader.ReadERSTFile(cfg.ERSTPath)
	require.NoError(t, err)
	assert.NotEmpty(t, st.Events(), "the panic log is in the ERST file")
}
