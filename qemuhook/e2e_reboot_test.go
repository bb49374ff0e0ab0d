//go:build e2e

package qemuhook

import (
	"context"
	"path/filepath"
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

// TestE2EBootCountReadsERST: the supervisor reads the ERST store again
// when the region's boot count moves, so a guest panic without pvpanic
// whose reboot no QMP event announced is still reported panicked (from
// the ERST record), before the rebooted verdict.
//
// Why this setup: with QMP connected, the guest's reset is a QMP RESET
// (and with -no-reboot a SHUTDOWN and QEMU's exit), and each of those
// reads the ERST store first; the boot count path alone decides only when
// no QMP event of the rebooting QEMU reaches the supervisor. That is real
// in attach mode: the VM was restarted under the supervisor, whose QMP
// re-dial cannot reach the new QEMU (here, its QMP socket is at a path
// the supervisor does not know; alike when another client holds QEMU's
// single QMP slot). So: a real guest under real QEMU, the supervisor
// attached (with Reconnect) to a first QEMU of the VM that never runs it
// (-S), which is then replaced by a QEMU on the same region and ERST
// files with a QMP socket of its own. The test holds that QMP itself and
// sees the guest's RESET there. The guest (testguest.NoPVPanic,
// LastBoot(1)) panics in boot 1 (panic=-1: the kernel writes its log to
// ERST and resets) and stays alive in boot 2. ERSTInterval is an hour, so
// that the periodic read cannot report the record in the test's time:
// without the boot count path there is no panicked verdict at all.
func TestE2EBootCountReadsERST(t *testing.T) {
	t.Parallel() // (so no checkNoLeak: it counts the goroutines of every test running)
	dir := shortTempDir(t)
	cfg := guestConfig(t, dir, testguest.BootArgs(testguest.ModePanic, 3*time.Second, testguest.NoPVPanic, testguest.LastBoot(1)))
	cfg.AllowReboot = true
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	first := cfg
	first.Extra = []string{"-S"}
	p0, err := Start(ctx, first, StartOptions{})
	require.NoError(t, err)
	defer p0.Kill()
	s, err := Attach(ctx, AttachConfig{QMPSocket: cfg.QMPSocket, RegionPath: cfg.Channel.BackingPath, ERSTPath: cfg.ERSTPath, Reconnect: true},
		SupervisorOptions{ERSTInterval: time.Hour, Watch: hostreader.WatchOptions{Interval: 250 * time.Millisecond}})
	require.NoError(t, err)
	defer s.Close()
	var seen []Verdict
	nextVerdict(t, s.Verdicts(), "absent", SourceRegion, 30*time.Second, &seen)
	p0.Kill()
	<-p0.Done()
	nextVerdict(t, s.Verdicts(), StateDisconnected, SourceQMP, 30*time.Second, &seen)

	// The restarted VM: same region and ERST files, QMP and serial
	// elsewhere.
	second := cfg
	second.QMPSocket, second.SerialSocket = filepath.Join(dir, "qmp2"), filepath.Join(dir, "serial2")
	p1, err := Start(ctx, second, StartOptions{})
	require.NoError(t, err)
	defer p1.Kill()
	q, err := qmp.Dial(ctx, second.QMPSocket, qmp.Options{})
	require.NoError(t, err)
	defer q.Close()

	a1 := nextVerdict(t, s.Verdicts(), "alive", SourceRegion, e2eBoot, &seen)
	assert.Equal(t, uint32(1), a1.Region.Snapshot.Boots)
	rb := nextVerdict(t, s.Verdicts(), "rebooted", SourceRegion, e2eBoot, &seen)
	assert.Equal(t, uint32(2), rb.Region.Snapshot.Boots)
	nextVerdict(t, s.Verdicts(), "alive", SourceRegion, 60*time.Second, &seen)

	// The guest really reset, and only the test's QMP session saw it.
	var reset bool
	for drained := false; !drained; {
		select {
		case ev := <-q.Events():
			t.Logf("the test's QMP session: %s %s", ev.Name, ev.Data)
			if ev.Name == qmp.EventReset {
				reset = true
			}
			assert.NotEqual(t, qmp.EventGuestPanicked, ev.Name, "the guest has no pvpanic driver")
		default:
			drained = true
		}
	}
	assert.True(t, reset, "QMP RESET on the new QEMU's own QMP socket")

	p := -1
	for i, v := range seen {
		if v.Source == SourceQMP {
			assert.Equal(t, StateDisconnected, v.State, "no QMP event of the new QEMU reaches the supervisor: %s", v)
		}
		if v.State == StatePanicked {
			require.Equal(t, -1, p, "a second panicked verdict: %s", v)
			p = i
		}
	}
	require.GreaterOrEqual(t, p, 0, "no panicked verdict: the boot count change did not read the ERST store; seen %v", seen)
	pv := seen[p]
	assert.Equal(t, SourceERST, pv.Source)
	require.NotNil(t, pv.Panic)
	assert.False(t, pv.Panic.PVPanic)
	assert.Equal(t, "Kernel panic - not syncing: sysrq triggered crash", pv.Panic.PanicLine)
	assert.Less(t, p, indexOf(seen, 0, isRegion("rebooted")), "panicked before the rebooted verdict")
	// The record is boot 1's: the region watcher, now on boot 2, is not
	// told (its verdict is not panicked).
	assert.NotEqual(t, hostreader.StatePanicked, s.Summary().Region.State)
}
