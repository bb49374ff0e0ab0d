package monitor

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/metrics"
)

// Options tune a Monitor beyond its Config.
type Options struct {
	// Workdir is where bundles are assembled before the sinks take them
	// (default: a new directory under os.TempDir, removed by Close).
	Workdir string
	// Sinks replace the sinks of the configuration when set.
	Sinks []Sink
	// Events is the capacity of the Events channel (default 1024). When it
	// is full, events are dropped and counted (Stats).
	Events int
	// WatchInterval is how often the shared region watcher polls and
	// stamps (default 1 s).
	WatchInterval time.Duration
	// Exporter, when set, receives the monitor's state for Prometheus:
	// every probe result and incident as it happens, the VMs' panics,
	// and (ExportState, before each scrape) their region verdicts. The
	// metrics pipeline, when the plan has the "azure" tuple, feeds it the
	// memory gauges.
	Exporter *metrics.Exporter

	// hooks are the scheduler's test hooks (nil outside tests).
	hooks *schedHooks
}

// Event is something the monitor reports: a probe state change, an
// incident, a bundle, a VM change, a warning.
type Event struct {
	Time     time.Time `json:"time"`
	Type     string    `json:"type"` // probe, incident, bundle, vm, warning, error
	VM       string    `json:"vm,omitempty"`
	Scenario string    `json:"scenario,omitempty"`
	// State is "pass"/"fail" (probe), "added"/"changed"/"removed" (vm).
	State  string `json:"state,omitempty"`
	Detail string `json:"detail,omitempty"` // escaped
	// Incident is the incident id (incident, bundle).
	Incident string `json:"incident,omitempty"`
	// Path is where the bundle went (bundle).
	Path string `json:"path,omitempty"`
}

// Event types.
const (
	EventProbe    = "probe"
	EventIncident = "incident"
	EventBundle   = "bundle"
	EventVM       = "vm"
	EventWarning  = "warning"
	EventError    = "error"
)

// Monitor runs scenarios against a set of VMs and turns failures into
// incident bundles. Create it with New, feed it with Apply or
// AddVM/UpdateVM/RemoveVM, read Events, and Close it.
type Monitor struct {
	ctx    context.Context
	cancel context.CancelFunc
	opts   Options

	watcher *hostreader.Watcher
	// diagSem bounds the diagnostics running at once (limits.diagnostics);
	// atomic: diagnostics take it while RemoveVM holds mu waiting for them.
	diagSem atomic.Pointer[chan struct{}]
	events  chan Event
	dropped uint64
	lagMu   sync.Mutex
	lags    []time.Duration // probe start lag samples (ring)
	lagPos  int
	ownWork bool
	incWG   sync.WaitGroup
	limits  atomic.Pointer[Limits]
	sched   *scheduler

	mu   sync.Mutex
	plan *Plan
	// sinks are guarded by sinkMu, not mu: a delivery holds sinkMu for
	// reading, so a reload that replaces the sinks waits for deliveries in
	// progress before it closes the old ones (lock order: mu, then sinkMu).
	sinkMu   sync.RWMutex
	sinks    []Sink
	vms      map[string]*vmRuntime
	bindings map[bindKey]*binding
	closed   bool
	metrics  *metricsRun // the metrics pipeline, when the plan has it (metrics.go)

	metricsMu sync.Mutex // serialises syncMetrics
}

type bindKey struct{ vm, scenario string }

// New creates a monitor for the checked plan and starts it: every VM is
// connected and every binding scheduled. ctx ends it (as Close does).
func New(ctx context.Context, p *Plan, opts Options) (*Monitor, error) {
	if p == nil {
		return nil, errors.New("monitor: nil plan (use Check)")
	}
	if opts.Events <= 0 {
		opts.Events = 1024
	}
	if opts.WatchInterval <= 0 {
		opts.WatchInterval = time.Second
	}
	m := &Monitor{opts: opts, vms: map[string]*vmRuntime{}, bindings: map[bindKey]*binding{},
		events: make(chan Event, opts.Events), lags: make([]time.Duration, 0, 8192)}
	if m.opts.Workdir == "" {
		d, err := os.MkdirTemp("", "diagmon-")
		if err != nil {
			return nil, fmt.Errorf("monitor: workdir: %w", err)
		}
		m.opts.Workdir, m.ownWork = d, true
	} else if err := os.MkdirAll(m.opts.Workdir, 0o755); err != nil {
		return nil, fmt.Errorf("monitor: workdir: %w", err)
	}
	m.ctx, m.cancel = context.WithCancel(ctx)
	m.sched = newScheduler(m)
	m.watcher = hostreader.NewWatcher(m.ctx, hostreader.WatchOptions{Interval: opts.WatchInterval, Stamp: true, Buffer: 1024})
	go func() {
		for range m.watcher.Changes() { // verdicts are read with Verdict; changes go to the timeline
		}
	}()
	// Bundles a killed process left in a kept workdir go to the sinks again.
	var done []*Bundle
	var partial []string
	if !m.ownWork {
		done, partial = pendingBundles(m.opts.Workdir)
	}
	if err := m.Apply(p); err != nil {
		m.Close()
		return nil, err
	}
	if len(done)+len(partial) > 0 {
		m.incWG.Add(1)
		go m.redeliver(done, partial)
	}
	return m, nil
}

// Events returns the monitor's event stream. It is never closed while the
// monitor runs; drain it (events are dropped when it is full).
func (m *Monitor) Events() <-chan Event { return m.events }

func (m *Monitor) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	select {
	case m.events <- e:
	default:
		m.lagMu.Lock()
		m.dropped++
		m.lagMu.Unlock()
	}
}

// Apply replaces the configuration: VMs that are new are added, VMs whose
// configuration changed are restarted, VMs no longer listed are removed,
// and unchanged VMs are left alone (their connections and the state of
// their unchanged scenarios are kept). This is what SIGHUP does.
func (m *Monitor) Apply(p *Plan) error {
	sinks := m.opts.Sinks
	m.mu.Lock()
	same := m.plan != nil && sameSinks(m.plan.Config.Sinks, p.Config.Sinks)
	m.mu.Unlock()
	keep, created := sinks == nil && same, false // unchanged: keep them (an http sink's spool is opened once)
	if sinks == nil && !same {
		var err error
		if sinks, err = SinksFromConfig(p.Config.Sinks); err != nil {
			return err
		}
		created = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		for _, s := range sinks {
			if created {
				s.Close()
			}
		}
		return errors.New("monitor: closed")
	}
	if !keep {
		m.sinkMu.Lock() // waits for the deliveries in progress
		replaced := m.sinks
		m.sinks = sinks
		m.sinkMu.Unlock()
		if created {
			for _, s := range replaced {
				s.Close()
			}
		}
	}
	old := m.plan
	m.plan = p
	lim := p.Limits
	m.limits.Store(&lim)
	if old == nil || old.Limits.Diagnostics != p.Limits.Diagnostics {
		sem := make(chan struct{}, p.Limits.Diagnostics)
		m.diagSem.Store(&sem)
	}
	for _, w := range p.Warnings {
		m.emit(Event{Type: EventWarning, Detail: w.String()})
	}
	want := map[string]VMConfig{}
	for _, v := range p.Config.VMs {
		want[v.Name] = v
	}
	for name, rt := range m.vms {
		if nv, ok := want[name]; !ok || !nv.equal(rt.cfg) {
			m.removeVMLocked(name)
		}
	}
	for _, v := range p.Config.VMs {
		if _, ok := m.vms[v.Name]; !ok {
			m.addVMLocked(v)
		}
	}
	m.rebindLocked(old)
	m.mu.Unlock()
	m.syncMetrics(false)
	m.mu.Lock() // for the deferred Unlock
	return nil
}

// AddVM adds a VM at runtime; the scenarios whose vms list or selector
// match it start on it.
func (m *Monitor) AddVM(v VMConfig) error {
	if err := checkVMConfig(v); err != nil {
		return fmt.Errorf("monitor: vm %q: %w", v.Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vms[v.Name]; ok {
		return fmt.Errorf("monitor: vm %q already exists (use UpdateVM)", v.Name)
	}
	if err := m.checkNeedsLocked(v); err != nil {
		return err
	}
	m.plan.Config.VMs = append(append([]VMConfig(nil), m.plan.Config.VMs...), v)
	m.addVMLocked(v)
	m.rebindLocked(m.plan)
	return nil
}

// UpdateVM changes a VM's configuration; an unchanged configuration is a
// no-op, otherwise the VM is reconnected and rebound.
func (m *Monitor) UpdateVM(v VMConfig) error {
	if err := checkVMConfig(v); err != nil {
		return fmt.Errorf("monitor: vm %q: %w", v.Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rt, ok := m.vms[v.Name]
	if !ok {
		return fmt.Errorf("monitor: no vm %q", v.Name)
	}
	if rt.cfg.equal(v) {
		return nil
	}
	if err := m.checkNeedsLocked(v); err != nil {
		return err
	}
	vms := append([]VMConfig(nil), m.plan.Config.VMs...)
	for i := range vms {
		if vms[i].Name == v.Name {
			vms[i] = v
		}
	}
	m.plan.Config.VMs = vms
	m.removeVMLocked(v.Name)
	m.addVMLocked(v)
	m.rebindLocked(m.plan)
	return nil
}

// RemoveVM stops a VM's scenarios (cleanly: a probe in flight is
// cancelled) and drops its connections. Diagnostics in progress for it
// are cancelled; their bundle is still written with the cancelled items
// marked.
func (m *Monitor) RemoveVM(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vms[name]; !ok {
		return fmt.Errorf("monitor: no vm %q", name)
	}
	var vms []VMConfig
	for _, v := range m.plan.Config.VMs {
		if v.Name != name {
			vms = append(vms, v)
		}
	}
	m.plan.Config.VMs = vms
	m.removeVMLocked(name)
	return nil
}

// checkNeedsLocked refuses a VM lacking a path a bound scenario needs.
func (m *Monitor) checkNeedsLocked(v VMConfig) error {
	for _, s := range m.plan.Scenarios {
		if !s.Binds(v) {
			continue
		}
		needs := probeNeeds(s.Config.Probe.Kind)
		for _, d := range s.Diagnostics {
			for _, n := range diagNeeds(d.Kind) {
				needs = append(needs, needAt{key: n})
			}
		}
		for _, n := range needs {
			if vmPath(v, n.key) == "" {
				return fmt.Errorf("monitor: vm %q: scenario %q needs %q", v.Name, s.Config.Name, n.key)
			}
		}
	}
	return nil
}

func (m *Monitor) addVMLocked(v VMConfig) {
	m.vms[v.Name] = newVMRuntime(m, v)
	if m.opts.Exporter != nil {
		m.opts.Exporter.AddVM(v.Name)
	}
	m.emit(Event{Type: EventVM, VM: v.Name, State: "added"})
}

func (m *Monitor) removeVMLocked(name string) {
	rt := m.vms[name]
	delete(m.vms, name)
	for k, b := range m.bindings {
		if k.vm == name {
			b.stop()
			delete(m.bindings, k)
		}
	}
	rt.stop()
	if m.opts.Exporter != nil {
		m.opts.Exporter.RemoveVM(name)
	}
	m.emit(Event{Type: EventVM, VM: name, State: "removed"})
}

// rebindLocked makes the bindings match the plan: bindings whose scenario
// changed are restarted, new ones started, stale ones stopped.
func (m *Monitor) rebindLocked(old *Plan) {
	oldSc := map[string]*Scenario{}
	if old != nil {
		for _, s := range old.Scenarios {
			oldSc[s.Config.Name] = s
		}
	}
	want := map[bindKey]*Scenario{}
	for _, s := range m.plan.Scenarios {
		for name, rt := range m.vms {
			if s.Binds(rt.cfg) {
				want[bindKey{name, s.Config.Name}] = s
			}
		}
	}
	for k, b := range m.bindings {
		s, ok := want[k]
		if !ok || !sameScenario(b.sc, s) {
			b.stop()
			delete(m.bindings, k)
			continue
		}
		b.setScenario(s) // same definition; keep state
	}
	for k, s := range want {
		if _, ok := m.bindings[k]; !ok {
			m.bindings[k] = newBinding(m, m.vms[k.vm], s)
		}
	}
}

func sameScenario(a, b *Scenario) bool {
	if a.Every != b.Every || a.Timeout != b.Timeout || a.Cooldown != b.Cooldown || a.Failures != b.Failures {
		return false
	}
	ac, bc := a.Config, b.Config
	return ac.Probe.equal(bc.Probe) && slices.EqualFunc(ac.Diagnostics, bc.Diagnostics, DiagSpec.equal)
}

// VMs returns the names of the VMs the monitor holds, sorted.
func (m *Monitor) VMs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.vms))
	for n := range m.vms {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// RegionVerdict returns the latest region verdict of a VM (false when it
// has no region or none was judged yet).
func (m *Monitor) RegionVerdict(vm string) (hostreader.Verdict, bool) {
	m.mu.Lock()
	v, ok := m.vms[vm]
	m.mu.Unlock()
	if !ok {
		return hostreader.Verdict{}, false
	}
	return v.regionVerdict()
}

// ExportState updates Options.Exporter with every VM's latest region
// verdict: its state, ticks, boots and last tick. Call it before serving
// a scrape (probe results, incidents and panics are pushed as they
// happen). Without an Exporter it does nothing.
func (m *Monitor) ExportState() {
	e := m.opts.Exporter
	if e == nil {
		return
	}
	m.mu.Lock()
	vms := make([]*vmRuntime, 0, len(m.vms))
	for _, v := range m.vms {
		vms = append(vms, v)
	}
	m.mu.Unlock()
	for _, v := range vms {
		rv, ok := v.regionVerdict()
		if !ok {
			continue
		}
		e.SetVerdict(v.cfg.Name, rv.State.String())
		e.SetTick(v.cfg.Name, uint64(rv.Snapshot.Ticks), uint64(rv.Snapshot.Boots), rv.LastTick)
	}
}

// ScenarioState is the state of one scenario on one VM.
type ScenarioState struct {
	VM       string `json:"vm"`
	Scenario string `json:"scenario"`
	// Last is the last probe result (nil before the first run).
	Last *Result `json:"last,omitempty"`
	// Failures is the number of consecutive failures.
	Failures int `json:"failures"`
	// Runs is the number of probes run.
	Runs int64 `json:"runs"`
	// LastIncident is the last incident's time (zero if none) and id.
	LastIncident   time.Time `json:"last_incident,omitempty"`
	LastIncidentID string    `json:"last_incident_id,omitempty"`
	// Incidents counts the incidents raised.
	Incidents int `json:"incidents"`
}

// States returns the state of every binding, sorted by VM then scenario.
func (m *Monitor) States() []ScenarioState {
	m.mu.Lock()
	bs := make([]*binding, 0, len(m.bindings))
	for _, b := range m.bindings {
		bs = append(bs, b)
	}
	m.mu.Unlock()
	out := make([]ScenarioState, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.state())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].VM != out[j].VM {
			return out[i].VM < out[j].VM
		}
		return out[i].Scenario < out[j].Scenario
	})
	return out
}

// State returns one binding's state.
func (m *Monitor) State(vm, scenario string) (ScenarioState, bool) {
	m.mu.Lock()
	b, ok := m.bindings[bindKey{vm, scenario}]
	m.mu.Unlock()
	if !ok {
		return ScenarioState{}, false
	}
	return b.state(), true
}

// Stats are the monitor's own numbers.
type Stats struct {
	VMs, Bindings int
	// DroppedEvents counts events lost because nobody drained Events.
	DroppedEvents uint64
	// StartLag are percentiles of how late probes started relative to their
	// schedule (over the last 8192 runs).
	StartLagP50, StartLagP99, StartLagMax time.Duration
	LagSamples                            int
}

// Stats returns the monitor's own numbers.
func (m *Monitor) Stats() Stats {
	m.mu.Lock()
	st := Stats{VMs: len(m.vms), Bindings: len(m.bindings)}
	m.mu.Unlock()
	m.lagMu.Lock()
	lags := append([]time.Duration(nil), m.lags...)
	st.DroppedEvents = m.dropped
	m.lagMu.Unlock()
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	st.LagSamples = len(lags)
	if n := len(lags); n > 0 {
		st.StartLagP50 = lags[n/2]
		st.StartLagP99 = lags[(n*99)/100]
		st.StartLagMax = lags[n-1]
	}
	return st
}

func (m *Monitor) recordLag(d time.Duration) {
	m.lagMu.Lock()
	if len(m.lags) < cap(m.lags) {
		m.lags = append(m.lags, d)
	} else {
		m.lags[m.lagPos] = d
		m.lagPos = (m.lagPos + 1) % len(m.lags)
	}
	m.lagMu.Unlock()
}

// Close stops every probe and VM connection, waits for running incidents
// to write their bundles, and releases everything.
func (m *Monitor) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for k, b := range m.bindings {
		b.stop()
		delete(m.bindings, k)
	}
	vms := m.vms
	m.vms = map[string]*vmRuntime{}
	m.mu.Unlock()
	for _, rt := range vms {
		// Diagnostics in progress end now (a SysRq capture cut short sets
		// the loglevel back over the connections, closed only by stop);
		// their bundles are still written.
		rt.diagCancel()
	}
	m.incWG.Wait()
	m.syncMetrics(true)
	for _, rt := range vms {
		rt.stop()
	}
	m.sched.close()
	m.cancel()
	m.watcher.Close()
	var err error
	m.sinkMu.Lock()
	sinks := m.sinks
	m.sinks = nil
	m.sinkMu.Unlock()
	for _, s := range sinks {
		if e := s.Close(); e != nil && err == nil {
			err = e
		}
	}
	if m.ownWork {
		os.RemoveAll(m.opts.Workdir)
	}
	return err
}

// phase is a binding's fixed offset within its period: a hash of the VM
// and scenario names, so 1,000 VMs do not fire in the same millisecond and
// a reload does not move an unchanged binding. When every is a multiple
// of slotGrid with at least minSlots slots the phase is one of those
// slots (see slotGrid); shorter periods keep their bindings apart.
func phase(vm, scenario string, every time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(vm))
	h.Write([]byte{0})
	h.Write([]byte(scenario))
	if every%slotGrid == 0 && every >= minSlots*slotGrid {
		return time.Duration(h.Sum64()%uint64(every/slotGrid)) * slotGrid
	}
	return time.Duration(h.Sum64() % uint64(every))
}
