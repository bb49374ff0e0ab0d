//go:build e2e

package qemuhook

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/qmp"
)

// assertOnePanicked checks that vs hold exactly one panicked verdict and
// returns its index.
func assertOnePanicked(t *testing.T, vs []Verdict) int {
	t.Helper()
	idx := -1
	var all []string
	for i, v := range vs {
		all = append(all, string(v.State)+"/"+string(v.Source))
		if v.State == StatePanicked {
			if idx >= 0 {
				t.Errorf("a second panicked verdict for one panic: %s", v)
			}
			idx = i
		}
	}
	require.GreaterOrEqual(t, idx, 0, "no panicked verdict: %v", all)
	return idx
}

// indexOf returns the index of the first verdict at or after from that
// matches, -1 if none.
func indexOf(vs []Verdict, from int, match func(Verdict) bool) int {
	for i := from; i < len(vs); i++ {
		if match(vs[i]) {
			return i
		}
	}
	return -1
}

// TestE2EPanicWithoutPVPanic: a guest without the pvpanic driver
// (testguest.NoPVPanic) panics with panic=-1: no GUEST_PANICKED, the
// kernel writes its log to ERST and resets at once, and with -no-reboot
// QEMU exits. The supervisor reads the ERST store on the SHUTDOWN and
// reports panicked with the kernel's panic line before the shutdown and
// exit verdicts, on q35 and pc.
func TestE2EPanicWithoutPVPanic(t *testing.T) {
	t.Parallel()
	for _, machine := range []Machine{MachineQ35, MachinePC} {
		t.Run(string(machine), func(t *testing.T) {
			t.Parallel()
			vm := startE2E(t, e2eSpec{Machine: machine, Firmware: FirmwareSeaBIOS,
				Append: testguest.BootArgs(testguest.ModePanic, 3*time.Second, testguest.NoPVPanic)})
			vm.waitAlive()
			vm.waitVerdict(0, e2eBoot, "QEMU exit", isFrom(StateExited, SourceProcess))
			vs := vm.Verdicts()
			for _, v := range vs {
				t.Logf("%s", v)
				if v.Event != nil {
					assert.NotEqual(t, qmp.EventGuestPanicked, v.Event.Name, "the guest has no pvpanic driver")
				}
			}
			i := assertOnePanicked(t, vs)
			p := vs[i]
			assert.Equal(t, SourceERST, p.Source)
			require.NotNil(t, p.Panic)
			assert.False(t, p.Panic.PVPanic)
			assert.Equal(t, "Kernel panic - not syncing: sysrq triggered crash", p.Panic.PanicLine)
			assert.Contains(t, p.Reason, "ERST: Panic#1: Kernel panic - not syncing: sysrq triggered crash")
			shut := indexOf(vs, 0, isFrom(StateShutdown, SourceQMP))
			exit := indexOf(vs, 0, isFrom(StateExited, SourceProcess))
			require.GreaterOrEqual(t, shut, 0)
			assert.Less(t, i, shut, "panicked before the shutdown verdict")
			assert.Less(t, shut, exit)
			assert.Equal(t, "guest-reset", vs[shut].Event.Reason)
			sum := vm.s.Summary()
			require.NotNil(t, sum.Panic)
			assert.Equal(t, "Kernel panic - not syncing: sysrq triggered crash", sum.Panic.PanicLine)
			assert.Equal(t, hostreader.StatePanicked, sum.Region.State, "the region watcher got the ERST evidence")
		})
	}
}

// TestE2EPanicRebootAlive: QEMU keeps the VM across guest reboots. The
// guest panics in its first boot (pvpanic loaded, testguest.LastBoot(1)),
// the kernel resets it (panic=-1) and the second boot stays alive: one
// panicked verdict (GUEST_PANICKED and the ERST record together), then the
// reset, rebooted with boot count 2, alive with boot count 2, and QEMU
// still running.
func TestE2EPanicRebootAlive(t *testing.T) {
	t.Parallel()
	vm := startE2E(t, e2eSpec{Machine: MachineQ35, Firmware: FirmwareSeaBIOS, AllowReboot: true,
		Append: testguest.BootArgs(testguest.ModePanic, 3*time.Second, testguest.LastBoot(1))})
	first := vm.waitAlive()
	assert.Equal(t, uint32(1), first.Region.Snapshot.Boots)
	p, i := vm.waitVerdict(0, e2eBoot, "panicked", func(v Verdict) bool { return v.State == StatePanicked })
	require.NotNil(t, p.Panic)
	assert.Equal(t, SourceERST, p.Source)
	assert.True(t, p.Panic.PVPanic)
	assert.Equal(t, "Kernel panic - not syncing: sysrq triggered crash", p.Panic.PanicLine)
	_, r := vm.waitVerdict(i, 60*time.Second, "QMP RESET", isFrom(StateReset, SourceQMP))
	rb, j := vm.waitVerdict(r, e2eBoot, "rebooted", isRegion("rebooted"))
	assert.Equal(t, uint32(2), rb.Region.Snapshot.Boots)
	alive, _ := vm.waitVerdict(j, 60*time.Second, "alive in boot 2", isRegion("alive"))
	assert.Equal(t, uint32(2), alive.Region.Snapshot.Boots)
	vm.waitConsole(0, 60*time.Second, "boot 2 is past acpidiag.last_boot=1")
	time.Sleep(2 * time.Second)
	assert.False(t, vm.s.Process().Exited(), "QEMU must survive the panic's reboot")
	assertOnePanicked(t, vm.Verdicts())
	for _, v := range vm.Verdicts() {
		t.Logf("%s", v)
	}
}
