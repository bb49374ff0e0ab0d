package metrics

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// PipelineVM is one VM the pipeline samples.
type PipelineVM struct {
	// Name is the VM's name in the monitor (the Prometheus label, and the
	// default resource id and host).
	Name string
	// Azure holds the per-VM resource_id, host and deployment_id.
	Azure VMAzure
	// QMP is the VM's QMP session (nil: host view only).
	QMP QMPExecutor
	// Pid is the QEMU process (host view); RAMBytes the VM's RAM.
	Pid      int
	RAMBytes uint64
}

// PipelineOptions tune a Pipeline.
type PipelineOptions struct {
	// QueueDir holds the on-disk queue (required); QueueMax bounds it
	// (default 10,000 batches).
	QueueDir string
	QueueMax int
	// Exporter, when set, receives every VM's latest sample.
	Exporter *Exporter
	// Warn receives one-time warnings (a VM falling back to the host view)
	// and upload failures.
	Warn func(string)
	// Workers is the Uploader's parallelism (default 4).
	Workers int
	// Sample and Transfer override the configured intervals (tests; the
	// configuration itself cannot go below LAD's minimums).
	Sample, Transfer time.Duration
	// Now is the clock (default time.Now); Sink options tune the table
	// client.
	Now  func() time.Time
	Sink SinkOptions
}

// Pipeline samples every VM at the sample interval (balloon statistics,
// or the host view), aggregates LAD windows at the transfer interval,
// queues each VM's closed window on disk and uploads the queue to Azure
// Table storage. It is what the monitor runs when its configuration has
// the "azure" tuple with metrics.
type Pipeline struct {
	opts     PipelineOptions
	sample   time.Duration
	transfer time.Duration
	Uploader *Uploader

	mu  sync.Mutex
	vms map[string]*pipeVM
}

type pipeVM struct {
	vm      PipelineVM
	sampler *VMSampler
	agg     *VMAggregator
	polling bool
	lastUpd time.Time
	stale   uint64
}

// NewPipeline validates cfg at the current time and prepares the sink and
// queue.
func NewPipeline(cfg Config, opts PipelineOptions) (*Pipeline, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := cfg.Validate(opts.Now()); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, &ConfigError{Path: "azure.diagnostics.metrics", Msg: "metrics are not configured"}
	}
	if opts.QueueDir == "" {
		return nil, fmt.Errorf("metrics: pipeline: QueueDir is required")
	}
	if opts.QueueMax == 0 {
		opts.QueueMax = 10000
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	p := &Pipeline{opts: opts, sample: cfg.Diagnostics.Metrics.Sample(), transfer: cfg.Diagnostics.Metrics.Transfer(), vms: map[string]*pipeVM{}}
	if opts.Sample != 0 {
		p.sample = opts.Sample
	}
	if opts.Transfer != 0 {
		p.transfer = opts.Transfer
	}
	if _, err := NewVMAggregator(p.transfer); err != nil {
		return nil, err
	}
	q, err := OpenQueue(opts.QueueDir, opts.QueueMax)
	if err != nil {
		return nil, err
	}
	so := opts.Sink
	if so.Now == nil {
		so.Now = opts.Now
	}
	sink, err := NewTableSink(*cfg.Diagnostics, so)
	if err != nil {
		return nil, err
	}
	p.Uploader = &Uploader{Queue: q, Sink: sink, Workers: opts.Workers, OnError: func(err error) { p.warn(err.Error()) }}
	return p, nil
}

func (p *Pipeline) warn(s string) {
	if p.opts.Warn != nil {
		p.opts.Warn(s)
	}
}

// pollInterval is the balloon polling interval: a fifth of the sample
// interval, at least 1 s, so each sample finds statistics at most that old.
func (p *Pipeline) pollInterval() time.Duration {
	return max(time.Second, (p.sample / 5).Truncate(time.Second))
}

// SetVMs replaces the set of sampled VMs; VMs that stay keep their open
// windows.
func (p *Pipeline) SetVMs(vms []PipelineVM) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := map[string]bool{}
	for _, vm := range vms {
		keep[vm.Name] = true
		if cur, ok := p.vms[vm.Name]; ok && cur.vm.QMP == vm.QMP && cur.vm.Pid == vm.Pid {
			cur.vm = vm
			continue
		}
		agg, _ := NewVMAggregator(p.transfer) // period checked in NewPipeline
		p.vms[vm.Name] = &pipeVM{vm: vm, agg: agg,
			sampler: &VMSampler{QMP: vm.QMP, Pid: vm.Pid, TotalBytes: vm.RAMBytes, Warn: func(s string) { p.warn(vm.Name + ": " + s) }}}
	}
	for name := range p.vms {
		if !keep[name] {
			delete(p.vms, name)
			if p.opts.Exporter != nil {
				p.opts.Exporter.RemoveVM(name)
			}
		}
	}
}

// SampleOnce samples every VM at host time now, adds the samples to their
// windows, and queues the windows that closed. It returns how many windows
// were queued.
func (p *Pipeline) SampleOnce(ctx context.Context, now time.Time) (int, error) {
	p.mu.Lock()
	vms := make([]*pipeVM, 0, len(p.vms))
	cfgs := make([]PipelineVM, 0, len(p.vms)) // SetVMs may update v.vm meanwhile
	for _, v := range p.vms {
		vms, cfgs = append(vms, v), append(cfgs, v.vm)
	}
	p.mu.Unlock()
	var names []string
	var ids []Identity
	var ws []Window
	for i, v := range vms {
		vc := cfgs[i]
		if vc.QMP != nil && v.sampler.QOMPath == "" && !v.polling {
			v.polling = true // look once; a VM without a balloon gets the host view
			if path, found, err := FindBalloon(ctx, vc.QMP); err == nil && found {
				if err := EnableBalloonStats(ctx, vc.QMP, path, p.pollInterval()); err == nil {
					v.sampler.QOMPath = path
				}
			}
		}
		smp, st, err := v.sampler.Sample(ctx, now)
		if err == nil && smp.Source == SourceBalloon {
			// One sample per tick, timed at the tick (LAD samples on its
			// own clock); statistics older than a few polls are a stall.
			if now.Sub(st.LastUpdate) > 3*p.pollInterval()+time.Second {
				v.stale++
				err = fmt.Errorf("balloon statistics from %s are stale", st.LastUpdate.Format(time.RFC3339))
			}
			smp.Time = now
			if p.opts.Exporter != nil {
				p.opts.Exporter.SetBalloonUpdate(vc.Name, st.LastUpdate)
			}
		}
		if err == nil {
			if p.opts.Exporter != nil {
				p.opts.Exporter.SetMemory(vc.Name, smp)
			}
			if w, done := v.agg.Add(smp); done {
				names, ids, ws = append(names, vc.Name), append(ids, vc.Azure.Identity(vc.Name)), append(ws, w)
			}
		}
		if w, done := v.agg.Flush(now); done {
			names, ids, ws = append(names, vc.Name), append(ids, vc.Azure.Identity(vc.Name)), append(ws, w)
		}
	}
	if len(ws) == 0 {
		return 0, nil
	}
	return len(ws), p.Uploader.EnqueueAll(names, ids, ws)
}

// Run samples every sample interval (aligned to it) and uploads the queue
// every transfer interval, until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	up, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); p.Uploader.Run(up, p.transfer) }()
	defer func() { cancel(); <-done }()
	for {
		now := p.opts.Now()
		next := now.Truncate(p.sample).Add(p.sample)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(next.Sub(now)):
		}
		if _, err := p.SampleOnce(ctx, p.opts.Now()); err != nil {
			p.warn(err.Error())
		}
	}
}
