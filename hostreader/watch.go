package hostreader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Change is one verdict change of a watched region. Prev is the previous
// state (StateNone for the region's first verdict). A change is emitted
// when the state changes or when an application slot changes state.
type Change struct {
	Name    string
	Verdict Verdict
	Prev    State
}

// WatchOptions configures a Watcher. The zero value polls every second
// without stamping.
type WatchOptions struct {
	// Interval between poll rounds (default 1 s).
	Interval time.Duration
	// Stamp writes the host time into every region at each round (regions
	// added by path are then mapped read-write). Set Verdict.StampInterval
	// to Interval (done automatically when it is zero).
	Stamp bool
	// Verdict tunes the verdicts (K, stamp interval, default period).
	Verdict VerdictConfig
	// TornRecheck is how long a round waits before re-reading the regions
	// whose snapshot was torn, before reporting them torn (default 2 ms).
	TornRecheck time.Duration
	// Buffer is the capacity of the Changes channel (default 64). When it
	// is full the watcher waits for the consumer.
	Buffer int
	// Now is the clock (default time.Now); tests may replace it.
	Now func() time.Time
}

// ErrWatcherClosed is returned by the methods of a stopped Watcher.
var ErrWatcherClosed = errors.New("hostreader: watcher is closed")

// watchEntry is one watched region. Its mutex guards everything below it;
// a poll round holds it for one region at a time, so a ReportPanic,
// Verdict or Refresh on one region never waits for the whole round.
type watchEntry struct {
	mu      sync.Mutex
	name    string
	region  *Region
	tracker Tracker
	last    Verdict
	emitted bool
	removed bool
	// tornRounds counts consecutive rounds whose snapshot stayed torn after
	// the recheck. A host that deschedules the vCPU in the middle of a tick
	// tears one round (seen under load with 10-25 ms polls); only a second
	// torn round in a row is reported.
	tornRounds int
}

// Watcher follows regions, stamps host time into them (optional) and
// emits verdict changes. One goroutine polls every region each interval;
// it stops when the context given to NewWatcher is done or Close is
// called, and then closes every region and the Changes channel.
//
// Locking: mu guards only the set of regions (entries, byName, closed);
// each region has its own lock (watchEntry.mu), and a round holds mu only
// to copy the set, never while it stamps, reads or sleeps for the torn
// recheck. ReportPanic, Verdict and Refresh therefore wait at most for
// the one region a round is reading, not for the round.
type Watcher struct {
	opts    WatchOptions
	changes chan Change
	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once

	roundMu sync.Mutex    // one round at a time
	set     []*watchEntry // round's copy of entries, reused (guarded by roundMu)

	mu      sync.Mutex
	entries []*watchEntry
	byName  map[string]*watchEntry
	closed  bool
}

// NewWatcher starts a Watcher with no regions.
func NewWatcher(ctx context.Context, opts WatchOptions) *Watcher {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Verdict.StampInterval <= 0 && opts.Stamp {
		opts.Verdict.StampInterval = opts.Interval
	}
	if opts.TornRecheck <= 0 {
		opts.TornRecheck = 2 * time.Millisecond
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 64
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	w := &Watcher{
		opts:    opts,
		changes: make(chan Change, opts.Buffer),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		byName:  make(map[string]*watchEntry),
	}
	go w.loop(ctx)
	return w
}

// Changes returns the channel of verdict changes. It is closed once the
// watcher has stopped.
func (w *Watcher) Changes() <-chan Change { return w.changes }

// Add maps the region file at path (read-write when stamping) and watches
// it under name.
func (w *Watcher) Add(name, path string) error {
	r, err := OpenRegion(path, OpenOptions{Writable: w.opts.Stamp})
	if err != nil {
		return err
	}
	if err := w.AddRegion(name, r); err != nil {
		r.Close()
		return err
	}
	return nil
}

// AddRegion watches r under name; the watcher owns r from now on and
// closes it on Remove or when it stops.
func (w *Watcher) AddRegion(name string, r *Region) error {
	if w.opts.Stamp && !r.Writable() {
		return fmt.Errorf("hostreader: watch %q: %w (stamping needs a writable region)", name, ErrReadOnly)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrWatcherClosed
	}
	if _, ok := w.byName[name]; ok {
		return fmt.Errorf("hostreader: watch %q: name already watched", name)
	}
	e := &watchEntry{name: name, region: r}
	e.tracker.cfg = w.opts.Verdict
	w.entries = append(w.entries, e)
	w.byName[name] = e
	w.poke()
	return nil
}

// Remove stops watching name and closes its region.
func (w *Watcher) Remove(name string) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWatcherClosed
	}
	e, ok := w.byName[name]
	if !ok {
		w.mu.Unlock()
		return fmt.Errorf("hostreader: watch: no region named %q", name)
	}
	delete(w.byName, name)
	for i, x := range w.entries {
		if x == e {
			last := len(w.entries) - 1
			w.entries[i] = w.entries[last]
			w.entries[last] = nil
			w.entries = w.entries[:last]
			break
		}
	}
	w.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.removed = true
	return e.region.Close()
}

// ReportPanic injects panic evidence for name (a QMP GUEST_PANICKED event,
// a new ERST panic record). The region is re-assessed at once: it reads
// panicked until its boot count moves.
//
// It does not wait for a poll round in progress: at most for the one
// region the round is reading at that moment.
func (w *Watcher) ReportPanic(name string, ev PanicEvidence) error {
	e, err := w.entry(name)
	if err != nil {
		return err
	}
	e.mu.Lock()
	removed := e.removed
	if !removed {
		e.tracker.ReportPanic(ev)
	}
	e.mu.Unlock()
	if removed {
		return fmt.Errorf("hostreader: watch: no region named %q", name)
	}
	w.poke()
	return nil
}

// entry returns the entry watched under name.
func (w *Watcher) entry(name string) (*watchEntry, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrWatcherClosed
	}
	e, ok := w.byName[name]
	if !ok {
		return nil, fmt.Errorf("hostreader: watch: no region named %q", name)
	}
	return e, nil
}

// Verdict returns the latest verdict of name.
func (w *Watcher) Verdict(name string) (Verdict, bool) {
	w.mu.Lock()
	e, ok := w.byName[name]
	w.mu.Unlock()
	if !ok {
		return Verdict{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.emitted {
		return Verdict{}, false
	}
	return e.last, true
}

// Refresh reads the region watched under name now (not at the next
// round) and returns its verdict, which also becomes its latest verdict
// (Verdict). No Change is emitted for it. A supervisor uses it for the
// final word on a region, e.g. after QEMU exited.
func (w *Watcher) Refresh(name string) (Verdict, error) {
	e, err := w.entry(name)
	if err != nil {
		return Verdict{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.removed {
		return Verdict{}, fmt.Errorf("hostreader: watch: no region named %q", name)
	}
	now := w.opts.Now()
	s, err := e.region.SnapshotAt(now)
	for tries := 0; err == nil && s.Torn && tries < 10; tries++ {
		e.mu.Unlock() // a panic report need not wait for the recheck
		time.Sleep(w.opts.TornRecheck)
		e.mu.Lock()
		if e.removed {
			return Verdict{}, fmt.Errorf("hostreader: watch: no region named %q", name)
		}
		now = w.opts.Now()
		s, err = e.region.SnapshotAt(now)
	}
	var v Verdict
	if err != nil {
		v = faultVerdict(s, err)
	} else {
		v = e.tracker.Update(s)
	}
	e.last, e.emitted = v, true
	return v, nil
}

// Len returns the number of watched regions.
func (w *Watcher) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.entries)
}

// Close stops the watcher, waits for its goroutine, and closes every
// region. It returns ErrWatcherClosed when called again.
func (w *Watcher) Close() error {
	first := false
	w.once.Do(func() { first = true; close(w.done) })
	<-w.stopped
	if !first {
		return ErrWatcherClosed
	}
	return nil
}

func (w *Watcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Watcher) loop(ctx context.Context) {
	defer close(w.stopped)
	defer close(w.changes)
	defer w.shutdown()
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	var out []Change
	for {
		out = w.round(out[:0])
		for _, c := range out {
			select {
			case w.changes <- c:
			case <-ctx.Done():
				return
			case <-w.done:
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-w.done:
			return
		case <-t.C:
		case <-w.kick:
		}
	}
}

func (w *Watcher) shutdown() {
	w.mu.Lock()
	w.closed = true
	entries := w.entries
	w.entries = nil
	w.byName = map[string]*watchEntry{}
	w.mu.Unlock()
	for _, e := range entries {
		e.mu.Lock()
		e.region.Close()
		e.removed = true
		e.mu.Unlock()
	}
}

// round polls every region once and appends the changes to out. It holds
// w.mu only to copy the set of regions, and each region's lock only while
// it reads that region (see Watcher).
func (w *Watcher) round(out []Change) []Change {
	w.roundMu.Lock()
	defer w.roundMu.Unlock()
	w.mu.Lock()
	w.set = append(w.set[:0], w.entries...)
	w.mu.Unlock()
	defer clear(w.set) // drop references to removed regions
	now := w.opts.Now()
	var torn []*watchEntry
	for _, e := range w.set {
		e.mu.Lock()
		if e.removed {
			e.mu.Unlock()
			continue
		}
		if w.opts.Stamp && e.region.StampHostTime(now) == nil { // a fault shows in the snapshot below
			e.tracker.Stamped(now)
		}
		s, err := e.region.SnapshotAt(now)
		if err == nil && s.Torn {
			torn = append(torn, e)
			e.mu.Unlock()
			continue
		}
		e.tornRounds = 0
		out = w.judge(out, e, s, err)
		e.mu.Unlock()
	}
	if len(torn) > 0 {
		time.Sleep(w.opts.TornRecheck)
		now = w.opts.Now()
		for _, e := range torn {
			e.mu.Lock()
			if e.removed {
				e.mu.Unlock()
				continue
			}
			s, err := e.region.SnapshotAt(now)
			if err == nil && s.Torn {
				e.tornRounds++
				if e.tornRounds < 2 && e.emitted {
					e.mu.Unlock()
					continue // keep the last verdict for one round
				}
			} else {
				e.tornRounds = 0
			}
			out = w.judge(out, e, s, err)
			e.mu.Unlock()
		}
	}
	return out
}

// judge records the verdict of e (whose lock the caller holds).
func (w *Watcher) judge(out []Change, e *watchEntry, s Snapshot, err error) []Change {
	var v Verdict
	if err != nil {
		v = faultVerdict(s, err)
	} else {
		v = e.tracker.Update(s)
	}
	if !e.emitted || v.State != e.last.State || slotStatesDiffer(&v, &e.last) {
		prev := StateNone
		if e.emitted {
			prev = e.last.State
		}
		out = append(out, Change{Name: e.name, Verdict: v, Prev: prev})
	}
	e.last, e.emitted = v, true
	return out
}

func slotStatesDiffer(a, b *Verdict) bool {
	for i := range a.Slots {
		if a.Slots[i].State != b.Slots[i].State {
			return true
		}
	}
	return false
}
