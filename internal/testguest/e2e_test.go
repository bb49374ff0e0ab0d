//go:build e2e

package testguest

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The remaining guest modes, each in a real QEMU (TCG) boot. Without the
// diagnostic SSDT there is no AML tick here; these tests check what the
// guest itself promises. The SSDT end-to-end tests live with qemuhook.

var debugLine = regexp.MustCompile(`acpidiag-guest: region: magic=`)

func countDebug(v *vm) int { return len(debugLine.FindAllStringIndex(v.Console(), -1)) }

// requireTestModule skips when the kernel cache has no test module
// (internal/testguest/oopsmod; modes oops, hungtask, softlockup).
func requireTestModule(t *testing.T) {
	t.Helper()
	if requireKernel(t).OopsModule == "" {
		t.Skip("no test module in the kernel cache (scripts/fetch-kernel.sh needs make and gcc-12 to build it)")
	}
}

// TestE2EGuestLivelock: every CPU is taken by a FIFO 99 loop, so PID 1 (a
// normal-priority process) starves: its heartbeat and debug lines stop.
func TestE2EGuestLivelock(t *testing.T) {
	t.Parallel()
	v := bootGuest(t, 2, BootArgs(ModeLivelock, time.Second, "acpidiag.debug=1", "acpidiag.debug_period=200ms"))
	v.waitConsole(bootTimeout, "acpidiag-guest: livelocking every CPU now",
		"acpidiag-guest: spinning on CPU 0 (rt)", "acpidiag-guest: spinning on CPU 1 (rt)")
	time.Sleep(2 * time.Second) // let the last in-flight writes land
	beat, lines := v.slot(0).beat, countDebug(v)
	time.Sleep(4 * time.Second)
	require.Equal(t, beat, v.slot(0).beat, "application beat moved during an all-CPU realtime livelock")
	require.Equal(t, lines, countDebug(v), "PID 1 kept printing during an all-CPU realtime livelock")
	select {
	case <-v.done:
		t.Fatalf("QEMU exited during the livelock: %v", v.waitErr)
	default:
	}
}

// TestE2EGuestUhang: the application heartbeat stops, but PID 1 still runs
// (its debug lines go on) and so does the kernel.
func TestE2EGuestUhang(t *testing.T) {
	t.Parallel()
	v := bootGuest(t, 1, BootArgs(ModeUhang, time.Second, "acpidiag.debug=1", "acpidiag.debug_period=300ms"))
	v.waitConsole(bootTimeout, "acpidiag-guest: userspace hung now", "acpidiag-guest: heartbeat stopped at beat",
		"acpidiag-guest: spinning on CPU 0 (normal)")
	beat, lines := v.slot(0).beat, countDebug(v)
	require.Positive(t, beat, "the heartbeat never beat before the hang")
	time.Sleep(4 * time.Second)
	require.Equal(t, beat, v.slot(0).beat, "application beat moved after the userspace hang")
	require.Greater(t, countDebug(v), lines+3, "normal-priority userspace must keep running during uhang")
}

func TestE2EGuestReboot(t *testing.T) {
	t.Parallel()
	v := bootGuest(t, 1, BootArgs(ModeReboot, time.Second))
	v.waitConsole(bootTimeout, "acpidiag-guest: rebooting now")
	require.NoError(t, v.waitExit(bootTimeout)) // -no-reboot: the reset ends QEMU
	c := v.Console()
	require.Contains(t, c, "reboot: Restarting system")
	require.NotContains(t, c, "Kernel panic")
}

func TestE2EGuestPoweroff(t *testing.T) {
	t.Parallel()
	v := bootGuest(t, 1, BootArgs(ModePoweroff, time.Second))
	v.waitConsole(bootTimeout, "acpidiag-guest: powering off now")
	require.NoError(t, v.waitExit(bootTimeout))
	c := v.Console()
	require.Contains(t, c, "reboot: Power down")
	require.False(t, strings.Contains(c, "Kernel panic"))
}

// TestE2EGuestOops: the oops module gives a real NULL-pointer oops in a
// child of PID 1; PID 1, its heartbeat and the kernel survive.
func TestE2EGuestOops(t *testing.T) {
	v := bootModuleMode(t, BootArgs(ModeOops, time.Second))
	v.waitConsole(bootTimeout, "acpidiag-guest: oopsing now",
		"BUG: kernel NULL pointer dereference, address: 0000000000000000", "Oops: 0002 [#1]",
		"acpidiag-guest: oops done: kernel tainted D")
	v.waitGoesOn()
	require.NotContains(t, v.Console(), "Kernel panic")
}

// TestE2EGuestOopsPanic: with oops=panic the oops panics the kernel.
func TestE2EGuestOopsPanic(t *testing.T) {
	v := bootModuleMode(t, BootArgs(ModeOops, time.Second, "oops=panic"))
	v.waitConsole(bootTimeout, "acpidiag-guest: oopsing now")
	require.NoError(t, v.waitExit(bootTimeout))
	c := v.Console()
	require.Contains(t, c, "Oops: 0002 [#1]")
	require.Contains(t, c, "Kernel panic - not syncing: Fatal exception")
}

// TestE2EGuestOopsWithoutModule: a stock kernel has no oops trigger; the
// guest must say so and stay alive instead of silently doing nothing.
func TestE2EGuestOopsWithoutModule(t *testing.T) {
	t.Parallel()
	k := requireKernel(t)
	k.OopsModule = ""
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ird, err := BuildFor(ctx, t.TempDir(), k)
	require.NoError(t, err)
	v := bootGuestWith(t, ird, 1, BootArgs(ModeOops, 0))
	v.waitConsole(bootTimeout, "acpidiag-guest: oops mode: no oops module in /modules/extra; staying alive")
	v.waitGoesOn()
}

// bootModuleMode boots (in parallel with the other tests) a 1-vCPU guest
// whose mode loads the test module, skipping without the module.
func bootModuleMode(t *testing.T, appendLine string) *vm {
	t.Parallel()
	requireTestModule(t)
	return bootGuest(t, 1, appendLine)
}

// TestE2EGuestHungTask: the test module's mode=hang blocks the task
// acpidiag-hang in TASK_UNINTERRUPTIBLE, and the kernel's own hung-task
// detector reports it with its stack; PID 1 and its heartbeat go on.
func TestE2EGuestHungTask(t *testing.T) {
	v := bootModuleMode(t, BootArgs(ModeHungTask, time.Second))
	v.waitConsole(bootTimeout, "acpidiag-guest: hungtask now: task acpidiag-hang pid ",
		"INFO: task acpidiag-hang:", "task:acpidiag-hang   state:D", "acpidiag_hang+")
	v.waitGoesOn()
	require.NotContains(t, v.Console(), "Oops")
}

// TestE2EGuestSoftLockup: the test module's mode=softlockup spins CPU 0
// with preemption off for 6 s; the soft lockup detector reports it, then
// the guest goes on.
func TestE2EGuestSoftLockup(t *testing.T) {
	v := bootModuleMode(t, BootArgs(ModeSoftLockup, time.Second, Duration(6*time.Second)))
	v.waitConsole(bootTimeout, "acpidiag-guest: softlockup now: task acpidiag-spin pid ",
		"watchdog: BUG: soft lockup - CPU#0 stuck for ", "[acpidiag-spin:", "acpidiag_softlockup+",
		"acpidiag_oops: soft lockup over after 6s", "acpidiag-guest: softlockup over: task acpidiag-spin ended")
	v.waitGoesOn()
	require.NotContains(t, v.Console(), "Kernel panic")
}

// TestE2EGuestHardLockup: the test module's mode=hardlockup spins CPU 0
// with interrupts disabled for 8 s. Nothing in the guest reports it (no
// PMU NMI under TCG) and the 1-vCPU guest stands still: its application
// heartbeat does not move while the spin lasts. Then the guest goes on.
func TestE2EGuestHardLockup(t *testing.T) {
	v := bootModuleMode(t, BootArgs(ModeHardLockup, time.Second, Duration(8*time.Second)))
	v.waitConsole(bootTimeout, "acpidiag-guest: hardlockup now: task acpidiag-irqoff pid ",
		"acpidiag_oops: spinning with interrupts disabled for 8s (acpidiag-irqoff:")
	if !strings.Contains(v.Console(), "hard lockup over") {
		b0 := v.slot(0).beat
		time.Sleep(3 * time.Second)
		if c := v.Console(); !strings.Contains(c, "hard lockup over") {
			require.Equal(t, b0, v.slot(0).beat, "the heartbeat moved while interrupts were off")
		}
	}
	v.waitConsole(bootTimeout, "acpidiag_oops: hard lockup over after 8s", "acpidiag-guest: hardlockup over: task acpidiag-irqoff ended")
	v.waitGoesOn()
	require.NotContains(t, v.Console(), "Kernel panic")
}

// TestE2EGuestRCUStall: the test module's mode=rcustall holds an RCU read
// lock for 8 s after asking for a grace period, with a 3 s stall timeout:
// RCU's stall detector reports the grace period held up, the blocked task
// and its stack (in the module); the guest, tick included, goes on
// meanwhile (the reader yields the CPU).
func TestE2EGuestRCUStall(t *testing.T) {
	v := bootModuleMode(t, BootArgs(ModeRCUStall, time.Second, Duration(8*time.Second)))
	v.waitConsole(bootTimeout, "acpidiag-guest: rcustall now: task acpidiag-rcu pid ",
		"rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "task:acpidiag-rcu", "acpidiag_rcustall+",
		"acpidiag_oops: RCU read lock released after 8s", "acpidiag-guest: rcustall over: task acpidiag-rcu ended")
	v.waitGoesOn()
	require.NotContains(t, v.Console(), "soft lockup - CPU#")
	require.NotContains(t, v.Console(), "Kernel panic")
}
