//go:build e2e

package qemuhook

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/hostreader"
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
