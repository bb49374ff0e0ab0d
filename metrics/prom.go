package metrics

import (
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Exporter is a Prometheus collector of the monitor's per-VM and
// per-scenario state. The monitor feeds it (SetMemory, SetVerdict,
// SetTick, AddPanic, ProbeResult, Incident, ...) and serves Handler on its
// --metrics-listen address. Values are computed at scrape time from the
// last reports, so "seconds since the last tick" is current when scraped.
// Safe for concurrent use.
//
// Metrics (namespace acpidiag):
//
//	acpidiag_vm_memory_total_bytes{vm,source}          gauge   guest RAM (balloon) or configured RAM (host view)
//	acpidiag_vm_memory_available_bytes{vm,source}      gauge   guest MemAvailable, or RAM minus QEMU's RSS
//	acpidiag_vm_memory_used_bytes{vm,source}           gauge   total minus available
//	acpidiag_vm_balloon_last_update_timestamp_seconds{vm}  gauge  guest's last balloon statistics
//	acpidiag_vm_verdict{vm,state}                      gauge   1 for the current verdict, 0 for earlier ones
//	acpidiag_vm_last_tick_timestamp_seconds{vm}        gauge   host time of the last region tick
//	acpidiag_vm_seconds_since_last_tick{vm}            gauge   scrape time minus the last tick
//	acpidiag_vm_ticks{vm}                              gauge   ticks since the guest booted
//	acpidiag_vm_boots{vm}                              gauge   the region's boot count
//	acpidiag_vm_panics_total{vm}                       counter panics seen by the host
//	acpidiag_scenario_probe_success{scenario,vm}       gauge   1 when the last probe passed
//	acpidiag_scenario_probe_duration_seconds{scenario,vm} gauge duration of the last probe
//	acpidiag_scenario_probes_total{scenario,vm,result} counter probes run, by result (pass|fail)
//	acpidiag_scenario_incidents_total{scenario,vm}     counter incidents opened
//
// source is "balloon" (the guest's own numbers) or "host" (the host's
// view, for guests without the virtio_balloon driver).
type Exporter struct {
	reg *prometheus.Registry
	now func() time.Time

	mu        sync.Mutex
	vms       map[string]*vmMetrics
	scenarios map[[2]string]*scenarioMetrics
}

type vmMetrics struct {
	mem          MemorySample
	hasMem       bool
	balloon      time.Time
	verdict      string
	verdicts     map[string]bool
	lastTick     time.Time
	ticks, boots uint64
	hasTick      bool
	panics       uint64
}

type scenarioMetrics struct {
	hasProbe   bool
	ok         bool
	duration   time.Duration
	pass, fail uint64
	incidents  uint64
}

var (
	descMemTotal  = prometheus.NewDesc("acpidiag_vm_memory_total_bytes", "Memory of the VM: the guest's total (balloon statistics) or the configured RAM (host view).", []string{"vm", "source"}, nil)
	descMemAvail  = prometheus.NewDesc("acpidiag_vm_memory_available_bytes", "Memory available in the VM: the guest's MemAvailable (balloon) or RAM minus the QEMU process's resident set (host view).", []string{"vm", "source"}, nil)
	descMemUsed   = prometheus.NewDesc("acpidiag_vm_memory_used_bytes", "Memory used in the VM: total minus available.", []string{"vm", "source"}, nil)
	descBalloon   = prometheus.NewDesc("acpidiag_vm_balloon_last_update_timestamp_seconds", "When the guest last reported balloon statistics (QEMU's last-update).", []string{"vm"}, nil)
	descVerdict   = prometheus.NewDesc("acpidiag_vm_verdict", "The VM's health verdict: 1 for the current state, 0 for states it had before.", []string{"vm", "state"}, nil)
	descLastTick  = prometheus.NewDesc("acpidiag_vm_last_tick_timestamp_seconds", "Host time of the guest's last tick in the diagnostic region.", []string{"vm"}, nil)
	descSince     = prometheus.NewDesc("acpidiag_vm_seconds_since_last_tick", "Seconds from the guest's last tick to this scrape.", []string{"vm"}, nil)
	descTicks     = prometheus.NewDesc("acpidiag_vm_ticks", "Ticks since the guest booted (the region's tick count).", []string{"vm"}, nil)
	descBoots     = prometheus.NewDesc("acpidiag_vm_boots", "The guest's boot count (the region's boots word).", []string{"vm"}, nil)
	descPanics    = prometheus.NewDesc("acpidiag_vm_panics_total", "Guest panics seen by the host (pvpanic or a new ERST record).", []string{"vm"}, nil)
	descProbeOK   = prometheus.NewDesc("acpidiag_scenario_probe_success", "1 when the scenario's last probe on the VM passed, 0 when it failed.", []string{"scenario", "vm"}, nil)
	descProbeDur  = prometheus.NewDesc("acpidiag_scenario_probe_duration_seconds", "Duration of the scenario's last probe on the VM.", []string{"scenario", "vm"}, nil)
	descProbes    = prometheus.NewDesc("acpidiag_scenario_probes_total", "Probes run, by result (pass or fail).", []string{"scenario", "vm", "result"}, nil)
	descIncidents = prometheus.NewDesc("acpidiag_scenario_incidents_total", "Incidents the scenario opened on the VM.", []string{"scenario", "vm"}, nil)
)

// NewExporter returns an exporter registered in its own registry (with the
// Go and process collectors). now is the scrape clock (nil: time.Now).
func NewExporter(now func() time.Time) *Exporter {
	if now == nil {
		now = time.Now
	}
	e := &Exporter{reg: prometheus.NewRegistry(), now: now, vms: map[string]*vmMetrics{}, scenarios: map[[2]string]*scenarioMetrics{}}
	e.reg.MustRegister(e, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return e
}

// Registry returns the exporter's registry (to register more collectors).
func (e *Exporter) Registry() *prometheus.Registry { return e.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{Registry: e.reg})
}

func (e *Exporter) vm(name string) *vmMetrics {
	v, ok := e.vms[name]
	if !ok {
		v = &vmMetrics{verdicts: map[string]bool{}}
		e.vms[name] = v
	}
	return v
}

func (e *Exporter) scenario(scenario, vm string) *scenarioMetrics {
	k := [2]string{scenario, vm}
	s, ok := e.scenarios[k]
	if !ok {
		s = &scenarioMetrics{}
		e.scenarios[k] = s
	}
	return s
}

// AddVM makes a VM known before anything is reported about it, so its
// panics counter is scraped (as 0) from the start.
func (e *Exporter) AddVM(vm string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.vm(vm)
}

// SetMemory records a VM's latest memory sample.
func (e *Exporter) SetMemory(vm string, s MemorySample) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v := e.vm(vm)
	v.mem, v.hasMem = s, true
}

// SetBalloonUpdate records the guest's balloon last-update.
func (e *Exporter) SetBalloonUpdate(vm string, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.vm(vm).balloon = t
}

// SetVerdict records a VM's current verdict state (e.g. "alive", "stale").
func (e *Exporter) SetVerdict(vm, state string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v := e.vm(vm)
	v.verdict = state
	v.verdicts[state] = true
}

// SetTick records the region's tick words and the host time of the last
// tick.
func (e *Exporter) SetTick(vm string, ticks, boots uint64, lastTick time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v := e.vm(vm)
	v.ticks, v.boots, v.lastTick, v.hasTick = ticks, boots, lastTick, true
}

// AddPanic counts a panic of the VM.
func (e *Exporter) AddPanic(vm string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.vm(vm).panics++
}

// ProbeResult records one probe run of a scenario on a VM.
func (e *Exporter) ProbeResult(scenario, vm string, ok bool, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.scenario(scenario, vm)
	s.hasProbe, s.ok, s.duration = true, ok, d
	if ok {
		s.pass++
	} else {
		s.fail++
	}
}

// Incident counts an incident a scenario opened on a VM.
func (e *Exporter) Incident(scenario, vm string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.scenario(scenario, vm).incidents++
}

// RemoveVM forgets a VM and its scenario series (the VM left the
// configuration).
func (e *Exporter) RemoveVM(vm string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.vms, vm)
	for k := range e.scenarios {
		if k[1] == vm {
			delete(e.scenarios, k)
		}
	}
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMemTotal, descMemAvail, descMemUsed, descBalloon, descVerdict, descLastTick, descSince,
		descTicks, descBoots, descPanics, descProbeOK, descProbeDur, descProbes, descIncidents} {
		ch <- d
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Collect implements prometheus.Collector.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for name, v := range e.vms {
		if v.hasMem {
			src := v.mem.Source
			if src == "" {
				src = SourceBalloon
			}
			gauge(descMemTotal, float64(v.mem.TotalBytes), name, src)
			gauge(descMemAvail, float64(v.mem.AvailableBytes), name, src)
			gauge(descMemUsed, float64(v.mem.TotalBytes-min(v.mem.AvailableBytes, v.mem.TotalBytes)), name, src)
		}
		if !v.balloon.IsZero() {
			gauge(descBalloon, unixSeconds(v.balloon), name)
		}
		states := make([]string, 0, len(v.verdicts))
		for s := range v.verdicts {
			states = append(states, s)
		}
		sort.Strings(states)
		for _, s := range states {
			val := 0.0
			if s == v.verdict {
				val = 1
			}
			gauge(descVerdict, val, name, s)
		}
		if v.hasTick {
			gauge(descTicks, float64(v.ticks), name)
			gauge(descBoots, float64(v.boots), name)
			if !v.lastTick.IsZero() {
				gauge(descLastTick, unixSeconds(v.lastTick), name)
				gauge(descSince, max(now.Sub(v.lastTick).Seconds(), 0), name)
			}
		}
		counter(descPanics, float64(v.panics), name)
	}
	for k, s := range e.scenarios {
		if s.hasProbe {
			ok := 0.0
			if s.ok {
				ok = 1
			}
			gauge(descProbeOK, ok, k[0], k[1])
			gauge(descProbeDur, s.duration.Seconds(), k[0], k[1])
		}
		counter(descProbes, float64(s.pass), k[0], k[1], "pass")
		counter(descProbes, float64(s.fail), k[0], k[1], "fail")
		counter(descIncidents, float64(s.incidents), k[0], k[1])
	}
}
