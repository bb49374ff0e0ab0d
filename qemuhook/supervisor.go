package qemuhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/qmp"
	"github.com/acpidiag/acpidiag/ssdt"
)

// Source is where a supervisor verdict comes from.
type Source string

// Verdict sources.
const (
	SourceRegion  Source = "region"  // the region's health (hostreader.Watcher)
	SourceQMP     Source = "qmp"     // a QMP event
	SourceERST    Source = "erst"    // a new panic/oops record in the ERST store
	SourceProcess Source = "process" // the QEMU process itself
)

// State is a supervisor verdict's state: a region state, named as
// hostreader.State names it (RegionState: "absent", "alive", "stale",
// "rebooted", "panicked", "corrupt", "torn", "unknown"), which region
// verdicts carry, or one of the supervisor's own below.
type State string

// RegionState is the supervisor state of a region verdict's state.
func RegionState(s hostreader.State) State { return State(s.String()) }

// Region returns the hostreader.State that s names, and false for a
// supervisor-only state (paused, exited, ...).
func (s State) Region() (hostreader.State, bool) {
	var r hostreader.State
	if err := r.UnmarshalText([]byte(s)); err != nil || r == hostreader.StateNone {
		return hostreader.StateNone, false
	}
	return r, true
}

// Supervisor states besides the region states.
const (
	StatePanicked     State = "panicked"     // GUEST_PANICKED, or an ERST panic record (hostreader.StatePanicked's name)
	StatePanicLog     State = "panic-log"    // the ERST log of a panic already reported panicked
	StatePaused       State = "paused"       // QMP STOP
	StateRunning      State = "running"      // QMP RESUME
	StateReset        State = "reset"        // QMP RESET
	StateShutdown     State = "shutdown"     // QMP SHUTDOWN
	StateWatchdog     State = "watchdog"     // QMP WATCHDOG
	StateExited       State = "exited"       // QEMU exited
	StateDisconnected State = "disconnected" // QMP connection lost (attach mode)
	StateReconnected  State = "reconnected"  // QMP answers again (attach mode, AttachConfig.Reconnect)
)

// Verdict is one entry of a Supervisor's verdict stream: what was seen,
// from which source, when, with the evidence.
type Verdict struct {
	Time   time.Time `json:"time"`
	State  State     `json:"state"`
	Source Source    `json:"source"`
	// Reason is a one-line explanation. It may hold guest text, raw:
	// String and the printers (Follow, WriteSummary) escape it.
	Reason string `json:"reason,omitempty"`
	// Region is the region verdict (source region), else the latest one
	// known when this verdict was made (nil before the first).
	Region *hostreader.Verdict `json:"region,omitempty"`
	// Event is the QMP event (source qmp).
	Event *qmp.Event `json:"event,omitempty"`
	// Panic is the panic evidence (state panicked).
	Panic *PanicReport `json:"panic,omitempty"`
	// Exit describes how QEMU ended (state exited).
	Exit *ExitReport `json:"exit,omitempty"`
}

// String renders the verdict on one line, safe to print: guest text in
// the reason is escaped (hostreader.EscapeLine).
func (v Verdict) String() string {
	s := fmt.Sprintf("%s %-9s [%s]", v.Time.Format("15:04:05.000"), v.State, v.Source)
	if v.Reason != "" {
		s += " " + hostreader.EscapeLine(v.Reason)
	}
	return s
}

// PanicReport is the evidence of a guest panic. Every string in it comes
// from the guest as it is, unescaped: escape it before printing
// (hostreader.EscapeLine, EscapeLog; WriteSummary does).
type PanicReport struct {
	// Source is "pvpanic" (QMP GUEST_PANICKED) or "erst" (a record the
	// kernel's pstore wrote).
	Source string `json:"source"`
	// PVPanic is set on an ERST report when GUEST_PANICKED announced the
	// same panic: the supervisor reports both as one panicked verdict.
	PVPanic bool `json:"pvpanic,omitempty"`
	// Reason and Count are the pstore dump's ("Panic", 1) for ERST.
	Reason string `json:"reason,omitempty"`
	Count  int    `json:"count,omitempty"`
	// PanicLine is "Kernel panic - not syncing: ..." when known.
	PanicLine string `json:"panic_line,omitempty"`
	// OopsLines are the oops/BUG lines of the log.
	OopsLines []string `json:"oops_lines,omitempty"`
	// RecordIDs are the ERST record ids of the dump.
	RecordIDs []uint64 `json:"record_ids,omitempty"`
	// Text is the reassembled kernel log of the dump.
	Text string `json:"text,omitempty"`
}

// ExitReport says how QEMU ended.
type ExitReport struct {
	Code   int    `json:"code"`             // exit status, -1 if killed by a signal
	Signal string `json:"signal,omitempty"` // the signal, if killed by one
	// Expected is true when QEMU exited after a SHUTDOWN event or because
	// the supervisor stopped it.
	Expected bool     `json:"expected"`
	Stderr   []string `json:"stderr,omitempty"` // last lines of QEMU's stderr
	// Cause is the likely cause told from the host (Process.ExitCause),
	// e.g. the backing file that made QEMU die of SIGBUS.
	Cause string `json:"cause,omitempty"`
}

// SupervisorOptions tunes a Supervisor. Zero values select defaults.
type SupervisorOptions struct {
	// Watch tunes the region watcher (default interval 1 s, K 3). Stamp
	// is always on: the host time is written into the region each round.
	Watch hostreader.WatchOptions
	// QMP tunes the QMP session.
	QMP qmp.Options
	// Start tunes the QEMU launch (Launch only).
	Start StartOptions
	// ERSTInterval is how often the ERST file is checked for new records
	// (default 1 s); after GUEST_PANICKED it is checked every 100 ms for
	// up to ERSTWait (default 15 s), since the kernel writes pstore after
	// the pvpanic notifier. It is also read at once on every QMP RESET,
	// SHUTDOWN and disconnection, on QEMU's exit and when the region's
	// boot count moves, so a panic without pvpanic (the kernel writes its
	// log and resets within milliseconds) is reported panicked before the
	// reset, shutdown, exit or reboot verdict.
	ERSTInterval, ERSTWait time.Duration
	// PanicWait is how long a GUEST_PANICKED verdict is held back for the
	// ERST record of the same panic, so that one panicked verdict carries
	// both (default 3 s; only with an ERST store, and not when QEMU paused
	// the guest on the panic). A guest reset, shutdown or QEMU's exit ends
	// the wait at once. The record of a panic already reported panicked
	// comes as a StatePanicLog verdict.
	PanicWait time.Duration
	// ConsoleTee receives a copy of the guest's serial output.
	ConsoleTee io.Writer
	// ConsoleBuffer is the console ring size (default DefaultConsoleBuffer).
	ConsoleBuffer int
	// Buffer is the capacity of the Verdicts channel (default 256). The
	// caller must drain it; while it is full the supervisor waits.
	Buffer int
}

// AttachConfig names the pieces of an already running VM.
type AttachConfig struct {
	// QMPSocket is the VM's QMP unix socket (required).
	QMPSocket string
	// RegionPath is the region backing file (required); RegionOffset its
	// offset in that file (the guest-physical address for the fixed
	// placement) and RegionSize the bytes to map (0: to the end of file).
	RegionPath   string
	RegionOffset int64
	RegionSize   int64
	// ERSTPath is the ERST backing file, optional.
	ERSTPath string
	// SerialSocket is the serial unix socket, optional (QEMU accepts one
	// client: leave it empty if something else reads the console).
	SerialSocket string
	// Reconnect keeps supervising when the QMP connection drops (QEMU
	// exited or restarts): a StateDisconnected verdict is emitted, the
	// region (which survives QEMU) and the ERST store stay watched, and the
	// QMP socket is re-dialled with a bounded backoff (ReconnectMin, doubling
	// up to ReconnectMax) until a QEMU answers on it again — then a
	// StateReconnected verdict follows, QMP() works again and, with a
	// SerialSocket, Console() is a new console on the new QEMU — or until
	// ctx or Close ends supervision. Without Reconnect (the default) the
	// disconnected verdict ends the stream.
	//
	// QEMU serves one QMP client at a time: while the supervisor holds the
	// new QEMU's QMP, anything else (e.g. Start waiting for the greeting)
	// waits for the supervisor to let go.
	Reconnect bool
	// ReconnectMin and ReconnectMax bound the re-dial backoff (defaults
	// 100 ms and 2 s).
	ReconnectMin, ReconnectMax time.Duration
}

// Summary is what a supervised run came to.
type Summary struct {
	// Last is the last verdict emitted.
	Last Verdict `json:"last"`
	// Region is the last region verdict (nil if none).
	Region *hostreader.Verdict `json:"region,omitempty"`
	// Ticks and Boots are from the last region verdict.
	Ticks uint32 `json:"ticks"`
	Boots uint32 `json:"boots"`
	// Panic is the best panic evidence seen (ERST over pvpanic).
	Panic *PanicReport `json:"panic,omitempty"`
	// Exit is how QEMU ended (nil if it did not, or in attach mode).
	Exit *ExitReport `json:"exit,omitempty"`
	// Verdicts is the number of verdicts emitted.
	Verdicts int `json:"verdicts"`
	// DroppedEvents counts QMP events dropped by the session buffer.
	DroppedEvents uint64 `json:"dropped_events,omitempty"`
}

const watchName = "vm"

// Supervisor watches one VM: its region (through hostreader's Watcher,
// stamping host time), its QMP events, its ERST store and, when it
// launched it, the QEMU process; and merges all of it into one verdict
// stream. Use Launch or Attach to create one.
type Supervisor struct {
	opts     SupervisorOptions
	proc     *Process
	qmp      *qmp.Client
	con      *Console
	watcher  *hostreader.Watcher
	erstPath string

	cancel context.CancelFunc
	out    chan Verdict
	done   chan struct{}

	// Loop goroutine only: the ERST store and the panic of the current
	// boot ("epoch": it ends at a QMP RESET or a region boot count change).
	erst         *erstWatch      // nil without an ERST store
	erstNext     time.Time       // next periodic ERST read
	fastUntil    time.Time       // read every 100 ms until then (after GUEST_PANICKED)
	pending      *Verdict        // a GUEST_PANICKED verdict waiting for its ERST record
	pendingUntil time.Time       // when pending is emitted without it
	epochPanic   bool            // a panicked verdict was emitted this epoch
	epochPVOnly  bool            // ... for GUEST_PANICKED without an ERST record
	epochPV      bool            // GUEST_PANICKED was seen this epoch
	epochERST    map[uint64]bool // ERST boot keys of the dumps reported this epoch
	resetSeen    bool            // a QMP RESET began the epoch; the boot count has not moved since
	knownBoots   uint32          // the region's boot count (0: not seen yet)

	attach      AttachConfig     // attach mode: what to re-dial
	redialing   bool             // a redial goroutine runs (loop goroutine only)
	lostAgain   *Verdict         // the new connection dropped before its redial was reported (loop only)
	redialWG    sync.WaitGroup   // the redial goroutine
	reconnected chan reconnected // redial goroutine → loop

	mu       sync.Mutex
	curCon   *Console // the console now (replaced on reconnect)
	sum      Summary
	lastRV   *hostreader.Verdict
	stopping bool
	sawShut  bool
}

// NewChannel builds the diagnostic SSDT for rc (ssdt.Build) into
// workdir/diag.aml and returns the Channel for machine with its backing
// file in workdir ("region" for ivshmem, "ram" for the fixed placement;
// an old one is removed so the run starts with an empty region).
func NewChannel(workdir string, rc ssdt.Config, machine Machine) (Channel, error) {
	if err := os.MkdirAll(workdir, 0o755); err != nil {
		return Channel{}, fmt.Errorf("qemuhook: workdir: %w", err)
	}
	b, err := ssdt.Build(rc)
	if err != nil {
		return Channel{}, err
	}
	ssdtPath := filepath.Join(workdir, "diag.aml")
	if err := os.WriteFile(ssdtPath, b, 0o644); err != nil {
		return Channel{}, fmt.Errorf("qemuhook: writing SSDT: %w", err)
	}
	backing := filepath.Join(workdir, "region")
	if rc.Placement == ssdt.PlaceFixed {
		backing = filepath.Join(workdir, "ram")
	}
	if err := os.Remove(backing); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Channel{}, fmt.Errorf("qemuhook: removing old region file: %w", err)
	}
	return Channel{SSDTPath: ssdtPath, Region: rc, BackingPath: backing, Machine: machine}, nil
}

// Launch starts QEMU for cfg (Start) and supervises it. cfg needs a
// QMPSocket. Cancelling ctx or calling Close stops supervision and kills
// QEMU. The ERST store, when configured, is started empty (an existing
// file is removed) so any record in it belongs to this run.
func Launch(ctx context.Context, cfg Config, opts SupervisorOptions) (*Supervisor, error) {
	if cfg.QMPSocket == "" {
		return nil, cfgErr("QMPSocket", "empty: the supervisor needs QMP")
	}
	if cfg.ERSTPath != "" {
		if err := os.Remove(cfg.ERSTPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("qemuhook: removing old ERST file: %w", err)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	p, err := Start(rctx, cfg, opts.Start)
	if err != nil {
		cancel()
		return nil, err
	}
	ch := cfg.channel()
	s, err := newSupervisor(rctx, cancel, opts, p, AttachConfig{
		QMPSocket: cfg.QMPSocket, SerialSocket: cfg.SerialSocket, ERSTPath: cfg.ERSTPath,
		RegionPath: ch.BackingPath, RegionOffset: ch.RegionOffset(), RegionSize: int64(ch.Region.Size),
	})
	if err != nil {
		cancel()
		p.Kill()
		return nil, err
	}
	return s, nil
}

// Attach supervises a VM that is already running. Close (or ctx) stops
// supervision; QEMU is left running. When the QMP connection drops the
// stream ends with a StateDisconnected verdict, unless ac.Reconnect: then
// supervision goes on and QMP is re-dialled until a QEMU answers again
// (StateReconnected).
func Attach(ctx context.Context, ac AttachConfig, opts SupervisorOptions) (*Supervisor, error) {
	if ac.QMPSocket == "" {
		return nil, cfgErr("QMPSocket", "empty: attach needs the VM's QMP socket")
	}
	if ac.RegionPath == "" {
		return nil, cfgErr("RegionPath", "empty: attach needs the region backing file")
	}
	// A named pipe or a device is refused at once, before anything blocks.
	if err := checkHostFile("RegionPath", ac.RegionPath); err != nil {
		return nil, err
	}
	if err := checkHostFile("ERSTPath", ac.ERSTPath); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	s, err := newSupervisor(rctx, cancel, opts, nil, ac)
	if err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

func newSupervisor(ctx context.Context, cancel context.CancelFunc, opts SupervisorOptions, p *Process, ac AttachConfig) (*Supervisor, error) {
	if opts.ERSTInterval <= 0 {
		opts.ERSTInterval = time.Second
	}
	if opts.ERSTWait <= 0 {
		opts.ERSTWait = 15 * time.Second
	}
	if opts.PanicWait <= 0 {
		opts.PanicWait = 3 * time.Second
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 256
	}
	opts.Watch.Stamp = true
	s := &Supervisor{
		opts: opts, proc: p, erstPath: ac.ERSTPath, cancel: cancel,
		out: make(chan Verdict, opts.Buffer), done: make(chan struct{}),
		attach: ac, reconnected: make(chan reconnected, 1),
	}
	if ac.ReconnectMin <= 0 {
		s.attach.ReconnectMin = 100 * time.Millisecond
	}
	if ac.ReconnectMax <= 0 {
		s.attach.ReconnectMax = 2 * time.Second
	}
	if s.attach.ReconnectMax < s.attach.ReconnectMin {
		s.attach.ReconnectMax = s.attach.ReconnectMin
	}
	var err error
	fail := func(e error) (*Supervisor, error) {
		if s.con != nil {
			s.con.Close()
		}
		if s.qmp != nil {
			s.qmp.Close()
		}
		if s.watcher != nil {
			s.watcher.Close()
		}
		return nil, e
	}
	if ac.SerialSocket != "" {
		cctx, c := context.WithTimeout(ctx, 10*time.Second)
		s.con, err = DialConsole(cctx, ac.SerialSocket, opts.ConsoleBuffer)
		c()
		if err != nil {
			return fail(err)
		}
		if opts.ConsoleTee != nil {
			s.con.SetTee(opts.ConsoleTee)
		}
		s.curCon = s.con
	}
	s.qmp, err = qmp.Dial(ctx, ac.QMPSocket, opts.QMP)
	if err != nil {
		return fail(err)
	}
	r, err := hostreader.OpenRegion(ac.RegionPath, hostreader.OpenOptions{Offset: ac.RegionOffset, Size: ac.RegionSize, Writable: true})
	if err != nil {
		return fail(fmt.Errorf("qemuhook: region: %w", err))
	}
	s.watcher = hostreader.NewWatcher(ctx, opts.Watch)
	if err := s.watcher.AddRegion(watchName, r); err != nil {
		r.Close()
		return fail(err)
	}
	if s.erstPath != "" {
		s.erst = newERSTWatch(s.erstPath) // records already there are not news
		s.erstNext = time.Now().Add(opts.ERSTInterval)
	}
	go s.loop(ctx)
	return s, nil
}

// Verdicts returns the merged verdict stream. It is closed when
// supervision ends (QEMU exited, the QMP connection was lost in attach
// mode without AttachConfig.Reconnect, Close, or ctx).
func (s *Supervisor) Verdicts() <-chan Verdict { return s.out }

// Done is closed when supervision has ended and everything is released.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// QMP returns the QMP session (for on-demand diagnostics).
func (s *Supervisor) QMP() *qmp.Client { return s.qmp }

// Console returns the serial console, nil when none is configured. In
// attach mode with AttachConfig.Reconnect it is a new Console after each
// reconnection (the old one has ended with its QEMU).
func (s *Supervisor) Console() *Console {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.curCon
}

// Process returns the QEMU process, nil in attach mode.
func (s *Supervisor) Process() *Process { return s.proc }

// Summary returns what the run came to so far.
func (s *Supervisor) Summary() Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := s.sum
	if s.qmp != nil {
		sum.DroppedEvents = s.qmp.Dropped()
	}
	return sum
}

// Close stops supervision, kills QEMU if the supervisor launched it,
// releases everything and waits until it is done. The verdict stream is
// drained and closed.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.cancel()
	for range s.out {
	}
	<-s.done
	return nil
}

// emit sends a verdict and records it in the summary.
func (s *Supervisor) emit(ctx context.Context, v Verdict) {
	s.mu.Lock()
	if v.Region == nil && s.lastRV != nil {
		rv := *s.lastRV
		v.Region = &rv
	}
	s.sum.Last = v
	s.sum.Verdicts++
	if v.Panic != nil && (s.sum.Panic == nil || v.Panic.Source == "erst") {
		s.sum.Panic = v.Panic
	}
	if v.Exit != nil {
		s.sum.Exit = v.Exit
	}
	s.mu.Unlock()
	select {
	case s.out <- v:
	case <-ctx.Done():
	}
}

func (s *Supervisor) loop(ctx context.Context) {
	defer close(s.done)
	defer close(s.out)
	defer s.release()
	var procDone <-chan struct{}
	if s.proc != nil {
		procDone = s.proc.Done()
	}
	changes := s.watcher.Changes()
	events := s.qmp.Events()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var wake <-chan time.Time
		if at, ok := s.nextWake(); ok {
			timer.Reset(max(time.Until(at), 0))
			wake = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			s.onRegion(ctx, c)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if end := s.onEvent(ctx, ev); end != nil {
				s.finish(ctx, changes, end)
				return
			}
		case <-wake:
			if s.erst != nil && !time.Now().Before(s.erstNext) {
				s.checkERST(ctx, false)
			}
			if s.pending != nil && !time.Now().Before(s.pendingUntil) {
				s.flushPending(ctx)
			}
		case r := <-s.reconnected:
			s.onReconnected(ctx, r)
		case <-procDone:
			s.finish(ctx, changes, s.exitVerdict())
			return
		}
	}
}

// nextWake returns when the loop must wake up on its own: the next ERST
// read or the end of a held GUEST_PANICKED verdict's wait.
func (s *Supervisor) nextWake() (time.Time, bool) {
	var at time.Time
	if s.erst != nil {
		at = s.erstNext
	}
	if s.pending != nil && (at.IsZero() || s.pendingUntil.Before(at)) {
		at = s.pendingUntil
	}
	return at, !at.IsZero()
}

// finish ends a run: read the ERST store once more (a guest without
// pvpanic writes its panic log and resets within milliseconds), wait
// (bounded by ERSTWait) for the ERST record of a GUEST_PANICKED panic,
// emit the panic verdict, take a last region verdict, emit the end
// verdict.
func (s *Supervisor) finish(ctx context.Context, changes <-chan hostreader.Change, end *Verdict) {
	s.checkERST(ctx, false)
	if s.erst != nil && s.epochPV && len(s.epochERST) == 0 {
		deadline := time.NewTimer(s.opts.ERSTWait)
		defer deadline.Stop()
		poll := time.NewTicker(100 * time.Millisecond)
		defer poll.Stop()
	wait:
		for len(s.epochERST) == 0 {
			select {
			case <-poll.C:
				s.checkERST(ctx, false)
			case c, ok := <-changes:
				if !ok {
					changes = nil
					continue
				}
				s.onRegion(ctx, c)
			case <-deadline.C:
				break wait
			case <-ctx.Done():
				return
			}
		}
	}
	s.flushPending(ctx)
	if v, ok := s.finalRegion(); ok {
		s.mu.Lock()
		s.setRegion(v)
		s.mu.Unlock()
	}
	if end != nil {
		s.emit(ctx, *end)
	}
}

// finalRegion reads the region once more at the end of a run (the
// summary's ticks, boots and state are the region's now, not those of the
// last verdict printed). Once QEMU has exited the guest cannot tick: a
// region that still reads alive (its last tick is recent) is reported
// stale, with the last tick as evidence.
func (s *Supervisor) finalRegion() (hostreader.Verdict, bool) {
	v, err := s.watcher.Refresh(watchName)
	if err != nil {
		return s.watcher.Verdict(watchName)
	}
	if s.proc != nil && s.proc.Exited() && (v.State == hostreader.StateAlive || v.State == hostreader.StateUnknown) {
		v.State, v.Reason = hostreader.StateStale, "QEMU has exited: the guest can no longer tick"
	}
	return v, true
}

func (s *Supervisor) release() {
	s.cancel()
	s.redialWG.Wait()
	// A console dialled by a redial the loop never took.
	select {
	case r := <-s.reconnected:
		if r.con != nil {
			r.con.Close()
		}
	default:
	}
	s.watcher.Close()
	s.qmp.Close()
	s.mu.Lock()
	con := s.curCon
	s.mu.Unlock()
	if con != nil {
		con.Close()
	}
	if s.proc != nil {
		s.proc.Kill()
	}
}

func (s *Supervisor) setRegion(v hostreader.Verdict) {
	rv := v
	s.lastRV = &rv
	s.sum.Region = &rv
	s.sum.Ticks = v.Snapshot.Ticks
	s.sum.Boots = v.Snapshot.Boots
}

// validBoots reports whether a region verdict's snapshot has a boot count
// that can be trusted (a valid, untorn header).
func validBoots(v hostreader.Verdict) bool {
	switch v.State {
	case hostreader.StateAbsent, hostreader.StateCorrupt, hostreader.StateTorn:
		return false
	}
	return v.Snapshot.Boots != 0
}

func (s *Supervisor) onRegion(ctx context.Context, c hostreader.Change) {
	rv := c.Verdict
	if validBoots(rv) {
		if s.knownBoots != 0 && rv.Snapshot.Boots != s.knownBoots {
			// The guest booted again. What the last boot left in ERST is
			// reported first, as that boot's; a boot count move that no
			// QMP RESET announced (attach mode, a restarted QEMU) begins a
			// new epoch here.
			s.checkERST(ctx, !s.resetSeen)
			s.flushPending(ctx)
			if !s.resetSeen {
				s.newEpoch()
			}
			s.resetSeen = false
		}
		s.knownBoots = rv.Snapshot.Boots
	}
	s.mu.Lock()
	s.setRegion(rv)
	s.mu.Unlock()
	if rv.State == hostreader.StatePanicked {
		// The region says panicked only because the supervisor reported
		// the panic to its watcher: that panicked verdict is out already.
		return
	}
	s.emit(ctx, Verdict{Time: rv.At, State: RegionState(rv.State), Source: SourceRegion, Reason: rv.Line(), Region: &rv})
}

// newEpoch starts a new guest boot as far as panics are concerned.
func (s *Supervisor) newEpoch() {
	s.epochPanic, s.epochPVOnly, s.epochPV, s.epochERST = false, false, false, nil
}

// onEvent handles a QMP event; it returns the final verdict when
// supervision must end (attach mode: connection lost).
func (s *Supervisor) onEvent(ctx context.Context, ev qmp.Event) *Verdict {
	e := ev
	v := Verdict{Time: ev.Time, Source: SourceQMP, Event: &e}
	if v.Time.IsZero() {
		v.Time = time.Now()
	}
	switch ev.Name {
	case qmp.EventGuestPanicked:
		s.onPVPanic(ctx, v)
		return nil
	case qmp.EventStop:
		v.State, v.Reason = StatePaused, "VM stopped (QMP STOP): the guest cannot tick, the region will go stale"
	case qmp.EventResume:
		v.State, v.Reason = StateRunning, "VM resumed (QMP RESUME)"
	case qmp.EventReset:
		v.State, v.Reason = StateReset, "reset ("+ev.Reason+")"
		// A guest without pvpanic has written its panic log by now.
		s.checkERST(ctx, false)
		s.flushPending(ctx)
		s.emit(ctx, v)
		s.newEpoch()
		s.resetSeen = true
		return nil
	case qmp.EventShutdown:
		s.mu.Lock()
		s.sawShut = true
		s.mu.Unlock()
		v.State, v.Reason = StateShutdown, "shutdown ("+ev.Reason+")"
		s.checkERST(ctx, false)
		s.flushPending(ctx)
	case qmp.EventWatchdog:
		v.State, v.Reason = StateWatchdog, "guest watchdog fired (action "+ev.Action+")"
	case qmp.EventDisconnected:
		if s.proc != nil {
			return nil // the process exit will tell more
		}
		v.State, v.Reason = StateDisconnected, "QMP connection lost: "+string(ev.Data)
		s.checkERST(ctx, false)
		s.flushPending(ctx)
		if !s.attach.Reconnect {
			return &v
		}
		v.Reason += "; watching the region, re-dialling " + s.attach.QMPSocket
		if s.redialing {
			// Only a connection the running redial made can drop now: it
			// dropped before the loop took the redial's result. Report it
			// after the reconnected verdict, then redial again.
			s.lostAgain = &v
			return nil
		}
		s.startRedial(ctx, v.Time)
	default:
		return nil
	}
	s.emit(ctx, v)
	return nil
}

// onPVPanic handles GUEST_PANICKED. With an ERST store the verdict is held
// (PanicWait) for the kernel's record of the same panic, read every 100 ms
// meanwhile, so one panicked verdict carries both; a second announcement
// of a panic already reported this boot is not news.
func (s *Supervisor) onPVPanic(ctx context.Context, v Verdict) {
	v.State = StatePanicked
	v.Reason = "pvpanic: guest kernel panicked (GUEST_PANICKED, action " + v.Event.Action + ")"
	v.Panic = &PanicReport{Source: "pvpanic"}
	_ = s.watcher.ReportPanic(watchName, hostreader.PanicEvidence{Source: "pvpanic", At: v.Time, Detail: "QMP GUEST_PANICKED"})
	s.epochPV = true
	if s.epochPanic || s.pending != nil {
		return
	}
	if s.erst == nil || v.Event.Action == "pause" {
		// No record can come (no store; a paused guest writes none).
		s.epochPanic = true
		s.emit(ctx, v)
		return
	}
	now := time.Now()
	s.pending, s.pendingUntil = &v, now.Add(s.opts.PanicWait)
	s.fastUntil = now.Add(s.opts.ERSTWait)
	s.erstNext = now // read at once, then every 100 ms
}

// flushPending emits a held GUEST_PANICKED verdict whose ERST record did
// not come in time.
func (s *Supervisor) flushPending(ctx context.Context) {
	if s.pending == nil {
		return
	}
	v := *s.pending
	s.pending = nil
	s.epochPanic, s.epochPVOnly = true, true
	s.emit(ctx, v)
}

// checkERST reads the ERST store now and reports its new dumps.
// previousEpoch says they belong to the boot before the current one (the
// boot count has already moved): they are reported, but not handed to the
// region watcher, whose verdict is about the new boot.
func (s *Supervisor) checkERST(ctx context.Context, previousEpoch bool) {
	if s.erst == nil {
		return
	}
	now := time.Now()
	interval := s.opts.ERSTInterval
	if now.Before(s.fastUntil) {
		interval = 100 * time.Millisecond
	}
	s.erstNext = now.Add(interval)
	for _, d := range s.erst.poll() {
		s.onERST(ctx, d, previousEpoch)
	}
}

// onERST reports one new ERST dump. The first dump of a boot and a held
// GUEST_PANICKED verdict become one panicked verdict. A dump from a guest
// boot already reported this epoch (an oops and the panic it led to), or
// the first one after a GUEST_PANICKED verdict emitted without it, is the
// log of a panic already reported: a StatePanicLog verdict. Any other dump
// (a panic without pvpanic, an oops) is a panicked verdict of its own.
func (s *Supervisor) onERST(ctx context.Context, d erstDump, previousEpoch bool) {
	rep := d.rep
	detail := rep.PanicLine
	if detail == "" && len(rep.OopsLines) > 0 {
		detail = rep.OopsLines[0]
	}
	var id uint64
	if len(rep.RecordIDs) > 0 {
		id = rep.RecordIDs[0]
	}
	now := time.Now()
	if !previousEpoch {
		_ = s.watcher.ReportPanic(watchName, hostreader.PanicEvidence{Source: "erst", At: now, Detail: detail, RecordID: id})
	}
	reason := fmt.Sprintf("ERST: %s#%d", rep.Reason, rep.Count)
	if detail != "" {
		reason += ": " + detail
	}
	r := rep
	v := Verdict{Time: now, State: StatePanicked, Source: SourceERST, Panic: &r}
	switch {
	case s.pending != nil:
		r.PVPanic = true
		v.Event = s.pending.Event
		v.Reason = "pvpanic + " + reason
		s.pending = nil
	case s.epochERST[d.boot] || (s.epochPVOnly && len(s.epochERST) == 0):
		v.State = StatePanicLog
		v.Reason = reason + " (the log of the panic reported above)"
		r.PVPanic = s.epochPV && len(s.epochERST) == 0
	default:
		v.Reason = reason
	}
	s.epochPanic = true
	if s.epochERST == nil {
		s.epochERST = map[uint64]bool{}
	}
	s.epochERST[d.boot] = true
	s.emit(ctx, v)
}

func (s *Supervisor) exitVerdict() *Verdict {
	st := s.proc.State()
	s.mu.Lock()
	expected := s.stopping || s.sawShut
	s.mu.Unlock()
	ex := &ExitReport{Code: -1, Expected: expected, Stderr: s.proc.Stderr()}
	reason := "QEMU exited"
	if st != nil {
		ex.Code = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ex.Signal = ws.Signal().String()
		}
		reason = "QEMU " + st.String()
	}
	if !expected {
		reason += " unexpectedly"
	}
	if ex.Cause = s.proc.ExitCause(); ex.Cause != "" {
		reason += ": " + ex.Cause
	}
	if len(ex.Stderr) > 0 {
		reason += ": " + ex.Stderr[len(ex.Stderr)-1]
	}
	return &Verdict{Time: time.Now(), State: StateExited, Source: SourceProcess, Reason: reason, Exit: ex}
}

// erstKey names one dump event in an ERST store.
type erstKey struct {
	boot   uint64
	reason string
	count  int
}

// erstWatch finds the new panic/oops dumps in an ERST backing file.
type erstWatch struct {
	path     string
	last     []byte
	reported map[erstKey]bool
}

// newERSTWatch reads the store's current dumps: they are not news.
func newERSTWatch(path string) *erstWatch {
	w := &erstWatch{path: path, reported: map[erstKey]bool{}}
	w.last, _ = hostreader.ReadERSTBytes(path) // bounded, never a FIFO
	if st, err := hostreader.DecodeERST(w.last); err == nil {
		for _, e := range st.Events() {
			w.reported[erstKey{e.Boot, e.Reason, e.Count}] = true
		}
	}
	return w
}

// erstDump is one new dump: the report and the guest boot that wrote it
// (hostreader.Event.Boot).
type erstDump struct {
	rep  PanicReport
	boot uint64
}

// poll reads the file and returns each dump (by boot, reason and count)
// not returned before that holds its panic or oops line. The file is
// decoded only when its bytes changed. Texts are the guest's, raw.
func (w *erstWatch) poll() []erstDump {
	b, err := hostreader.ReadERSTBytes(w.path)
	if err != nil || bytes.Equal(b, w.last) {
		return nil
	}
	w.last = b
	st, err := hostreader.DecodeERST(b)
	if err != nil {
		return nil // QEMU may not have initialised the store yet
	}
	var out []erstDump
	for _, e := range st.Events() {
		k := erstKey{e.Boot, e.Reason, e.Count}
		if w.reported[k] || (e.PanicLine == "" && len(e.OopsLines) == 0) {
			continue
		}
		w.reported[k] = true
		rep := PanicReport{Source: "erst", Reason: e.Reason, Count: e.Count, PanicLine: e.PanicLine, Text: e.Text(),
			OopsLines: append([]string(nil), e.OopsLines...)}
		for _, p := range e.Parts {
			rep.RecordIDs = append(rep.RecordIDs, p.ID)
		}
		out = append(out, erstDump{rep, e.Boot})
	}
	return out
}

// reconnected is what a successful redial hands to the loop.
type reconnected struct {
	at       time.Time
	lostAt   time.Time
	attempts int
	con      *Console // the new console (nil without SerialSocket or if it failed)
	conErr   error
}

// startRedial re-dials QMP in the background (attach mode with Reconnect)
// unless a redial already runs. Called from the loop goroutine only.
func (s *Supervisor) startRedial(ctx context.Context, lostAt time.Time) {
	if s.redialing {
		return
	}
	s.redialing = true
	s.redialWG.Add(1)
	go s.redial(ctx, lostAt)
}

// redial calls QMP.Reconnect with a bounded exponential backoff until it
// succeeds or ctx ends, then re-dials the serial console, and hands the
// result to the loop.
func (s *Supervisor) redial(ctx context.Context, lostAt time.Time) {
	defer s.redialWG.Done()
	delay := s.attach.ReconnectMin
	t := time.NewTimer(delay)
	defer t.Stop()
	for attempts := 1; ; attempts++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.reconnectQMP(ctx); err != nil {
			if errors.Is(err, qmp.ErrClosed) || ctx.Err() != nil {
				return
			}
			delay = min(2*delay, s.attach.ReconnectMax)
			t.Reset(delay)
			continue
		}
		r := reconnected{at: time.Now(), lostAt: lostAt, attempts: attempts}
		if s.attach.SerialSocket != "" {
			cctx, c := context.WithTimeout(ctx, 10*time.Second)
			r.con, r.conErr = DialConsole(cctx, s.attach.SerialSocket, s.opts.ConsoleBuffer)
			c()
			if r.con != nil && s.opts.ConsoleTee != nil {
				r.con.SetTee(s.opts.ConsoleTee)
			}
		}
		select {
		case s.reconnected <- r: // buffered (1): the only send of this goroutine
		case <-ctx.Done():
			if r.con != nil {
				r.con.Close()
			}
		}
		return
	}
}

// reconnectQMP redials QMP unless its connection is already up again (a
// command with qmp.Options.AutoReconnect redialled first: Reconnect would
// drop that live connection).
func (s *Supervisor) reconnectQMP(ctx context.Context) error {
	select {
	case <-s.qmp.Done():
		return s.qmp.Reconnect(ctx)
	default:
		return nil
	}
}

// onReconnected reports QMP back and swaps in the new console.
func (s *Supervisor) onReconnected(ctx context.Context, r reconnected) {
	s.redialing = false
	if r.con != nil {
		s.mu.Lock()
		old := s.curCon
		s.curCon = r.con
		s.mu.Unlock()
		if old != nil {
			old.Close() // ended with the old QEMU; releases its reader
		}
	}
	v := s.qmp.Version()
	reason := fmt.Sprintf("QMP reconnected after %v (%d attempts): QEMU %d.%d.%d answers on %s",
		r.at.Sub(r.lostAt).Round(time.Millisecond), r.attempts, v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro,
		s.attach.QMPSocket)
	if r.conErr != nil {
		reason += "; serial console not re-dialled: " + r.conErr.Error()
	}
	s.emit(ctx, Verdict{Time: r.at, State: StateReconnected, Source: SourceQMP, Reason: reason,
		Event: &qmp.Event{Name: qmp.EventReconnected, Time: r.at}})
	if lost := s.lostAgain; lost != nil {
		s.lostAgain = nil
		s.emit(ctx, *lost)
		s.startRedial(ctx, lost.Time)
	}
}
