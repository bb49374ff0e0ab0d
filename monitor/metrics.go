package monitor

import (
	"context"
	"net/http"
	"path/filepath"
	"reflect"
	"time"

	"github.com/acpidiag/acpidiag/metrics"
	"github.com/acpidiag/acpidiag/qmp"
)

// metricsRun is the running metrics pipeline (plan with the "azure" tuple
// and metrics): its configuration and how to stop it.
type metricsRun struct {
	cfg    metrics.Config
	cancel context.CancelFunc
	done   chan struct{}
}

// syncMetrics starts, restarts or stops the metrics pipeline to match the
// current plan's "azure" tuple. Called by Apply and Close (stop=true).
func (m *Monitor) syncMetrics(stop bool) {
	m.metricsMu.Lock() // one reload at a time starts or stops the pipeline
	defer m.metricsMu.Unlock()
	m.mu.Lock()
	var cfg metrics.Config
	if m.plan != nil && !stop {
		cfg = m.plan.Azure
	}
	cur := m.metrics
	if cur != nil && cfg.Enabled() && reflect.DeepEqual(cur.cfg, cfg) {
		m.mu.Unlock()
		return // unchanged: the pipeline keeps its windows
	}
	m.metrics = nil
	m.mu.Unlock()
	if cur != nil {
		cur.cancel()
		<-cur.done
	}
	if !cfg.Enabled() {
		return
	}
	p, err := metrics.NewPipeline(cfg, metrics.PipelineOptions{
		QueueDir: filepath.Join(m.opts.Workdir, "metrics-queue"),
		Exporter: m.opts.Exporter,
		Warn:     func(s string) { m.emit(Event{Type: EventWarning, Detail: s}) },
	})
	if err != nil {
		m.emit(Event{Type: EventError, Detail: "metrics: " + err.Error()})
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	run := &metricsRun{cfg: cfg, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.metrics = run
	m.mu.Unlock()
	go func() {
		defer close(run.done)
		stopped := make(chan struct{})
		go func() { defer close(stopped); m.feedPipeline(ctx, p) }()
		p.Run(ctx)
		<-stopped
	}()
}

// pipeVMInfo is what the pipeline needs of a VM's QEMU, asked once per
// QMP session: the QEMU process (host view) and the guest's RAM.
type pipeVMInfo struct {
	q   *qmp.Client
	pid int
	ram uint64
}

// feedPipeline keeps the pipeline's VM set equal to the monitor's VMs
// that have a QMP session, every second, until ctx ends.
func (m *Monitor) feedPipeline(ctx context.Context, p *metrics.Pipeline) {
	known := map[string]pipeVMInfo{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		m.mu.Lock()
		vms := make([]*vmRuntime, 0, len(m.vms))
		for _, v := range m.vms {
			if v.cfg.QMP != "" {
				vms = append(vms, v)
			}
		}
		ids := m.azureIdentitiesLocked()
		m.mu.Unlock()
		set := make([]metrics.PipelineVM, 0, len(vms))
		seen := map[string]bool{}
		for _, v := range vms {
			q := v.qmp()
			if q == nil {
				continue
			}
			info, ok := known[v.cfg.Name]
			if !ok || info.q != q {
				info = pipeVMInfo{q: q}
				info.pid, info.ram = qemuProcess(ctx, q)
				known[v.cfg.Name] = info
			}
			seen[v.cfg.Name] = true
			set = append(set, metrics.PipelineVM{Name: v.cfg.Name, Azure: ids[v.cfg.Name], QMP: q, Pid: info.pid, RAMBytes: info.ram})
		}
		for n := range known {
			if !seen[n] {
				delete(known, n)
			}
		}
		p.SetVMs(set)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// azureIdentitiesLocked returns each VM's resource_id, host and
// deployment_id from the current plan: a reload that changes only these
// leaves the VM's connections alone (VMConfig.equal ignores them), so the
// running vmRuntime's copy may be older.
func (m *Monitor) azureIdentitiesLocked() map[string]metrics.VMAzure {
	ids := make(map[string]metrics.VMAzure, len(m.plan.Config.VMs))
	for _, v := range m.plan.Config.VMs {
		ids[v.Name] = v.Azure()
	}
	return ids
}

// qemuProcess asks QEMU for its process id (the thread group of a vCPU
// thread) and the guest's RAM; zero when QEMU does not say.
func qemuProcess(ctx context.Context, q *qmp.Client) (pid int, ram uint64) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pid, _ = qemuPID(ctx, q, "/proc")
	var sz struct {
		Base uint64 `json:"base-memory"`
	}
	if q.Execute(ctx, "query-memory-size-summary", nil, &sz) == nil {
		ram = sz.Base
	}
	return pid, ram
}

// MetricsHandler serves Options.Exporter in the Prometheus exposition
// formats, refreshing the VMs' region verdicts (ExportState) before each
// scrape. It is what `diagmon run --metrics-listen` serves on /metrics.
// Without an Exporter it answers 404.
func (m *Monitor) MetricsHandler() http.Handler {
	e := m.opts.Exporter
	if e == nil {
		return http.NotFoundHandler()
	}
	h := e.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.ExportState()
		h.ServeHTTP(w, r)
	})
}
