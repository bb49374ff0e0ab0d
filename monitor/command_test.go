package monitor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitPidFile returns the pid a probe command wrote into path.
func waitPidFile(t *testing.T, path string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, 15*time.Second, 10*time.Millisecond, "the probe command never wrote %s", path)
	return pid
}

// requireGone waits until pid no longer runs (gone, or a zombie that init
// reaps).
func requireGone(t *testing.T, pid int, what string) {
	t.Helper()
	require.Eventually(t, func() bool {
		if syscall.Kill(pid, 0) != nil {
			return true
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(st), ") Z ")
	}, 5*time.Second, 20*time.Millisecond, "%s (pid %d) must be killed", what, pid)
}

// TestExecProbeTimeoutKillsGroup: through the scheduler (spawner and
// reaping loop), an exec probe that overruns its timeout fails as timed
// out, and the child it left running is killed with it.
func TestExecProbeTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	cmd := []string{script(t, dir, "hang.sh", "sleep 60 & echo $! > "+pidFile+"; wait")}
	sc := execScenario("hang", "a", cmd, "2s", 1, "1h")
	sc.Timeout = "300ms"
	tm := startMonitor(t, Config{VMs: []VMConfig{{Name: "a"}}, Scenarios: []ScenarioConfig{sc}})
	pid := waitPidFile(t, pidFile)
	var st ScenarioState
	require.Eventually(t, func() bool {
		st, _ = tm.State("a", "hang")
		return st.Last != nil
	}, 10*time.Second, 20*time.Millisecond)
	require.False(t, st.Last.OK)
	require.True(t, st.Last.TimedOut, "result %+v", *st.Last)
	require.Contains(t, st.Last.Error, "timed out after 300ms")
	require.Contains(t, st.Last.Error, "process group killed")
	requireGone(t, pid, "the probe's child (sleep)")
}

// TestExecProbeOutcome: an exec probe's exit status and the last line of
// its output make its failure; exit 0 passes; a command that cannot
// start fails with the reason.
func TestExecProbeOutcome(t *testing.T) {
	dir := t.TempDir()
	fail := script(t, dir, "fail.sh", "echo first; echo 'disk full' >&2; exit 3")
	tm := startMonitor(t, Config{VMs: []VMConfig{{Name: "a"}}, Scenarios: []ScenarioConfig{
		execScenario("fail", "a", []string{fail}, "200ms", 100, "1h"),
		execScenario("pass", "a", []string{"true"}, "200ms", 100, "1h"),
		execScenario("missing", "a", []string{filepath.Join(dir, "no-such-command")}, "200ms", 100, "1h"),
	}})
	last := func(name string) *Result {
		var r *Result
		require.Eventually(t, func() bool {
			st, _ := tm.State("a", name)
			r = st.Last
			return r != nil
		}, 10*time.Second, 20*time.Millisecond)
		return r
	}
	r := last("fail")
	require.False(t, r.OK)
	require.Contains(t, r.Error, "exit status 3")
	require.Contains(t, r.Error, "disk full")
	require.False(t, r.TimedOut)
	r = last("pass")
	require.True(t, r.OK, "%+v", *r)
	require.Equal(t, "exit 0", r.Detail)
	r = last("missing")
	require.False(t, r.OK)
	require.Contains(t, r.Error, "no such file or directory")
}

// TestRemoveVMKillsExecProbe: removing a VM whose exec probe is running
// kills the command's process group and returns promptly.
func TestRemoveVMKillsExecProbe(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	cmd := []string{script(t, dir, "hang.sh", "sleep 60 & echo $! > "+pidFile+"; wait")}
	sc := execScenario("hang", "a", cmd, "8s", 1, "1h") // the first run comes within 8 s
	tm := startMonitor(t, Config{VMs: []VMConfig{{Name: "a"}}, Scenarios: []ScenarioConfig{sc}})
	pid := waitPidFile(t, pidFile)
	start := time.Now()
	require.NoError(t, tm.RemoveVM("a"))
	require.Less(t, time.Since(start), 6*time.Second, "RemoveVM kills the probe, it does not wait for its 8 s timeout")
	requireGone(t, pid, "the probe's child (sleep)")
	_, ok := tm.State("a", "hang")
	require.False(t, ok)
}

// TestRunCommandManyShort: many back-to-back short commands each end with
// their own status and output (no reaped or lost child, no stray output).
func TestRunCommandManyShort(t *testing.T) {
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		out, total, err := runCommand(ctx, 5*time.Second, []string{"/bin/sh", "-c", fmt.Sprintf("echo %d; exit %d", i, i%3)}, nil, 100)
		require.Equal(t, fmt.Sprintf("%d\n", i), string(out))
		require.Equal(t, int64(len(out)), total)
		if i%3 == 0 {
			require.NoError(t, err)
		} else {
			require.EqualError(t, err, fmt.Sprintf("exit status %d", i%3))
		}
	}
}

// TestRunCommandOutputCapped: output beyond max is counted, not kept.
func TestRunCommandOutputCapped(t *testing.T) {
	out, total, err := runCommand(context.Background(), 5*time.Second, []string{"/bin/sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x"}, nil, 100)
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("x", 100), string(out))
	require.Equal(t, int64(10000), total)
}

// TestRunCommandKilledBySignal: a command that dies of a signal says so.
func TestRunCommandKilledBySignal(t *testing.T) {
	_, _, err := runCommand(context.Background(), 5*time.Second, []string{"/bin/sh", "-c", "kill -TERM $$"}, nil, 100)
	require.EqualError(t, err, "killed by signal terminated")
}

// TestPhaseSlotGrid: a period that is a multiple of slotGrid (and at
// least minSlots of them) gives phases on the grid, spread over its slots;
// another period, or a short one, gives any phase within it.
func TestPhaseSlotGrid(t *testing.T) {
	slots := map[time.Duration]bool{}
	for i := 0; i < 1000; i++ {
		p := phase(fmt.Sprintf("vm%04d", i), "region", 10*time.Second)
		require.Zero(t, p%slotGrid, "phase %s", p)
		require.Less(t, p, 10*time.Second)
		slots[p] = true
	}
	require.Greater(t, len(slots), 90, "1,000 bindings spread over the 100 slots of 10 s")
	for _, every := range []time.Duration{1130 * time.Millisecond, 500 * time.Millisecond, 200 * time.Millisecond} {
		offGrid := map[time.Duration]bool{}
		for i := 0; i < 100; i++ {
			p := phase(fmt.Sprintf("vm%04d", i), "region", every)
			require.Less(t, p, every)
			if p%slotGrid != 0 {
				offGrid[p] = true
			}
		}
		require.Greater(t, len(offGrid), 50, "every %s: phases anywhere in the period", every)
	}
}

// TestScheduledOnSlotGrid: runs of a binding whose period is a multiple
// of slotGrid are scheduled on the wall-clock slot grid, and the scheduler
// wakes at the slot (onGrid).
func TestScheduledOnSlotGrid(t *testing.T) {
	tm := startMonitor(t, Config{VMs: []VMConfig{{Name: "a"}, {Name: "b"}}, Scenarios: []ScenarioConfig{
		{Name: "t", VMs: []string{"a", "b"}, Probe: ProbeConfig{Kind: ProbeExec, Command: []string{"true"}},
			Every: "1s", Timeout: "1s", Failures: 1},
	}})
	for _, vm := range []string{"a", "b"} {
		require.Eventually(t, func() bool {
			st, _ := tm.State(vm, "t")
			return st.Runs >= 2
		}, 10*time.Second, 20*time.Millisecond)
		st, _ := tm.State(vm, "t")
		require.Zero(t, st.Last.Scheduled.UnixNano()%int64(slotGrid), "scheduled %s", st.Last.Scheduled.Format(time.RFC3339Nano))
		require.False(t, st.Last.Start.Before(st.Last.Scheduled))
	}
	s := tm.sched
	for _, ns := range []int64{0, 1, int64(slotGrid) - 1, int64(slotGrid), 12345678901} {
		g := s.onGrid(ns)
		require.GreaterOrEqual(t, g, ns)
		require.Less(t, g-ns, int64(slotGrid))
		require.Zero(t, (g+s.epochWall)%int64(slotGrid))
	}
}

// TestExecStartedWhileLoopStoresWakeUp: the spawner starts a command
// after the loop's reap looked at the list and before the loop stored its
// wake-up time (the hooks hold the loop in that window until the spawner
// is done). The loop must still reap the command within a poll interval,
// not at the binding's next run 10 s later (before 29110d5 it slept the
// whole period: the spawner read the old, past wake-up time and did not
// poke; the command's timeout went unenforced meanwhile).
func TestExecStartedWhileLoopStoresWakeUp(t *testing.T) {
	round := make(chan struct{}, 1)
	hooks := &schedHooks{
		spawnerRound: func() {
			select {
			case round <- struct{}{}:
			default:
			}
		},
		beforeWakeAt: func(spawned bool) {
			if spawned {
				select {
				case <-round:
				case <-time.After(5 * time.Second):
				}
			}
		},
	}
	p, err := Check(Config{VMs: []VMConfig{{Name: "a"}}, Scenarios: []ScenarioConfig{
		{Name: "t", VMs: []string{"a"}, Probe: ProbeConfig{Kind: ProbeExec, Command: []string{"true"}},
			Every: "10s", Timeout: "5s", Failures: 1},
	}, Sinks: []SinkConfig{{Kind: "dir", Path: t.TempDir()}}}, CheckOptions{})
	require.NoError(t, err)
	m, err := New(context.Background(), p, Options{Workdir: t.TempDir(), hooks: hooks})
	require.NoError(t, err)
	defer m.Close()
	require.Eventually(t, func() bool {
		st, _ := m.State("a", "t")
		return st.Runs >= 1
	}, 25*time.Second, 20*time.Millisecond)
	st, _ := m.State("a", "t")
	require.True(t, st.Last.OK, "%+v", st.Last)
	// A poll interval is 100 ms; 5 s leaves room for a loaded host and
	// is far from the 10 s period the bug waited.
	require.Less(t, st.Last.Duration, 5*time.Second, "the command was reaped %s after it started", st.Last.Duration)
}
