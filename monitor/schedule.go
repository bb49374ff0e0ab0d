package monitor

import (
	"context"
	"fmt"
	"sync"
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

// binding is one scenario running on one VM.
type binding struct {
	m      *Monitor
	vm     *vmRuntime
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	sc        *Scenario
	st        ScenarioState
	history   []Result
	probe     probeState
	incActive bool
}

func newBinding(m *Monitor, vm *vmRuntime, sc *Scenario) *binding {
	ctx, cancel := context.WithCancel(vm.ctx)
	b := &binding{m: m, vm: vm, sc: sc, cancel: cancel, done: make(chan struct{}),
		st: ScenarioState{VM: vm.cfg.Name, Scenario: sc.Config.Name}}
	go b.loop(ctx)
	return b
}

func (b *binding) stop() {
	b.cancel()
	<-b.done
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

// loop runs the probe at start+phase+k*every. A run that would start
// after its successor is due is skipped (never two at once, no burst
// after a stall).
func (b *binding) loop(ctx context.Context) {
	defer close(b.done)
	sc := b.scenario()
	every := sc.Every
	now := time.Now()
	// Align to the period grid shifted by the binding's phase.
	base := now.Truncate(every).Add(phase(b.vm.cfg.Name, sc.Config.Name, every))
	if base.Before(now) {
		base = base.Add(every)
	}
	next := base
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		b.m.recordLag(start.Sub(next))
		b.runOnce(ctx, next, start)
		if ctx.Err() != nil {
			return
		}
		next = next.Add(every)
		if now := time.Now(); !next.After(now) {
			skip := now.Sub(next)/every + 1
			next = next.Add(skip * every)
		}
		t.Reset(time.Until(next))
	}
}

// runOnce runs the probe with the scenario's timeout and updates the state;
// enough consecutive failures outside the cooldown raise an incident.
func (b *binding) runOnce(ctx context.Context, scheduled, start time.Time) {
	sc := b.scenario()
	pctx, cancel := context.WithTimeout(ctx, sc.Timeout)
	b.mu.Lock()
	ps := b.probe
	b.mu.Unlock()
	detail, err := runProbe(pctx, b.vm, sc, &ps)
	timedOut := pctx.Err() == context.DeadlineExceeded
	cancel()
	if ctx.Err() != nil {
		return // stopped: the run does not count
	}
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
	b.probe = ps
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
	hcopy := append([]Result(nil), b.history...)
	failures := b.st.Failures
	b.mu.Unlock()

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
