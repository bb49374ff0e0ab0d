package monitor

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one probe run.
type Result struct {
	// Scheduled is when the run was due; Start when it started.
	Scheduled time.Time     `json:"scheduled"`
	Start     time.Time     `json:"start"`
	Duration  time.Duration `json:"duration_ns"`
	OK        bool          `json:"ok"`
	// Detail is the probe's one-line evidence on success (escaped).
	Detail string `json:"detail,omitempty"`
	// Error is the failure (escaped).
	Error string `json:"error,omitempty"`
	// TimedOut is set when the probe overran its timeout and was cancelled.
	TimedOut bool `json:"timed_out,omitempty"`
}

// binding is one scenario running on one VM. Bindings have no goroutine
// of their own: the monitor's scheduler (one timer over a heap of due
// times) hands due runs to a pool of worker goroutines.
type binding struct {
	m      *Monitor
	vm     *vmRuntime
	ctx    context.Context
	cancel context.CancelFunc

	// Scheduler state (guarded by scheduler.mu).
	next     time.Time // when the next run is due
	nextNs   int64     // next as nanoseconds since the scheduler's epoch (heap key)
	every    time.Duration
	kind     string // probe kind (fixed: a changed scenario is a new binding)
	index    int    // position in the heap, -1 when not queued
	running  bool   // a run is in progress
	stopped  bool
	inflight sync.WaitGroup

	mu        sync.Mutex
	sc        *Scenario
	st        ScenarioState
	history   []Result
	probe     probeState
	incActive bool
}

func newBinding(m *Monitor, vm *vmRuntime, sc *Scenario) *binding {
	ctx, cancel := context.WithCancel(vm.ctx)
	b := &binding{m: m, vm: vm, sc: sc, ctx: ctx, cancel: cancel, index: -1, every: sc.Every, kind: sc.Config.Probe.Kind,
		st: ScenarioState{VM: vm.cfg.Name, Scenario: sc.Config.Name}}
	// Align to the period grid (multiples of every in wall-clock time, as
	// of the scheduler's start) shifted by the binding's phase.
	s := m.sched
	nowNs := int64(time.Since(s.epoch))
	every := int64(sc.Every)
	abs := nowNs + s.epochWall
	base := abs - abs%every + int64(phase(vm.cfg.Name, sc.Config.Name, sc.Every))
	if base < abs {
		base += every
	}
	b.nextNs = base - s.epochWall
	b.next = s.epoch.Add(time.Duration(b.nextNs))
	s.add(b)
	return b
}

// stop unschedules the binding, cancels a run in progress and waits for it.
func (b *binding) stop() {
	b.m.sched.remove(b)
	b.cancel()
	b.inflight.Wait()
}

func (b *binding) setScenario(s *Scenario) {
	b.mu.Lock()
	b.sc = s
	b.mu.Unlock()
}

func (b *binding) scenario() *Scenario {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sc
}

func (b *binding) state() ScenarioState {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	if st.Last != nil {
		r := *st.Last
		st.Last = &r
	}
	return st
}

// scheduler runs every binding at grid+phase+k*every. A run that is still
// in progress when the next one is due makes that one skipped (never two
// at once); runs missed during a stall are skipped, not burst.
type scheduler struct {
	m     *Monitor
	epoch time.Time // monotonic base of the heap keys
	// epochWall is epoch in wall-clock nanoseconds (Unix): the period and
	// slot grids are multiples of wall-clock time, followed on the
	// monotonic clock from epoch on.
	epochWall int64
	mu        sync.Mutex
	h         bindingHeap
	wake      chan struct{}
	work      chan job
	idle      int // workers waiting on work
	done      chan struct{}
	wg        sync.WaitGroup

	// Exec probes: the loop queues due ones in spawnq for the spawner
	// goroutine, which starts them and adds them to execs; the loop reaps
	// them (execMu guards both lists).
	execMu  sync.Mutex
	spawnq  []job
	execs   []*execRun
	spawnGo chan struct{} // wakes the spawner
	wakeAt  atomic.Int64  // when the loop wakes next (scheduler epoch ns)

	hooks *schedHooks // nil outside tests
}

// schedHooks let a test hold the loop and the spawner at the points where
// they race, to make a two-statement window as wide as the test needs.
// They are set through Options (unexported) and nil in production.
type schedHooks struct {
	// beforeWakeAt runs in the loop after it reaped the commands and
	// before it stores its wake-up time; spawned says whether this round
	// handed commands to the spawner.
	beforeWakeAt func(spawned bool)
	// spawnerRound runs in the spawner after a round's commands started
	// and it decided whether to poke the loop.
	spawnerRound func()
}

type job struct {
	b         *binding
	scheduled time.Time
	kind      string // probe kind
}

// timerSlack is how late the scheduler may wake to batch due runs.
const timerSlack = 20 * time.Millisecond

// slotGrid is the grid of the bindings' phases when their period is a
// multiple of it (phase): the runs of a 10 s period fall into 100 slots,
// and the scheduler wakes once per slot with every run of the slot due
// exactly then, instead of once per timerSlack with runs up to timerSlack
// late. With 3,000 bindings every 10 s that is 10 wake-ups a second of 30
// runs each, and the start lag is the wake-up's own latency (plus, for an
// exec probe, the forks queued before its own). A wake-up of the idle
// process (thread switches, timers) costs more CPU than the probes it
// runs: the slots are what keeps the 1,000-VM monitor's CPU low (50 ms
// slots: 1.7-1.9 % of a core; 100 ms: 1.4-1.7 %; docs/numbers.md).
const slotGrid = 100 * time.Millisecond

// minSlots is how many slots a period needs for its bindings to go on
// the slot grid: periods under 1 s keep phases anywhere in the period, so
// the bindings of a short period do not all fall into one or two slots.
const minSlots = 10

// execPoll is how long the loop sleeps at most while exec probes are in
// progress: it reaps them when it wakes (most often earlier, for runs
// that are due).
const execPoll = slotGrid

// workerIdle is how long an idle worker waits for work before it exits.
const workerIdle = 30 * time.Second

func newScheduler(m *Monitor) *scheduler {
	epoch := time.Now()
	s := &scheduler{m: m, epoch: epoch, epochWall: epoch.UnixNano(), wake: make(chan struct{}, 1), work: make(chan job), done: make(chan struct{}),
		spawnGo: make(chan struct{}, 1), hooks: m.opts.hooks}
	s.wg.Add(2)
	go s.loop()
	go s.spawner()
	return s
}

func (s *scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *scheduler) add(b *binding) {
	s.mu.Lock()
	heap.Push(&s.h, b)
	s.mu.Unlock()
	s.poke()
}

func (s *scheduler) remove(b *binding) {
	s.mu.Lock()
	b.stopped = true
	if b.index >= 0 {
		heap.Remove(&s.h, b.index)
	}
	s.mu.Unlock()
}

func (s *scheduler) close() {
	close(s.done)
	s.wg.Wait()
	s.abandonExecs()
}

func (s *scheduler) loop() {
	defer s.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []job
	for {
		now := time.Now()
		nowNs := int64(now.Sub(s.epoch))
		due = due[:0]
		s.mu.Lock()
		for len(s.h) > 0 && s.h[0].nextNs <= nowNs {
			b := s.h[0]
			sched := b.next
			step := int64(b.every)
			b.nextNs += step
			if b.nextNs <= nowNs { // a stall: skip the missed runs
				b.nextNs += ((nowNs-b.nextNs)/step + 1) * step
			}
			b.next = s.epoch.Add(time.Duration(b.nextNs))
			heap.Fix(&s.h, 0)
			if b.running {
				continue // the previous run overran: skip this one
			}
			b.running = true
			b.inflight.Add(1)
			due = append(due, job{b, sched, b.kind})
		}
		wait := time.Hour
		if len(s.h) > 0 {
			// Timer slack: runs due within the next slack are started
			// together, so 300 runs a second cost a fraction of the
			// wake-ups (their start lag grows by less than slack). Runs
			// on the slot grid are due together: the loop wakes at
			// their slot.
			next := s.h[0].nextNs
			wait = time.Duration(min(s.onGrid(next), next+int64(timerSlack)) - nowNs)
		}
		s.mu.Unlock()
		spawn := false
		for _, j := range due {
			switch {
			case inlineProbe(j.kind):
				s.run(j) // microseconds, never blocks: no hand-off
			case j.kind == ProbeExec:
				s.execMu.Lock()
				s.spawnq = append(s.spawnq, j)
				s.execMu.Unlock()
				spawn = true
			default:
				s.dispatch(j)
			}
		}
		if spawn {
			select {
			case s.spawnGo <- struct{}{}:
			default:
			}
		}
		now = time.Now()
		// A command the spawner adds after reapExecs looked must not wait
		// for a late wake-up: until wakeAt is known the spawner pokes.
		s.wakeAt.Store(math.MaxInt64)
		wait = min(wait, s.reapExecs(now))
		if s.hooks != nil && s.hooks.beforeWakeAt != nil {
			s.hooks.beforeWakeAt(spawn)
		}
		s.wakeAt.Store(int64(now.Sub(s.epoch) + wait))
		t.Reset(wait)
		select {
		case <-s.done:
			return
		case <-s.wake:
			if !t.Stop() {
				<-t.C
			}
		case <-t.C:
		}
	}
}

// execRun is an exec probe in progress. Exec probes do not go to the
// workers: the loop queues the tick's due ones for the spawner goroutine
// (one hand-off per tick, not per command), which starts them, and the
// loop reaps them on one of its next wake-ups with non-blocking waitid.
// A command costs the monitor no goroutine and no wake-up of its own (a
// wake-up of the idle process, thread switches included, costs about as
// much CPU as the fork). The probe's duration is therefore measured to
// the loop's wake-up (timerSlack granularity), and its timeout is
// enforced there. The spawner, not the loop, forks: the fork (vfork)
// holds its thread until the command has exec'd, which on a busy host
// can take tens of milliseconds.
type execRun struct {
	j        job
	sc       *Scenario
	start    time.Time
	cmd      *command
	deadline time.Time
	timedOut bool
	stop     func() bool // unregisters the kill on the binding's end
}

// spawner starts the exec probes the loop queues.
func (s *scheduler) spawner() {
	defer s.wg.Done()
	var jobs []job
	for {
		select {
		case <-s.done:
			s.execMu.Lock()
			jobs, s.spawnq = s.spawnq, nil
			s.execMu.Unlock()
			for _, j := range jobs {
				s.runDone(j.b)
			}
			return
		case <-s.spawnGo:
		}
		s.execMu.Lock()
		jobs, s.spawnq = s.spawnq, jobs[:0]
		s.execMu.Unlock()
		var latest time.Time
		for _, j := range jobs {
			if er := s.startExec(j); er != nil {
				s.execMu.Lock()
				s.execs = append(s.execs, er)
				s.execMu.Unlock()
				latest = er.start
			}
		}
		clear(jobs)
		// The loop looks at the commands when it wakes; wake it sooner
		// when it would sleep past a poll interval.
		if !latest.IsZero() && s.wakeAt.Load() > int64(latest.Add(execPoll).Sub(s.epoch)) {
			s.poke()
		}
		if s.hooks != nil && s.hooks.spawnerRound != nil {
			s.hooks.spawnerRound()
		}
	}
}

// startExec starts an exec probe's command. It returns nil when there is
// nothing to reap: the binding stopped, or the command did not start (a
// failed run, recorded).
func (s *scheduler) startExec(j job) *execRun {
	b := j.b
	start := time.Now()
	s.m.recordLag(start.Sub(j.scheduled))
	if b.ctx.Err() != nil {
		s.runDone(b)
		return nil
	}
	sc := b.scenario()
	c, err := startCommand(sc.Config.Probe.Command, nil)
	if err != nil {
		_, perr := execResult(sc.Config.Probe, nil, err)
		b.record(sc, j.scheduled, start, "", perr, false, nil)
		s.runDone(b)
		return nil
	}
	stop := context.AfterFunc(b.ctx, func() { // the binding stopped
		c.kill()
		s.poke()
	})
	return &execRun{j: j, sc: sc, start: start, cmd: c, deadline: start.Add(sc.Timeout), stop: stop}
}

// reapExecs finishes the exec probes whose command exited, kills the
// process groups of those past their timeout, and returns how long the
// loop may sleep before it looks again.
func (s *scheduler) reapExecs(now time.Time) time.Duration {
	s.execMu.Lock()
	if len(s.execs) == 0 {
		s.execMu.Unlock()
		return time.Hour
	}
	wait := execPoll
	var done []*execRun
	var errs []error
	kept := s.execs[:0]
	for _, er := range s.execs {
		exited, err := er.cmd.exited(false)
		if !exited && err == nil {
			if !er.timedOut && !now.Before(er.deadline) {
				er.timedOut = true
				er.cmd.kill()
			}
			if !er.timedOut {
				wait = min(wait, er.deadline.Sub(now))
			}
			kept = append(kept, er)
			continue
		}
		done = append(done, er)
		errs = append(errs, err)
	}
	clear(s.execs[len(kept):])
	s.execs = kept
	s.execMu.Unlock()
	for i, er := range done {
		s.finishExec(er, errs[i])
	}
	return max(wait, 0)
}

// finishExec reaps an exited exec probe command and records the run.
func (s *scheduler) finishExec(er *execRun, werr error) {
	er.stop()
	st, out, _, ferr := er.cmd.finish(execOutputMax)
	if werr == nil {
		werr = ferr
	}
	b := er.j.b
	if b.ctx.Err() == nil { // else stopped: the run does not count
		detail, err := execResult(er.sc.Config.Probe, out, commandErr(nil, er.timedOut, er.sc.Timeout, werr, st))
		b.record(er.sc, er.j.scheduled, er.start, detail, err, er.timedOut, nil)
	}
	s.runDone(b)
}

// abandonExecs kills and reaps the exec probes in progress when the
// scheduler has closed.
func (s *scheduler) abandonExecs() {
	s.execMu.Lock()
	execs := s.execs
	s.execs = nil
	s.execMu.Unlock()
	for _, er := range execs {
		er.stop()
		er.cmd.abandon()
		s.runDone(er.j.b)
	}
}

// onGrid returns the first time on the absolute slot grid (slotGrid
// multiples of wall-clock time, as the phases are) at or after ns
// (scheduler epoch nanoseconds).
func (s *scheduler) onGrid(ns int64) int64 {
	g := int64(slotGrid)
	abs := ns + s.epochWall
	return ns + (g-abs%g)%g
}

// dispatch hands a job to an idle worker, or starts a new one.
func (s *scheduler) dispatch(j job) {
	select {
	case s.work <- j:
	default:
		s.wg.Add(1)
		go s.worker(j)
	}
}

func (s *scheduler) worker(j job) {
	defer s.wg.Done()
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		s.run(j)
		t.Reset(workerIdle)
		select {
		case j = <-s.work:
		case <-t.C:
			return
		case <-s.done:
			return
		}
	}
}

func (s *scheduler) run(j job) {
	b := j.b
	start := time.Now()
	s.m.recordLag(start.Sub(j.scheduled))
	if b.ctx.Err() == nil {
		b.runOnce(b.ctx, j.scheduled, start)
	}
	s.runDone(b)
}

// runDone ends a run of b: the next one may start, b.stop may return.
func (s *scheduler) runDone(b *binding) {
	s.mu.Lock()
	b.running = false
	s.mu.Unlock()
	b.inflight.Done()
}

// inlineProbe reports whether a probe kind only reads memory the monitor
// already has (the region watcher's verdict): such probes run on the
// scheduler's goroutine, without a hand-off or a timeout context.
func inlineProbe(kind string) bool { return kind == ProbeRegion || kind == ProbeSlot }

// bindingHeap orders bindings by their next due time.
type bindingHeap []*binding

func (h bindingHeap) Len() int           { return len(h) }
func (h bindingHeap) Less(i, j int) bool { return h[i].nextNs < h[j].nextNs }
func (h bindingHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *bindingHeap) Push(x any) {
	b := x.(*binding)
	b.index = len(*h)
	*h = append(*h, b)
}
func (h *bindingHeap) Pop() any {
	old := *h
	b := old[len(old)-1]
	old[len(old)-1] = nil
	b.index = -1
	*h = old[:len(old)-1]
	return b
}

// runOnce runs the probe with the scenario's timeout and updates the state;
// enough consecutive failures outside the cooldown raise an incident.
func (b *binding) runOnce(ctx context.Context, scheduled, start time.Time) {
	sc := b.scenario()
	pctx, cancel, timeout := ctx, context.CancelFunc(func() {}), time.Duration(0)
	switch kind := sc.Config.Probe.Kind; {
	case kind == ProbeExec:
		timeout = sc.Timeout // runCommand's own timer
	case !inlineProbe(kind):
		pctx, cancel = context.WithTimeout(ctx, sc.Timeout)
	}
	b.mu.Lock()
	ps := b.probe
	b.mu.Unlock()
	detail, err := runProbe(pctx, timeout, b.vm, sc, &ps)
	timedOut := pctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded)
	cancel()
	if ctx.Err() != nil {
		return // stopped: the run does not count
	}
	b.record(sc, scheduled, start, detail, err, timedOut, &ps)
}

// record updates the binding's state with a finished run of scenario sc;
// enough consecutive failures outside the cooldown raise an incident. ps
// is the probe's state after the run (nil: the probe keeps none).
func (b *binding) record(sc *Scenario, scheduled, start time.Time, detail string, err error, timedOut bool, ps *probeState) {
	r := Result{Scheduled: scheduled, Start: start, Duration: time.Since(start), OK: err == nil, Detail: detail, TimedOut: timedOut}
	if err != nil {
		r.Error = err.Error()
		if timedOut {
			r.Error = fmt.Sprintf("timed out after %s: %s", sc.Timeout, r.Error)
		}
	}
	if len(r.Detail) > 512 {
		r.Detail = r.Detail[:512] + "..."
	}

	b.mu.Lock()
	if ps != nil {
		b.probe = *ps
	}
	prev := b.st.Last
	b.st.Last = &r
	b.st.Runs++
	hist := b.m.planLimits().History
	if len(b.history) >= hist {
		copy(b.history, b.history[1:])
		b.history = b.history[:len(b.history)-1]
	}
	b.history = append(b.history, r)
	if r.OK {
		b.st.Failures = 0
	} else {
		b.st.Failures++
	}
	raise := false
	if !r.OK && b.st.Failures >= sc.Failures && !b.incActive &&
		(b.st.LastIncident.IsZero() || start.Sub(b.st.LastIncident) >= sc.Cooldown) {
		raise = true
		b.incActive = true
		b.st.LastIncident = start
		b.st.Incidents++
	}
	var hcopy []Result
	if raise { // the incident's probe history
		hcopy = append([]Result(nil), b.history...)
	}
	failures := b.st.Failures
	b.mu.Unlock()
	if ex := b.m.opts.Exporter; ex != nil {
		ex.ProbeResult(sc.Config.Name, b.vm.cfg.Name, r.OK, r.Duration)
		if raise {
			ex.Incident(sc.Config.Name, b.vm.cfg.Name)
		}
	}

	if prev == nil || prev.OK != r.OK {
		state, d := "pass", r.Detail
		if !r.OK {
			state, d = "fail", r.Error
		}
		b.m.emit(Event{Time: start, Type: EventProbe, VM: b.vm.cfg.Name, Scenario: sc.Config.Name, State: state, Detail: d})
	}
	if raise {
		inc := newIncident(b.vm, sc, hcopy, failures, start)
		b.mu.Lock()
		b.st.LastIncidentID = inc.ID
		b.mu.Unlock()
		b.m.emit(Event{Time: start, Type: EventIncident, VM: b.vm.cfg.Name, Scenario: sc.Config.Name, Incident: inc.ID,
			Detail: fmt.Sprintf("%d consecutive failures: %s", failures, r.Error)})
		b.m.incWG.Add(1)
		go func() {
			defer b.m.incWG.Done()
			b.m.runIncident(b.vm, inc)
			b.mu.Lock()
			b.incActive = false
			b.mu.Unlock()
		}()
	}
}

// planLimits returns the current limits without taking m.mu (bindings
// are stopped while m.mu is held).
func (m *Monitor) planLimits() Limits { return *m.limits.Load() }
