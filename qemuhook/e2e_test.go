//go:build e2e

package qemuhook

// End-to-end tests: the generated diagnostic SSDT in a real Linux guest
// (internal/testguest: a Debian 6.1 kernel and a Go /init) under real QEMU
// (TCG), supervised with Launch. Every scenario asserts on what the host
// reads from the region file and on the supervisor's verdicts, not on the
// console alone. Run with `make e2e` (go test -tags e2e -run E2E).
//
// Besides the supervisor's own watcher, each VM has a sampler that maps
// the region file read-only and snapshots it every 2 ms: it gives the host
// time of every tick (period, boot to first tick, last tick before a hang)
// independently of the code under test, and the host stamps the
// supervisor's watcher writes at each of its poll rounds (when its rounds
// really ran: on a loaded host a round can start late, see
// assertStaleInTime).
//
// The numbers these tests measure are logged as "NUMBER name=value" lines
// and copied into docs/numbers.md.

import (
	"context"
	"fmt"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/qmp"
	"github.com/acpidiag/acpidiag/ssdt"
)

// e2eBoot bounds QEMU start to the first alive verdict. An idle machine
// needs 5-10 s (OVMF up to 9 s); under the load of parallel test runs on
// 2 cores a boot took 40 s and more.
const e2eBoot = 240 * time.Second

// e2eSpec describes one test VM.
type e2eSpec struct {
	Machine  Machine
	Firmware Firmware
	SMP      int
	// Tick is the SSDT's _TZP period (0: ssdt.DefaultTick, 1 s).
	Tick time.Duration
	// Append is the guest kernel command line (testguest.BootArgs).
	Append      string
	AllowReboot bool
	// Interval is the supervisor's watcher poll interval (0: 1 s, the
	// default).
	Interval time.Duration
}

// tickObs is one change of the region's tick words seen by the sampler.
type tickObs struct {
	At           time.Time
	Ticks, Boots uint32
}

// e2eVM is a launched, supervised test VM.
type e2eVM struct {
	t        *testing.T
	cfg      Config
	rc       ssdt.Config
	s        *Supervisor
	interval time.Duration
	launched time.Time // just before QEMU was started

	mu         sync.Mutex
	verdicts   []Verdict
	changed    chan struct{} // closed and replaced at every new verdict or tick
	ended      bool
	ticks      []tickObs
	stamps     []time.Time // host stamps (watcher rounds) seen, ms resolution, in order
	samplerErr error
}

func startE2E(t *testing.T, sp e2eSpec) *e2eVM {
	t.Helper()
	k, ird := guesttest.Require(t)
	dir := shortTempDir(t)
	rc := ssdt.DefaultConfig()
	if sp.Tick != 0 {
		rc.Tick = sp.Tick
	}
	ch, err := NewChannel(dir, rc, sp.Machine)
	require.NoError(t, err)
	cfg := Config{
		Machine: sp.Machine, Firmware: sp.Firmware, SMP: sp.SMP, MemoryMB: 256, Workdir: dir,
		Kernel: k.Vmlinuz, Initrd: ird.Path, Append: sp.Append,
		Channel: ch, ERSTPath: filepath.Join(dir, "erst"), PVPanic: true, AllowReboot: sp.AllowReboot,
		QMPSocket: filepath.Join(dir, "qmp"), SerialSocket: filepath.Join(dir, "serial"),
	}
	interval := sp.Interval
	if interval == 0 {
		interval = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	vm := &e2eVM{t: t, cfg: cfg, rc: rc, interval: interval, changed: make(chan struct{})}
	vm.launched = time.Now()
	s, err := Launch(ctx, cfg, SupervisorOptions{Watch: hostreader.WatchOptions{Interval: interval}})
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	vm.s = s
	stop := make(chan struct{})
	collected, sampled := make(chan struct{}), make(chan struct{})
	go vm.collect(collected)
	go vm.sample(stop, sampled)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("QEMU args: %s", strings.Join(s.Process().Args, " "))
			t.Logf("console tail:\n%s", s.Console().Tail(8000))
		}
		s.Close()
		cancel()
		close(stop)
		<-collected
		<-sampled
	})
	return vm
}

// since formats host time t relative to the launch.
func (vm *e2eVM) since(t time.Time) string {
	return fmt.Sprintf("+%.3fs", t.Sub(vm.launched).Seconds())
}

func (vm *e2eVM) notifyLocked() {
	close(vm.changed)
	vm.changed = make(chan struct{})
}

func (vm *e2eVM) collect(done chan struct{}) {
	defer close(done)
	for v := range vm.s.Verdicts() {
		vm.t.Logf("%s verdict: %s", vm.since(time.Now()), v)
		vm.mu.Lock()
		vm.verdicts = append(vm.verdicts, v)
		vm.notifyLocked()
		vm.mu.Unlock()
	}
	vm.mu.Lock()
	vm.ended = true
	vm.notifyLocked()
	vm.mu.Unlock()
}

// sample snapshots the region every 2 ms through its own read-only
// mapping and records every change of the tick or boot count.
func (vm *e2eVM) sample(stop <-chan struct{}, done chan struct{}) {
	defer close(done)
	r, err := hostreader.OpenRegion(vm.cfg.Channel.BackingPath, hostreader.OpenOptions{Size: int64(vm.rc.Size)})
	if err != nil {
		vm.mu.Lock()
		vm.samplerErr = err
		vm.mu.Unlock()
		return
	}
	defer r.Close()
	tk := time.NewTicker(2 * time.Millisecond)
	defer tk.Stop()
	var last tickObs
	var lastStamp uint64
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		snap, err := r.Snapshot()
		if err != nil || snap.Torn {
			continue
		}
		// The host stamp word is the watcher's (written before the guest
		// ever ticks): one change per poll round.
		if st := uint64(snap.HostStampHi)<<32 | uint64(snap.HostStampLo); st != lastStamp && st != 0 {
			lastStamp = st
			vm.mu.Lock()
			vm.stamps = append(vm.stamps, time.UnixMilli(int64(st)))
			vm.notifyLocked()
			vm.mu.Unlock()
		}
		if snap.Magic == 0 || (snap.Ticks == last.Ticks && snap.Boots == last.Boots) {
			continue
		}
		last = tickObs{At: snap.At, Ticks: snap.Ticks, Boots: snap.Boots}
		vm.mu.Lock()
		vm.ticks = append(vm.ticks, last)
		vm.notifyLocked()
		vm.mu.Unlock()
	}
}

// Stamps returns the watcher's round stamps the sampler saw so far.
func (vm *e2eVM) Stamps() []time.Time {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]time.Time(nil), vm.stamps...)
}

// assertStaleInTime checks a stale region verdict against the hang
// detection bound of hostreader (TestHangDetectionBound): a guest whose
// last tick was at most at lastTick is judged stale by the first poll
// round later than lastTick + K periods, plus the excess of the poll gap
// over K-1 periods when the watcher itself was late around the last tick.
// With rounds every interval on time that is K periods + 1 interval after
// the last tick. On a loaded host a round can start late (the watcher's
// goroutine or this process not scheduled), which no code of ours can
// prevent; so the bound is taken from the rounds that really ran (their
// host stamps, seen by the sampler; a round the sampler missed only
// loosens it) — a verdict that needs more rounds, or more periods, still
// fails. Independently, the rounds must run at the configured interval
// (median gap), so a watcher that polls too slowly fails too. It returns
// the latency from lastTick to the verdict, the round lateness it allowed
// and the bound the design gives with on-time rounds.
func (vm *e2eVM) assertStaleInTime(stale Verdict, lastTick time.Time) (lat, late, ideal time.Duration) {
	t := vm.t
	t.Helper()
	require.NotNil(t, stale.Region)
	period := time.Duration(stale.Region.Snapshot.Period) * 100 * time.Millisecond
	k := time.Duration(hostreader.DefaultK)
	ideal = k*period + vm.interval
	lat = stale.Time.Sub(lastTick)
	// Not early: by the rule, the tick is more than K periods old.
	assert.Greater(t, stale.Region.Age, k*period, "stale before K periods: %v", stale.Region.Age)

	// The poll gap around the last tick (a longer gap than K-1 periods
	// widens the threshold by the excess, hostreader's Tracker).
	base := lastTick.Add(k * period)
	roundAfter := func(at time.Time) []time.Time {
		vm.wait(30*time.Second, "a watcher round after "+vm.since(at), func() bool {
			vm.mu.Lock()
			defer vm.mu.Unlock()
			return len(vm.stamps) > 0 && vm.stamps[len(vm.stamps)-1].After(at)
		})
		return vm.Stamps()
	}
	stamps := roundAfter(base)
	var gap time.Duration
	for i := 1; i < len(stamps); i++ {
		if stamps[i].Before(lastTick.Add(-k*period)) || stamps[i-1].After(base) {
			continue
		}
		gap = max(gap, stamps[i].Sub(stamps[i-1])+time.Millisecond) // stamps are truncated to ms
	}
	threshold := base
	if excess := gap - (k-1)*period; excess > 0 {
		threshold = threshold.Add(excess)
		stamps = roundAfter(threshold)
	}
	// The first round stamped at or after the threshold (its real time is
	// within 1 ms after its stamp).
	var round time.Time
	for _, st := range stamps {
		if !st.Before(threshold) {
			round = st
			break
		}
	}
	require.False(t, round.IsZero(), "no watcher round after %s", vm.since(threshold))
	late = max(round.Sub(lastTick.Add(k*period+vm.interval)), 0)
	assert.Less(t, stale.Time, round.Add(time.Millisecond),
		"stale at %s, later than the first watcher round after last tick + K periods (%s; last tick %s, poll gap %v)",
		vm.since(stale.Time), vm.since(round), vm.since(lastTick), gap)

	// The rounds ran at the configured interval (median gap over the
	// last 3 s before the verdict within 10 intervals, or 100 ms for a
	// 5 ms interval: generous for a loaded host, far below what a
	// watcher at its 1 s default would give).
	var gaps []time.Duration
	for i := 1; i < len(stamps); i++ {
		if stamps[i].After(stale.Time.Add(-3*time.Second)) && !stamps[i].After(stale.Time) {
			gaps = append(gaps, stamps[i].Sub(stamps[i-1]))
		}
	}
	require.NotEmpty(t, gaps)
	slices.Sort(gaps)
	med := gaps[len(gaps)/2]
	t.Logf("watcher rounds before the stale verdict: median gap %v, longest %v (interval %v)", med, gaps[len(gaps)-1], vm.interval)
	assert.LessOrEqual(t, med, max(10*vm.interval, 100*time.Millisecond), "the watcher did not poll at its interval (median gap %v)", med)
	return lat, late, ideal
}

// Ticks returns the tick changes the sampler saw so far.
func (vm *e2eVM) Ticks() []tickObs {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	require.NoError(vm.t, vm.samplerErr, "region sampler")
	return append([]tickObs(nil), vm.ticks...)
}

// Verdicts returns the verdicts received so far.
func (vm *e2eVM) Verdicts() []Verdict {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Verdict(nil), vm.verdicts...)
}

// wait waits until cond holds (checked at every new verdict or tick).
func (vm *e2eVM) wait(within time.Duration, what string, cond func() bool) {
	vm.t.Helper()
	deadline := time.After(within)
	for {
		vm.mu.Lock()
		ch, ended := vm.changed, vm.ended
		vm.mu.Unlock()
		if cond() {
			return
		}
		if ended {
			// The stream is closed: nothing more will come.
			if cond() {
				return
			}
			vm.t.Fatalf("%s: verdict stream ended first", what)
		}
		select {
		case <-ch:
		case <-deadline:
			vm.t.Fatalf("%s: not within %v", what, within)
		}
	}
}

// waitVerdict waits for the first verdict at index >= from that matches
// and returns it with its index.
func (vm *e2eVM) waitVerdict(from int, within time.Duration, what string, match func(Verdict) bool) (Verdict, int) {
	vm.t.Helper()
	var got Verdict
	idx := -1
	vm.wait(within, what, func() bool {
		vs := vm.Verdicts()
		for i := from; i < len(vs); i++ {
			if match(vs[i]) {
				got, idx = vs[i], i
				return true
			}
		}
		return false
	})
	return got, idx
}

func isRegion(state State) func(Verdict) bool {
	return func(v Verdict) bool { return v.Source == SourceRegion && v.State == state }
}

func isFrom(state State, source Source) func(Verdict) bool {
	return func(v Verdict) bool { return v.Source == source && v.State == state }
}

// waitConsole waits for every pattern on the serial console (after mark)
// and returns the host time the last of them had arrived.
func (vm *e2eVM) waitConsole(mark int64, within time.Duration, patterns ...string) time.Time {
	vm.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for _, p := range patterns {
		_, err := vm.s.Console().WaitFor(ctx, mark, p)
		require.NoError(vm.t, err, "console")
	}
	return time.Now()
}

// waitAlive waits for the first alive region verdict.
func (vm *e2eVM) waitAlive() Verdict {
	vm.t.Helper()
	v, _ := vm.waitVerdict(0, e2eBoot, "alive region verdict", isRegion("alive"))
	require.NotNil(vm.t, v.Region)
	return v
}

// measurePeriod waits for n more tick changes than already seen (n >= 5)
// and returns the mean tick interval in host time over them, and the
// longest and the median single interval (-1 if the sampler missed every
// other tick).
func (vm *e2eVM) measurePeriod(n int) (mean, longest, median time.Duration) {
	vm.t.Helper()
	// The supervisor's alive verdict and this test's 2 ms sampler read the
	// region independently: under load the verdict can arrive before the
	// sampler has seen its first tick (CI run of stop 14), so wait for it.
	vm.wait(e2eBoot, "the sampler's first tick", func() bool { return len(vm.Ticks()) > 0 })
	start := len(vm.Ticks())
	vm.wait(time.Duration(n+5)*vm.rc.Tick*4+30*time.Second, fmt.Sprintf("%d more ticks", n), func() bool {
		return len(vm.Ticks()) >= start+n
	})
	obs := vm.Ticks()[start-1 : start+n]
	var single []time.Duration
	for i := 1; i < len(obs); i++ {
		require.Equal(vm.t, obs[i-1].Boots, obs[i].Boots, "boot count moved while measuring the period")
		require.Greater(vm.t, obs[i].Ticks, obs[i-1].Ticks, "tick count went back")
		if obs[i].Ticks != obs[i-1].Ticks+1 {
			// The sampler (a goroutine on a loaded host) missed a tick:
			// this span is not one interval.
			continue
		}
		d := obs[i].At.Sub(obs[i-1].At)
		longest = max(longest, d)
		single = append(single, d)
	}
	mean = obs[len(obs)-1].At.Sub(obs[0].At) / time.Duration(obs[len(obs)-1].Ticks-obs[0].Ticks)
	median = -1
	if len(single) > 0 {
		slices.Sort(single)
		median = single[len(single)/2]
	}
	return mean, longest, median
}

func logNumber(t *testing.T, name string, format string, a ...any) {
	t.Helper()
	t.Logf("NUMBER %s=%s", name, fmt.Sprintf(format, a...))
}

// checkRegionAfterExit reads the region file on its own (QEMU is gone)
// and returns its snapshot and single-snapshot verdict.
func checkRegionAfterExit(t *testing.T, vm *e2eVM) (hostreader.Snapshot, hostreader.Verdict) {
	t.Helper()
	require.True(t, vm.s.Process().Exited(), "QEMU still running")
	r, err := hostreader.OpenRegion(vm.cfg.Channel.BackingPath, hostreader.OpenOptions{})
	require.NoError(t, err)
	defer r.Close()
	snap, err := r.Snapshot()
	require.NoError(t, err)
	v := hostreader.Assess(snap, hostreader.VerdictConfig{}, nil)
	assert.NotContains(t, []hostreader.State{hostreader.StateAbsent, hostreader.StateCorrupt, hostreader.StateTorn}, v.State,
		"region after QEMU exited: %s (%s)", v.State, v.Reason)
	return snap, v
}

// TestE2EAlive: on every machine/firmware combination the region ticks
// at the configured period, counts one boot, and the guest application's
// slot is alive. On q35/SeaBIOS the VM is then paused and resumed over
// QMP: the region goes stale and comes back alive.
func TestE2EAlive(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		machine  Machine
		firmware Firmware
	}{
		{MachineQ35, FirmwareSeaBIOS}, {MachinePC, FirmwareSeaBIOS},
		{MachineQ35, FirmwareOVMF}, {MachinePC, FirmwareOVMF},
	} {
		t.Run(string(c.machine)+"-"+string(c.firmware), func(t *testing.T) {
			t.Parallel()
			vm := startE2E(t, e2eSpec{Machine: c.machine, Firmware: c.firmware,
				Append: testguest.BootArgs(testguest.ModeAlive, -1)})
			alive := vm.waitAlive()
			assert.Equal(t, uint32(1), alive.Region.Snapshot.Boots, "boot count")
			ticks := vm.Ticks()
			require.NotEmpty(t, ticks)
			first := ticks[0]
			assert.Equal(t, uint32(1), first.Boots)
			logNumber(t, "boot_to_first_tick_"+string(c.machine)+"_"+string(c.firmware), "%.2fs", first.At.Sub(vm.launched).Seconds())

			mean, longest, median := vm.measurePeriod(6)
			logNumber(t, "tick_period_1s_"+string(c.machine)+"_"+string(c.firmware), "mean %v median %v max %v over 6 ticks",
				mean.Round(time.Millisecond), median.Round(time.Millisecond), longest.Round(time.Millisecond))
			// The median single interval: one tick the loaded host held
			// back (seen: a 1.55 s interval, mean 1.075 s under load 9)
			// moves a 6-tick mean by a tenth of its delay, not the median.
			require.Positive(t, median, "no two consecutive ticks seen")
			assert.InDelta(t, vm.rc.Tick.Seconds(), median.Seconds(), 0.1*vm.rc.Tick.Seconds(),
				"median tick interval %v vs configured %v (mean %v)", median, vm.rc.Tick, mean)

			// The application heartbeat slot (written by the guest's /init
			// through the ivshmem BAR) is judged alive.
			app, _ := vm.waitVerdict(0, 30*time.Second, "region verdict with slot 0 alive", func(v Verdict) bool {
				return v.Source == SourceRegion && v.Region != nil && v.Region.Slots[0].State == hostreader.SlotAlive
			})
			assert.Equal(t, RegionState(hostreader.StateAlive), app.State)
			assert.Equal(t, "testapp", hostreader.EscapeTag(app.Region.Snapshot.Slots[0].Tag[:]))
			assert.Equal(t, 500*time.Millisecond, app.Region.Slots[0].Period)

			last := vm.Ticks()
			assert.Equal(t, uint32(1), last[len(last)-1].Boots, "boot count after the measurement")
			if c.machine == MachineQ35 && c.firmware == FirmwareSeaBIOS {
				checkStopCont(t, vm)
			}
		})
	}
}

// checkStopCont: QMP stop makes the region stale (the guest cannot tick)
// while the QEMU process lives; cont makes it alive again.
func checkStopCont(t *testing.T, vm *e2eVM) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	from := len(vm.Verdicts())
	stopAt := time.Now()
	require.NoError(t, vm.s.QMP().Execute(ctx, "stop", nil, nil))
	vm.waitVerdict(from, 10*time.Second, "QMP STOP", isFrom(StatePaused, SourceQMP))
	stale, i := vm.waitVerdict(from, 30*time.Second, "stale after stop", isRegion("stale"))
	require.NotNil(t, stale.Region)
	assert.Greater(t, stale.Region.Age, time.Duration(hostreader.DefaultK)*vm.rc.Tick, "stale before K periods")
	logNumber(t, "stop_detection_latency_1s", "%v (QMP stop -> stale; 1 s tick, 1 s poll, K 3)", stale.Time.Sub(stopAt).Round(time.Millisecond))
	st, err := QueryStatus(ctx, vm.s.QMP())
	require.NoError(t, err)
	assert.Equal(t, "paused", st.Status)
	assert.False(t, vm.s.Process().Exited())
	ticksStopped := vm.Ticks()
	// The bound, from the guest's last real tick (seen by the 2 ms
	// sampler) to the stale verdict: K periods + one poll interval, from
	// the watcher rounds that really ran (assertStaleInTime).
	lastTick := ticksStopped[len(ticksStopped)-1].At
	lat, late, bound := vm.assertStaleInTime(stale, lastTick)
	logNumber(t, "stop_last_tick_to_stale_1s", "%v (bound %v with on-time rounds; rounds late by %v)",
		lat.Round(time.Millisecond), bound, late.Round(time.Millisecond))

	contAt := time.Now()
	require.NoError(t, vm.s.QMP().Execute(ctx, "cont", nil, nil))
	vm.waitVerdict(i, 10*time.Second, "QMP RESUME", isFrom(StateRunning, SourceQMP))
	back, _ := vm.waitVerdict(i, 30*time.Second, "alive after cont", isRegion("alive"))
	assert.Greater(t, back.Region.Snapshot.Ticks, ticksStopped[len(ticksStopped)-1].Ticks, "alive again without a new tick")
	assert.Equal(t, uint32(1), back.Region.Snapshot.Boots)
	logNumber(t, "cont_to_alive_1s", "%v (QMP cont -> alive)", back.Time.Sub(contAt).Round(time.Millisecond))
}

// TestE2EPanic: the guest kernel panics (sysrq c). The supervisor reports
// one panicked verdict carrying pvpanic's GUEST_PANICKED and the kernel's
// own panic log decoded from the ERST store, within 1 s of the pvpanic
// event; the region watcher turns panicked. After QEMU exits, the region
// and ERST files still tell the story on their own.
func TestE2EPanic(t *testing.T) {
	t.Parallel()
	for _, machine := range []Machine{MachineQ35, MachinePC} {
		t.Run(string(machine), func(t *testing.T) {
			t.Parallel()
			vm := startE2E(t, e2eSpec{Machine: machine, Firmware: FirmwareSeaBIOS,
				Append: testguest.BootArgs(testguest.ModePanic, 3*time.Second)})
			vm.waitAlive()
			ev, i := vm.waitVerdict(0, e2eBoot, "panicked verdict", isFrom(StatePanicked, SourceERST))
			require.NotNil(t, ev.Panic)
			assert.True(t, ev.Panic.PVPanic, "GUEST_PANICKED and the ERST record in one verdict")
			require.NotNil(t, ev.Event)
			assert.Equal(t, qmp.EventGuestPanicked, ev.Event.Name)
			assert.Equal(t, "Kernel panic - not syncing: sysrq triggered crash", ev.Panic.PanicLine)
			assert.Contains(t, ev.Panic.Text, "Kernel panic - not syncing: sysrq triggered crash")
			assert.Contains(t, ev.Panic.Text, "acpidiag-guest: panicking now")
			lat := ev.Time.Sub(ev.Event.Time)
			logNumber(t, "panic_detection_latency_"+string(machine), "%v", lat.Round(time.Millisecond))
			assert.LessOrEqual(t, lat, time.Second, "GUEST_PANICKED -> ERST-backed panicked verdict")
			vm.waitVerdict(i, 60*time.Second, "QEMU exit", isFrom(StateExited, SourceProcess))
			assertOnePanicked(t, vm.Verdicts())
			// The region watcher itself says panicked (the stream does not
			// repeat it as a region verdict).
			rv := vm.s.Summary().Region
			require.NotNil(t, rv)
			assert.Equal(t, hostreader.StatePanicked, rv.State)
			assert.True(t, rv.HasPanic)

			// QEMU is gone: the files alone.
			snap, v := checkRegionAfterExit(t, vm)
			assert.Equal(t, uint32(1), snap.Boots)
			assert.Positive(t, snap.Ticks)
			t.Logf("region after exit: %s, %d ticks, last tick %v before the read", v.State, snap.Ticks, v.Age.Round(time.Millisecond))
			pv2 := hostreader.Assess(snap, hostreader.VerdictConfig{}, &hostreader.PanicEvidence{Source: "erst", At: ev.Time, Detail: ev.Panic.PanicLine})
			assert.Equal(t, hostreader.StatePanicked, pv2.State)
			st, err := hostreader.ReadERSTFile(vm.cfg.ERSTPath)
			require.NoError(t, err)
			var lines []string
			for _, e := range st.Events() {
				lines = append(lines, e.PanicLine)
			}
			assert.Contains(t, lines, "Kernel panic - not syncing: sysrq triggered crash")
		})
	}
}

// TestE2ELivelock: every vCPU of a 2-vCPU guest is taken by an
// unthrottled SCHED_FIFO 99 loop. With a 100 ms tick the region goes stale
// within 3 periods + 1 poll interval (305 ms, under the 0.5 s) of
// the livelock's start when the watcher's rounds run on time, and no
// later than the first round after 3 periods when the host delays them
// (assertStaleInTime), while QEMU keeps running; SysRq output and the vCPU registers are
// collected from the host; an NMI (guest unknown_nmi_panic=1) panics the
// guest, reported as panicked with the kernel's NMI panic line from ERST.
func TestE2ELivelock(t *testing.T) {
	t.Parallel()
	const interval = 5 * time.Millisecond
	vm := startE2E(t, e2eSpec{Machine: MachineQ35, Firmware: FirmwareSeaBIOS, SMP: 2,
		Tick: 100 * time.Millisecond, Interval: interval,
		Append: testguest.BootArgs(testguest.ModeLivelock, 4*time.Second, "thermal.tzp=1", "unknown_nmi_panic=1")})
	vm.waitAlive()
	mean, longest, median := vm.measurePeriod(10)
	logNumber(t, "tick_period_100ms_q35_seabios_smp2", "mean %v median %v max %v over 10 ticks",
		mean.Round(time.Millisecond), median.Round(time.Millisecond), longest.Round(time.Millisecond))
	// Sanity: the guest polls at 100 ms, not at a default 1 s (the ±10%
	// period check is TestE2EAlive's, at the default 1 s tick). The
	// median interval within 2 periods: an extra _TMP now and then makes
	// a 3 ms interval (seen), a host that starves the vCPU makes a few
	// long ones (the guest re-arms the poll after each late tick); a
	// mean over 10 ticks is moved by both.
	require.Positive(t, median, "no two consecutive ticks seen")
	assert.Less(t, median, 200*time.Millisecond, "median tick interval %v vs configured 100ms (mean %v)", median, mean)

	from := len(vm.Verdicts())
	start := vm.waitConsole(0, e2eBoot, "acpidiag-guest: livelocking every CPU now",
		"acpidiag-guest: spinning on CPU 0 (rt)", "acpidiag-guest: spinning on CPU 1 (rt)")
	// The stale verdict of the livelock: the one after which the guest
	// never ticks again. A loaded host can starve the vCPU for more than
	// K periods before the livelock (seen: stale 5.7 s before it, then
	// alive again); that verdict is true, but not this one.
	stale, i := vm.waitVerdict(from, 30*time.Second, "stale during the livelock", func(v Verdict) bool {
		ticks := vm.Ticks()
		return isRegion("stale")(v) && len(ticks) > 0 && v.Region.Snapshot.Ticks == ticks[len(ticks)-1].Ticks
	})
	for _, v := range vm.Verdicts()[from:i] {
		if v.Source == SourceRegion && v.State != RegionState(hostreader.StateAlive) {
			t.Logf("before the livelock (host load): %s", v)
		}
	}
	ticks := vm.Ticks()
	lastTick := ticks[len(ticks)-1]
	hangStart := start
	if lastTick.At.After(hangStart) {
		// The guest still ticked after the last spinner announced
		// itself: the hang began no earlier than that tick.
		hangStart = lastTick.At
	}
	// The bound: 3 periods + 1 poll interval (305 ms, under the issue's
	// 0.5 s) when the watcher's rounds run on time; from the rounds that
	// really ran on this host (assertStaleInTime). It is asserted from
	// the last tick (the sampler's sight of it, an upper bound of it):
	// the console line can reach the host 100 ms and more after the
	// thermal work stopped, which would hide a late verdict.
	_, late, bound := vm.assertStaleInTime(stale, lastTick.At)
	lat := stale.Time.Sub(hangStart)
	logNumber(t, "hang_detection_latency_100ms", "%v (last spinner on the console %s, last tick %s, stale %s; bound %v with on-time rounds, rounds late by %v)",
		lat.Round(time.Millisecond), vm.since(start), vm.since(lastTick.At), vm.since(stale.Time), bound, late.Round(time.Millisecond))
	logNumber(t, "hang_detection_from_last_tick_100ms", "%v", stale.Time.Sub(lastTick.At).Round(time.Millisecond))
	if lat > 500*time.Millisecond {
		t.Logf("livelock start -> stale %v is over the issue's 0.5 s: the watcher's rounds ran %v late on this host", lat, late)
	}

	// QEMU keeps running, the guest stays stale.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := QueryStatus(ctx, vm.s.QMP())
	require.NoError(t, err)
	assert.Equal(t, "running", st.Status)
	regs, err := Registers(ctx, vm.s.QMP())
	require.NoError(t, err)
	assert.Len(t, regs, 2, "registers of both vCPUs during the livelock")
	out, err := SysRq(ctx, vm.s.QMP(), vm.s.Console(), 'l', SysRqOptions{})
	require.NoError(t, err)
	assert.Contains(t, string(out), "sysrq: Show backtrace of all active CPUs")
	assert.Contains(t, string(out), "NMI backtrace for cpu")
	t.Logf("SysRq-l during the livelock: %d bytes of console output", len(out))
	time.Sleep(time.Second)
	ticksNow := vm.Ticks()
	assert.Equal(t, lastTick.Ticks, ticksNow[len(ticksNow)-1].Ticks, "the region ticked during the livelock")
	for _, v := range vm.Verdicts()[i:] {
		if v.Source == SourceRegion {
			assert.Equal(t, RegionState(hostreader.StateStale), v.State, "region verdict during the livelock: %s", v)
		}
	}
	assert.False(t, vm.s.Process().Exited())

	// NMI: the guest panics (unknown_nmi_panic=1), the supervisor says so.
	from = len(vm.Verdicts())
	nmiAt := time.Now()
	require.NoError(t, InjectNMI(ctx, vm.s.QMP()))
	ev, _ := vm.waitVerdict(from, 30*time.Second, "panicked verdict after NMI", isFrom(StatePanicked, SourceERST))
	require.NotNil(t, ev.Panic)
	require.NotNil(t, ev.Event)
	assert.True(t, ev.Panic.PVPanic)
	t.Logf("GUEST_PANICKED %v after inject-nmi", ev.Event.Time.Sub(nmiAt).Round(time.Millisecond))
	assert.Contains(t, ev.Panic.PanicLine, "NMI")
	lat = ev.Time.Sub(ev.Event.Time)
	logNumber(t, "panic_detection_latency_nmi_livelock", "%v", lat.Round(time.Millisecond))
	assert.LessOrEqual(t, lat, time.Second, "GUEST_PANICKED -> ERST-backed panicked verdict")
}

// TestE2EUserspaceHang: the guest's application stops beating and normal
// priority busy loops take every vCPU. The kernel tick goes on (region
// alive), the application slot goes stale, and over a long run with every
// CPU busy there is no false stale verdict (60 s; 5 min with
// ACPIDIAG_SOAK=1).
//
// Not parallel: the other scenarios' busy vCPUs (the livelock, the CPU
// cost loop) would starve this VM on a 2-core host, and a VM its host
// does not run really does stop ticking (seen: a 4 s gap, 2 stale
// verdicts, with 5 busy vCPU threads on 2 cores). Go runs the
// non-parallel tests of a package first, alone.
func TestE2EUserspaceHang(t *testing.T) {
	run := 60 * time.Second
	if os.Getenv("ACPIDIAG_SOAK") == "1" {
		run = 5 * time.Minute
	}
	vm := startE2E(t, e2eSpec{Machine: MachineQ35, Firmware: FirmwareSeaBIOS, SMP: 2,
		Append: testguest.BootArgs(testguest.ModeUhang, 3*time.Second)})
	vm.waitAlive()
	vm.waitConsole(0, e2eBoot, "acpidiag-guest: userspace hung now",
		"acpidiag-guest: spinning on CPU 0 (normal)", "acpidiag-guest: spinning on CPU 1 (normal)")
	slot, i := vm.waitVerdict(0, 30*time.Second, "slot 0 stale", func(v Verdict) bool {
		return v.Source == SourceRegion && v.Region != nil && v.Region.Slots[0].State == hostreader.SlotStale
	})
	assert.Equal(t, RegionState(hostreader.StateAlive), slot.State, "the kernel tick must stay alive during a userspace hang")

	t0 := time.Now()
	ticks0 := vm.Ticks()
	time.Sleep(run)
	ticks1 := vm.Ticks()
	var stale, regionVerdicts int
	for _, v := range vm.Verdicts()[i:] {
		if v.Source != SourceRegion {
			continue
		}
		regionVerdicts++
		if v.State != "alive" {
			stale++
			t.Errorf("false verdict during the busy run: %s", v)
		}
		assert.Equal(t, hostreader.SlotStale, v.Region.Slots[0].State, "the hung application's slot came back")
	}
	var longest time.Duration
	for k := len(ticks0); k < len(ticks1); k++ {
		if d := ticks1[k].At.Sub(ticks1[k-1].At); d > longest {
			longest = d
		}
	}
	n := ticks1[len(ticks1)-1].Ticks - ticks0[len(ticks0)-1].Ticks
	elapsed := time.Since(t0)
	logNumber(t, "busy_run_false_stale", "%d false verdicts in %v with every vCPU busy (smp 2, 1 s tick, poll 1 s, K 3); %d ticks, longest tick interval %v",
		stale, elapsed.Round(time.Second), n, longest.Round(time.Millisecond))
	expect := float64(elapsed) / float64(vm.rc.Tick)
	assert.InDelta(t, expect, float64(n), 0.1*expect, "tick count over the busy run")
	st, err := QueryStatus(context.Background(), vm.s.QMP())
	require.NoError(t, err)
	assert.Equal(t, "running", st.Status)
}

// TestE2EReboot: the guest reboots (QEMU allowed to reset): the supervisor
// reports rebooted and the region's boot count is 2.
func TestE2EReboot(t *testing.T) {
	t.Parallel()
	vm := startE2E(t, e2eSpec{Machine: MachineQ35, Firmware: FirmwareSeaBIOS, AllowReboot: true,
		Append: testguest.BootArgs(testguest.ModeReboot, 3*time.Second)})
	first := vm.waitAlive()
	assert.Equal(t, uint32(1), first.Region.Snapshot.Boots)
	rb, i := vm.waitVerdict(0, e2eBoot, "rebooted verdict", isRegion("rebooted"))
	assert.Equal(t, uint32(2), rb.Region.Snapshot.Boots)
	vm.waitVerdict(0, 10*time.Second, "QMP RESET", isFrom(StateReset, SourceQMP))
	assert.False(t, vm.s.Process().Exited(), "QEMU must survive the reboot")
	// The second boot ticks on (it reboots again 3 s after its /init).
	next, _ := vm.waitVerdict(i+1, 60*time.Second, "verdict after the reboot", func(v Verdict) bool { return v.Source == SourceRegion })
	t.Logf("after the reboot: %s", next)
	assert.GreaterOrEqual(t, next.Region.Snapshot.Boots, uint32(2))
}
