package monitor

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/qmp"
)

// TimelineEntry is one verdict of a VM's channel (region, QMP events, ERST,
// connection changes), kept for bundles.
type TimelineEntry struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source"` // region, qmp, erst, monitor
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"` // escaped
}

const timelineCap = 256

// vmRuntime is one VM while the monitor runs: its connections (QMP,
// console, region) and its verdict timeline.
type vmRuntime struct {
	cfg    VMConfig
	m      *Monitor
	ctx    context.Context // the connections'
	cancel context.CancelFunc
	done   chan struct{}
	// diagCtx ends the VM's diagnostics. It is cancelled before ctx: the
	// diagnostics in progress end first, and one cut short in a SysRq
	// capture sets the guest's console loglevel back over the connections
	// that are still open (stop).
	diagCtx    context.Context
	diagCancel context.CancelFunc

	// conMu serialises the users of the console that type into it (the
	// console probe, SysRq captures).
	conMu sync.Mutex

	mu        sync.Mutex
	sup       *qemuhook.Supervisor
	ownQMP    *qmp.Client
	ownCon    *qemuhook.Console
	watched   bool // region added to the monitor's shared watcher
	lastRV    *hostreader.Verdict
	timeline  []TimelineEntry
	erstKnown map[uint64]bool // ERST records present when the VM was added
	lastErr   string
	diagN     int           // diagnostics in progress (beginDiag)
	diagIdle  chan struct{} // closed when diagN drops to 0, for stop
}

// diagDrain bounds how long stop waits for the diagnostics in progress to
// end (they were cancelled: setting the loglevel back takes at most 5 s).
const diagDrain = 10 * time.Second

func newVMRuntime(m *Monitor, cfg VMConfig) *vmRuntime {
	ctx, cancel := context.WithCancel(m.ctx)
	dctx, dcancel := context.WithCancel(m.ctx)
	v := &vmRuntime{cfg: cfg, m: m, ctx: ctx, cancel: cancel, diagCtx: dctx, diagCancel: dcancel, done: make(chan struct{})}
	v.erstKnown = erstIDs(cfg.ERST)
	go v.run()
	return v
}

func erstIDs(path string) map[uint64]bool {
	ids := map[uint64]bool{}
	if path == "" {
		return ids
	}
	st, err := hostreader.ReadERSTFile(path)
	if err != nil {
		return ids
	}
	for _, r := range st.Records {
		ids[r.ID] = true
	}
	return ids
}

// stop ends the VM's diagnostics, waits (at most diagDrain) for those in
// progress to finish, then closes its connections and waits for them.
func (v *vmRuntime) stop() {
	v.diagCancel()
	v.mu.Lock()
	var idle chan struct{}
	if v.diagN > 0 {
		if v.diagIdle == nil {
			v.diagIdle = make(chan struct{})
		}
		idle = v.diagIdle
	}
	v.mu.Unlock()
	if idle != nil {
		t := time.NewTimer(diagDrain)
		select {
		case <-idle:
		case <-t.C:
		}
		t.Stop()
	}
	v.cancel()
	<-v.done
}

// beginDiag counts a diagnostic run that stop waits for, and returns its
// context: ctx, also cancelled when the VM's diagnostics end. end must be
// called when the run no longer needs the connections.
func (v *vmRuntime) beginDiag(ctx context.Context) (rctx context.Context, end func()) {
	rctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(v.diagCtx, cancel)
	v.mu.Lock()
	v.diagN++
	v.mu.Unlock()
	return rctx, func() {
		unhook()
		cancel()
		v.mu.Lock()
		v.diagN--
		if v.diagN == 0 && v.diagIdle != nil {
			close(v.diagIdle)
			v.diagIdle = nil
		}
		v.mu.Unlock()
	}
}

func (v *vmRuntime) record(e TimelineEntry) {
	if ex := v.m.opts.Exporter; ex != nil && (e.State == string(qemuhook.StatePanicked) || e.State == "GUEST_PANICKED") {
		ex.AddPanic(v.cfg.Name)
	}
	v.mu.Lock()
	if len(v.timeline) >= timelineCap {
		copy(v.timeline, v.timeline[1:])
		v.timeline = v.timeline[:len(v.timeline)-1]
	}
	v.timeline = append(v.timeline, e)
	v.mu.Unlock()
}

// note records a monitor-side connection problem once per distinct text.
func (v *vmRuntime) note(state, reason string) {
	v.mu.Lock()
	same := v.lastErr == state+reason
	v.lastErr = state + reason
	v.mu.Unlock()
	if !same {
		v.record(TimelineEntry{Time: time.Now(), Source: "monitor", State: state, Reason: reason})
	}
}

func (v *vmRuntime) timelineCopy() []TimelineEntry {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]TimelineEntry(nil), v.timeline...)
}

// qmp returns the VM's QMP session, nil when there is none (yet).
func (v *vmRuntime) qmp() *qmp.Client {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.sup != nil {
		return v.sup.QMP()
	}
	return v.ownQMP
}

// console returns the VM's serial console, nil when there is none (yet).
func (v *vmRuntime) console() *qemuhook.Console {
	v.mu.Lock()
	sup, con := v.sup, v.ownCon
	v.mu.Unlock()
	if sup != nil {
		return sup.Console()
	}
	return con
}

// regionVerdict returns the latest region verdict.
func (v *vmRuntime) regionVerdict() (hostreader.Verdict, bool) {
	v.mu.Lock()
	rv, watched := v.lastRV, v.watched
	v.mu.Unlock()
	if rv != nil {
		return *rv, true
	}
	if watched {
		return v.m.watcher.Verdict(v.cfg.Name)
	}
	return hostreader.Verdict{}, false
}

// retryWait sleeps for the backoff or until the VM stops.
func (v *vmRuntime) retryWait(d *time.Duration) bool {
	t := time.NewTimer(*d)
	defer t.Stop()
	if *d < 5*time.Second {
		*d *= 2
	}
	select {
	case <-v.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (v *vmRuntime) run() {
	defer close(v.done)
	var wg sync.WaitGroup
	c := v.cfg
	switch {
	case c.QMP != "" && c.Region != "":
		wg.Add(1)
		go func() { defer wg.Done(); v.attachLoop() }()
	default:
		if c.QMP != "" {
			wg.Add(1)
			go func() { defer wg.Done(); v.qmpLoop() }()
		}
		if c.Serial != "" {
			wg.Add(1)
			go func() { defer wg.Done(); v.consoleLoop() }()
		}
		if c.Region != "" {
			wg.Add(1)
			go func() { defer wg.Done(); v.regionLoop() }()
		}
	}
	wg.Wait()
}

// attachLoop supervises a VM with QMP and a region through qemuhook.Attach
// with Reconnect: QEMU restarts are re-dialled by qemuhook. Until the
// sockets exist it retries.
func (v *vmRuntime) attachLoop() {
	c := v.cfg
	backoff := 250 * time.Millisecond
	for v.ctx.Err() == nil {
		sup, err := qemuhook.Attach(v.ctx, qemuhook.AttachConfig{
			QMPSocket: c.QMP, RegionPath: c.Region, RegionOffset: c.RegionOffset,
			ERSTPath: c.ERST, SerialSocket: c.Serial, Reconnect: true,
		}, qemuhook.SupervisorOptions{QMP: qmp.Options{CommandTimeout: 30 * time.Second}})
		if err != nil {
			v.note("waiting", "attach: "+err.Error())
			if !v.retryWait(&backoff) {
				return
			}
			continue
		}
		v.note("attached", "QMP "+c.QMP)
		v.mu.Lock()
		v.sup = sup
		v.mu.Unlock()
		for vd := range sup.Verdicts() {
			if vd.Region != nil {
				rv := *vd.Region
				v.mu.Lock()
				v.lastRV = &rv
				v.mu.Unlock()
			}
			v.record(TimelineEntry{Time: vd.Time, Source: string(vd.Source), State: string(vd.State), Reason: vd.Reason})
		}
		sup.Close()
		v.mu.Lock()
		v.sup = nil
		v.mu.Unlock()
		if !v.retryWait(&backoff) {
			return
		}
	}
}

// qmpLoop keeps a QMP session for a VM without a region.
func (v *vmRuntime) qmpLoop() {
	backoff := 250 * time.Millisecond
	for v.ctx.Err() == nil {
		q, err := qmp.Dial(v.ctx, v.cfg.QMP, qmp.Options{AutoReconnect: true, CommandTimeout: 30 * time.Second})
		if err != nil {
			v.note("waiting", "QMP: "+err.Error())
			if !v.retryWait(&backoff) {
				return
			}
			continue
		}
		v.note("connected", "QMP "+v.cfg.QMP)
		v.mu.Lock()
		v.ownQMP = q
		v.mu.Unlock()
		go func() {
			for ev := range q.Events() {
				v.record(TimelineEntry{Time: ev.Time, Source: "qmp", State: ev.Name, Reason: ev.Reason})
			}
		}()
		<-v.ctx.Done()
		q.Close()
		return
	}
}

// consoleLoop keeps the serial console attached (re-dialled when it ends)
// for a VM without the supervisor.
func (v *vmRuntime) consoleLoop() {
	backoff := 250 * time.Millisecond
	for v.ctx.Err() == nil {
		dctx, cancel := context.WithTimeout(v.ctx, 5*time.Second)
		con, err := qemuhook.DialConsole(dctx, v.cfg.Serial, 0)
		cancel()
		if err != nil {
			v.note("waiting", "console: "+err.Error())
			if !v.retryWait(&backoff) {
				return
			}
			continue
		}
		backoff = 250 * time.Millisecond
		v.mu.Lock()
		v.ownCon = con
		v.mu.Unlock()
		select {
		case <-v.ctx.Done():
		case <-con.Done():
			v.note("console", "console stream ended; re-dialling")
		}
		con.Close()
		v.mu.Lock()
		v.ownCon = nil
		v.mu.Unlock()
	}
}

// regionLoop adds the region file to the monitor's shared watcher once it
// exists.
func (v *vmRuntime) regionLoop() {
	backoff := 250 * time.Millisecond
	for v.ctx.Err() == nil {
		r, err := hostreader.OpenRegion(v.cfg.Region, hostreader.OpenOptions{Offset: v.cfg.RegionOffset, Writable: true})
		if err == nil {
			err = v.m.watcher.AddRegion(v.cfg.Name, r)
			if err != nil {
				r.Close()
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				v.note("waiting", "region: "+err.Error())
			} else {
				v.note("error", "region: "+err.Error())
			}
			if !v.retryWait(&backoff) {
				return
			}
			continue
		}
		v.mu.Lock()
		v.watched = true
		v.mu.Unlock()
		<-v.ctx.Done()
		v.mu.Lock()
		v.watched = false
		v.mu.Unlock()
		_ = v.m.watcher.Remove(v.cfg.Name)
		return
	}
}
