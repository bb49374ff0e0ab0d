package hostreader

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/acpidiag/acpidiag/region"
)

// State is a region's health verdict.
type State uint8

// Verdict states. The zero value StateNone means "no verdict yet" (it is the
// Prev of a region's first Change).
const (
	StateNone State = iota
	// StateAbsent: no header (magic 0): SSDT not loaded, no thermal driver
	// in the guest, wrong slot, or the guest has not ticked yet.
	StateAbsent
	// StateAlive: a tick within K periods.
	StateAlive
	// StateStale: no tick for longer than K periods.
	StateStale
	// StateRebooted: the boot count moved (or the tick count went back)
	// since the previous snapshot. Reported once; the next verdict says
	// whether the new boot is alive.
	StateRebooted
	// StatePanicked: external evidence of a guest panic (pvpanic event, new
	// ERST panic record) reported by the supervisor, and no reboot since.
	StatePanicked
	// StateCorrupt: the header is invalid (magic, version, header size,
	// region size) or the mapping faulted.
	StateCorrupt
	// StateTorn: the seqlock stayed odd (or kept changing) over every retry.
	StateTorn
	// StateUnknown: a valid, ticking region whose freshness cannot be told
	// yet: no usable host stamp echo and not observed long enough.
	StateUnknown
)

var stateNames = [...]string{"none", "absent", "alive", "stale", "rebooted", "panicked", "corrupt", "torn", "unknown"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// MarshalText encodes the state as its name (used by JSON).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("hostreader: unknown state %q", b)
}

// SlotState is the verdict on one application heartbeat slot.
type SlotState uint8

// Slot states.
const (
	SlotUnused  SlotState = iota // all zero
	SlotUnknown                  // no period promised, or not observed long enough
	SlotAlive                    // beat moved within K of its periods
	SlotStale                    // beat did not move for longer than K of its periods
)

var slotStateNames = [...]string{"unused", "unknown", "alive", "stale"}

func (s SlotState) String() string {
	if int(s) < len(slotStateNames) {
		return slotStateNames[s]
	}
	return fmt.Sprintf("SlotState(%d)", uint8(s))
}

// MarshalText encodes the slot state as its name.
func (s SlotState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// TickSource says where a verdict's LastTick comes from.
type TickSource uint8

// Tick sources.
const (
	TickUnknown  TickSource = iota // no evidence of when the guest last ticked
	TickEcho                       // the host stamp the guest copied at its last tick
	TickObserved                   // the host time a reader saw the tick words change
)

func (t TickSource) String() string {
	switch t {
	case TickEcho:
		return "echo"
	case TickObserved:
		return "observed"
	}
	return "unknown"
}

// Verdict defaults.
const (
	DefaultK             = 3
	DefaultStampInterval = time.Second
	DefaultPeriod        = time.Second
	maxK                 = 1000
	// futureSlack is how far in the future an echo or host stamp may be
	// (clock adjustments between stamping and reading) before it is
	// considered implausible.
	futureSlack = time.Second
)

// VerdictConfig tunes the verdicts. The zero value means the defaults.
type VerdictConfig struct {
	// K: a region is stale after K periods without a tick (default 3,
	// at most 1000).
	K int
	// StampInterval is how often the host stamps its time into the region
	// (default 1 s). It is the tolerance on the echo's age, and a host
	// stamp older than 2 stamp intervals means stamping has stopped.
	StampInterval time.Duration
	// DefaultPeriod is used when the region's period word is 0 (default 1 s).
	DefaultPeriod time.Duration
}

func (c VerdictConfig) norm() VerdictConfig {
	if c.K <= 0 {
		c.K = DefaultK
	}
	if c.K > maxK {
		c.K = maxK
	}
	if c.StampInterval <= 0 {
		c.StampInterval = DefaultStampInterval
	}
	if c.DefaultPeriod <= 0 {
		c.DefaultPeriod = DefaultPeriod
	}
	return c
}

// PanicEvidence is external proof that the guest panicked, injected by the
// supervisor (Tracker.ReportPanic, Watcher.ReportPanic, Assess).
type PanicEvidence struct {
	// Source is where the evidence comes from, e.g. "pvpanic" (QMP
	// GUEST_PANICKED) or "erst" (a new panic record).
	Source string
	// At is the host time the evidence was seen.
	At time.Time
	// Detail is free text (an ERST record's panic line, the QMP event). It
	// may hold guest bytes: it is escaped when printed.
	Detail string
	// RecordID is the ERST record id, 0 if none.
	RecordID uint64
}

// SlotStatus is the verdict on one application slot. The slot's raw words
// are in Verdict.Snapshot.Slots.
type SlotStatus struct {
	State    SlotState
	Period   time.Duration // promised period (PeriodMs)
	LastBeat time.Time     // host time the beat was last seen moving; zero if never
	Age      time.Duration // At - LastBeat, when LastBeat is set
}

// Verdict is a region's health with its evidence. Reason is a constant
// sentence (no allocation); Field/FieldOffset name the header word at
// fault for StateCorrupt. It is a fixed-size value.
type Verdict struct {
	State  State
	Reason string
	// Field and FieldOffset name the word a corrupt verdict is about.
	Field       string
	FieldOffset uint32
	// Fault is set when the mapping faulted (file truncated): State is corrupt.
	Fault bool

	// At is the host time of the snapshot the verdict is based on.
	At time.Time
	// Period is the tick period used: the region's period word, or
	// VerdictConfig.DefaultPeriod when that is 0.
	Period time.Duration
	// LastTick is a host-time lower bound of the guest's last tick (from
	// the echo of the host stamp, or when a reader saw the ticks move).
	LastTick       time.Time
	LastTickSource TickSource
	Age            time.Duration // At - LastTick, when LastTickSource != TickUnknown
	// HostStamp is the last host stamp in the region (zero if none); a
	// torn high/low pair is corrected.
	HostStamp time.Time
	// EchoImplausible is set when a nonzero echo lies in the future and
	// was ignored.
	EchoImplausible bool

	Slots [region.NumSlots]SlotStatus

	HasPanic bool
	Panic    PanicEvidence

	// Snapshot holds the raw words (ticks, boots, timer, OSI, mailbox ...).
	Snapshot Snapshot
}

// StaleSlots returns the number of application slots judged stale.
func (v *Verdict) StaleSlots() int {
	n := 0
	for _, s := range v.Slots {
		if s.State == SlotStale {
			n++
		}
	}
	return n
}

// Tracker turns successive snapshots of one region into verdicts: it
// remembers the previous snapshot (reboots, tick and slot movement over
// host time) and injected panic evidence. The zero value is ready to use
// with the default VerdictConfig. A Tracker is a fixed-size value; it is
// not safe for concurrent use.
type Tracker struct {
	cfg VerdictConfig

	have bool
	prev tickWords // of the last valid, untorn snapshot
	// Host times in Unix nanoseconds (integer math keeps Update cheap).
	// Tick times are lower bounds: a change seen at one snapshot happened
	// after the previous snapshot (prevAt), so that is when it is dated.
	// Dating it at the snapshot that saw it would add up to one poll
	// interval to every hang detection.
	prevAt     int64 // host time of the last valid, untorn snapshot
	lastChange int64 // lower bound of the last tick seen moving (0: never)
	changeLag  int64 // how far lastChange may lie before the real tick
	since      int64 // tick words unchanged since (a lower bound too)

	slotSeen  [region.NumSlots]bool
	slotLast  [region.NumSlots]int64
	slotSince [region.NumSlots]int64

	hasPanic       bool
	panicEv        PanicEvidence
	panicBoots     uint32
	panicBootsKnow bool

	// Host stamps written by the tracker's owner (Stamped), Unix ns:
	// the start and the end of the current uninterrupted run of them.
	stamping   bool
	stampStart int64
	stampLast  int64
}

// Stamped tells the tracker that its owner wrote the host stamp at (see
// Region.StampHostTime) just before the snapshot it is about to judge.
// From then on, whether "the host keeps stamping" is dated from this
// process's own stamps, not from the stamp in the region: a new stamper
// (a supervisor restarted after being killed, a second `diagread watch
// --stamp`) has just overwritten an old stamp with its own, and the echo
// of the old one proves nothing until the guest had time to copy a new
// one. A stamp more than two stamp intervals after the previous one
// starts a new run (stamping was interrupted).
func (t *Tracker) Stamped(at time.Time) {
	cfg := t.cfg.norm()
	ns := at.UnixNano()
	if !t.stamping || ns < t.stampLast || ns-t.stampLast > 2*int64(cfg.StampInterval) {
		t.stampStart = ns
	}
	t.stamping, t.stampLast = true, ns
}

// tickWords is what a Tracker remembers of the previous snapshot.
type tickWords struct {
	ticks, boots, timerLo, echoLo, echoHi uint32
	beats                                 [region.NumSlots]uint32
}

// NewTracker returns a Tracker using cfg.
func NewTracker(cfg VerdictConfig) *Tracker { return &Tracker{cfg: cfg} }

// ReportPanic records external panic evidence. Verdicts say panicked
// until the boot count moves (the guest rebooted).
func (t *Tracker) ReportPanic(ev PanicEvidence) {
	t.hasPanic = true
	t.panicEv = ev
	t.panicBoots = t.prev.boots
	t.panicBootsKnow = t.have
}

// Assess returns the verdict of a single snapshot, with optional panic
// evidence (nil: none). Freshness comes from the echo of the host stamp:
// age = At - echo; alive if age <= K*period (+ the amount by which the
// stamp interval exceeds K-1 periods, if it does). Without a
// usable echo (none written, or host stamping stopped so the echo is only
// a lower bound), the verdict is StateUnknown: use a Tracker (or Check)
// over two snapshots.
func Assess(s Snapshot, cfg VerdictConfig, ev *PanicEvidence) Verdict {
	t := Tracker{cfg: cfg}
	if ev != nil {
		t.ReportPanic(*ev)
	}
	return t.Update(s)
}

// Update judges snapshot s, taking the previous snapshots into account.
func (t *Tracker) Update(s Snapshot) (v Verdict) {
	cfg := t.cfg.norm()
	v.At = s.At
	v.Snapshot = s
	sp := &v.Snapshot
	nowNs := s.At.UnixNano()
	if ms, ok := msValue(s.HostStampLo, s.HostStampHi, nowNs); ok {
		v.HostStamp = time.UnixMilli(ms)
	}

	var bad *region.Field
	v.State, v.Reason, bad = headerCheck(sp)
	if bad != nil {
		v.Field, v.FieldOffset = bad.Name, uint32(bad.Offset)
	}
	if v.State == StateNone {
		if s.Torn {
			v.State, v.Reason = StateTorn, "seq was odd or changing on every read attempt"
		} else {
			t.fresh(&v, sp, nowNs, cfg)
		}
	}
	if t.hasPanic {
		if v.State == StateRebooted || (v.State != StateTorn && v.State != StateCorrupt && v.State != StateAbsent &&
			t.panicBootsKnow && s.Boots != t.panicBoots) {
			// The guest booted again since the panic: the evidence is spent.
			t.hasPanic = false
			v.State, v.Reason = StateRebooted, "boot count changed since the reported panic"
		} else {
			if !t.panicBootsKnow && t.have {
				t.panicBoots, t.panicBootsKnow = t.prev.boots, true
			}
			v.State, v.Reason = StatePanicked, "panic evidence reported and no reboot since"
			v.HasPanic, v.Panic = true, t.panicEv
		}
	}
	return v
}

// headerCheck validates the header words; f is the word at fault.
func headerCheck(s *Snapshot) (st State, reason string, f *region.Field) {
	switch {
	case s.Magic == 0:
		return StateAbsent, "magic is 0: the region was never initialised by the SSDT", &region.MagicWord
	case s.Magic != region.Magic:
		return StateCorrupt, "bad magic", &region.MagicWord
	case s.Version != region.Version:
		return StateCorrupt, "unknown layout version", &region.VersionWord
	case s.HeaderSize != region.HeaderSize:
		return StateCorrupt, "header size does not match layout version 1", &region.HeaderSizeWord
	case region.ValidSize(uint64(s.RegionSize)) != nil:
		return StateCorrupt, "region size is not a valid region size", &region.RegionSize
	case int64(s.RegionSize) > s.Avail:
		return StateCorrupt, "region size is larger than the mapped source", &region.RegionSize
	}
	return StateNone, "", nil
}

// fresh decides alive / stale / rebooted / unknown for a valid, untorn
// snapshot and updates the history.
func (t *Tracker) fresh(v *Verdict, s *Snapshot, now int64, cfg VerdictConfig) {
	period := cfg.DefaultPeriod
	if s.Period != 0 {
		period = time.Duration(s.Period) * 100 * time.Millisecond // ≤ 4.3e17 ns: no overflow
	}
	v.Period = period
	thr := int64(mulDur(period, cfg.K))

	rebooted, changed := false, false
	prevBoots := t.prev.boots
	if t.have {
		p := &t.prev
		rebooted = s.Boots != p.boots || s.Ticks < p.ticks
		changed = rebooted || s.Ticks != p.ticks || s.TimerLo != p.timerLo ||
			s.EchoLo != p.echoLo || s.EchoHi != p.echoHi
	} else {
		t.since = now
	}
	if changed {
		t.lastChange, t.since, t.changeLag = t.prevAt, t.prevAt, now-t.prevAt
	}
	t.prevAt = now
	t.slots(v, s, now, cfg)
	t.prev = tickWords{ticks: s.Ticks, boots: s.Boots, timerLo: s.TimerLo, echoLo: s.EchoLo, echoHi: s.EchoHi}
	for i := range s.Slots {
		t.prev.beats[i] = s.Slots[i].Beat
	}
	t.have = true

	var last int64 // host time of the last tick, Unix ns; 0 unknown
	echoMs, echoOK := msValue(s.EchoLo, s.EchoHi, now)
	echo := echoMs * 1e6
	v.EchoImplausible = !echoOK && (s.EchoLo != 0 || s.EchoHi != 0)
	var lag int64 // how much earlier than the real tick `last` may be
	if echoOK {
		last, v.LastTickSource, lag = echo, TickEcho, int64(cfg.StampInterval)
	}
	if t.lastChange != 0 && t.lastChange > last {
		last, v.LastTickSource, lag = t.lastChange, TickObserved, t.changeLag
	}
	var age int64
	if v.LastTickSource != TickUnknown {
		age = now - last
		if age < 0 {
			age = 0
		}
		v.LastTick = time.Unix(0, last)
		v.Age = time.Duration(age)
	}

	if rebooted {
		v.State, v.Reason = StateRebooted, rebootReason(s.Boots, prevBoots)
		return
	}

	// last is a lower bound: a healthy guest's age can reach one period
	// plus lag. With lag ≤ (K-1) periods no tolerance is needed and a hang
	// is reported within K periods plus one poll interval of the real last
	// tick; a longer lag (polling or stamping slower than the tick) widens
	// the threshold by the excess rather than raise false alarms.
	tol := lag - int64(mulDur(period, cfg.K-1))
	if tol < 0 {
		tol = 0
	}
	if v.LastTickSource != TickUnknown && age <= int64(addDur(time.Duration(thr), time.Duration(tol))) {
		v.State, v.Reason = StateAlive, "ticked within K periods"
		return
	}
	// Whether the host has been stamping long enough that a live guest
	// must have copied a recent stamp: from the region's stamp for a
	// reader that does not stamp; from its own stamps for one that does
	// (a live guest copies a stamp at least stamp interval + one period
	// old, so the rule waits for K periods plus a stamp interval of them).
	keeps := false
	justStarted := false
	if echoOK {
		host := int64(0)
		if !v.HostStamp.IsZero() {
			host = v.HostStamp.UnixNano()
		}
		keeps = host != 0 && now-host <= 2*int64(cfg.StampInterval)
		if t.stamping {
			running := now-t.stampLast <= 2*int64(cfg.StampInterval)
			keeps = running && now-t.stampStart > int64(addDur(time.Duration(thr), cfg.StampInterval))
			justStarted = running && !keeps
		}
		switch {
		case keeps:
			v.State, v.Reason = StateStale, "host stamp echo older than K periods while the host keeps stamping"
			return
		case host != 0 && host > echo && now-host > thr:
			v.State, v.Reason = StateStale, "guest has not copied a host stamp written more than K periods ago"
			return
		}
	}
	if now-t.since > thr {
		v.State, v.Reason = StateStale, "tick words unchanged for more than K periods of host time"
		return
	}
	switch {
	case justStarted:
		v.State, v.Reason = StateUnknown, "host stamping started here less than K periods ago: waiting for the guest to copy a new stamp"
	case echoOK:
		v.State, v.Reason = StateUnknown, "host stamping stopped: the echo is only a lower bound; watch the ticks"
	case v.EchoImplausible:
		v.State, v.Reason = StateUnknown, "echo lies in the future: ignored; watch the ticks"
	default:
		v.State, v.Reason = StateUnknown, "no host stamp echo: freshness needs a second snapshot"
	}
}

func rebootReason(boots, prev uint32) string {
	if boots == prev {
		return "tick count went backwards"
	}
	return "boot count changed"
}

// slots judges the application slots and updates their history.
func (t *Tracker) slots(v *Verdict, s *Snapshot, now int64, cfg VerdictConfig) {
	for i := range s.Slots {
		w := &s.Slots[i]
		if !w.Used() {
			t.slotSeen[i] = false
			t.slotLast[i] = 0
			continue
		}
		switch {
		case !t.slotSeen[i]:
			t.slotSeen[i], t.slotSince[i], t.slotLast[i] = true, now, 0
		case w.Beat != t.prev.beats[i]:
			t.slotLast[i], t.slotSince[i] = now, now
		}
		st := &v.Slots[i]
		st.Period = time.Duration(w.PeriodMs) * time.Millisecond
		age := int64(-1)
		if t.slotLast[i] != 0 {
			age = now - t.slotLast[i]
			st.LastBeat = time.Unix(0, t.slotLast[i])
			st.Age = time.Duration(age)
		}
		st.State = SlotUnknown
		if w.PeriodMs == 0 {
			continue
		}
		thr := int64(mulDur(st.Period, cfg.K))
		switch {
		case age >= 0 && age <= thr:
			st.State = SlotAlive
		case now-t.slotSince[i] > thr:
			st.State = SlotStale
		}
	}
}

// msValue decodes a (lo, hi) pair of milliseconds since the Unix epoch,
// judged against the host time now (Unix ns). 0 means none. A pair lying
// more than 2^31 ms in the future is a torn write (high word newer than
// low word, see region.Pair: off by region.TornExcess ms) and is
// corrected; any other value more than futureSlack after now is refused as
// implausible.
func msValue(lo, hi uint32, now int64) (int64, bool) {
	v := region.Join(lo, hi)
	if v == 0 || v > math.MaxInt64/1_000_000 {
		return 0, false
	}
	limit := (now + int64(futureSlack)) / 1_000_000
	if int64(v) > limit+1<<31 && hi > 0 {
		// More than 2^31 ms (24.8 days) ahead: a high word newer than its
		// low word; the pair was (hi-1, lo).
		v -= region.TornExcess
	}
	if int64(v) > limit {
		return 0, false
	}
	return int64(v), true
}

// mulDur is d*k (k >= 0), saturating at the largest duration.
func mulDur(d time.Duration, k int) time.Duration {
	if k == 0 {
		return 0
	}
	if d > 0 && int64(d) > math.MaxInt64/int64(k) {
		return math.MaxInt64
	}
	return d * time.Duration(k)
}

func addDur(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Check reads r and returns its verdict, re-reading it while the verdict
// is StateUnknown (no usable echo): every quarter period (between 10 ms
// and 250 ms) until the ticks move (alive), K periods pass without a tick
// (stale), wait elapses or ctx is done (the last verdict is returned, still
// unknown). It also keeps re-reading, every quarter of the slot's period,
// while an application slot that promises a period has not been judged
// yet (its beat moves: alive; K of its periods without a beat: stale), so
// that an application hung behind a live kernel is reported within wait. A torn snapshot is re-read every millisecond for up to 50 ms
// before torn is reported. With wait 0 Check is a single snapshot.
func Check(ctx context.Context, r *Region, cfg VerdictConfig, wait time.Duration) (Verdict, error) {
	var t Tracker
	t.cfg = cfg
	start := time.Now()
	s, err := snapshotPatient(ctx, r, 50*time.Millisecond)
	if err != nil {
		return faultVerdict(s, err), err
	}
	v := t.Update(s)
	for v.State == StateUnknown || slotsPending(&v) {
		step := v.Period / 4
		if p := slotsPeriod(&v); v.State != StateUnknown || (p > 0 && p < v.Period) {
			step = p / 4
		}
		if step < 10*time.Millisecond {
			step = 10 * time.Millisecond
		}
		if step > 250*time.Millisecond {
			step = 250 * time.Millisecond
		}
		left := wait - time.Since(start)
		if left <= 0 {
			break
		}
		if step > left {
			step = left
		}
		timer := time.NewTimer(step)
		select {
		case <-ctx.Done():
			timer.Stop()
			return v, ctx.Err()
		case <-timer.C:
		}
		if s, err = snapshotPatient(ctx, r, 50*time.Millisecond); err != nil {
			return faultVerdict(s, err), err
		}
		v = t.Update(s)
	}
	return v, nil
}

// slotsPending reports whether an application slot that promises a period
// is still unknown (not observed long enough to be judged).
func slotsPending(v *Verdict) bool {
	for _, sl := range v.Slots {
		if sl.State == SlotUnknown && sl.Period > 0 {
			return true
		}
	}
	return false
}

// slotsPeriod is the shortest period among the pending slots (0: none).
func slotsPeriod(v *Verdict) time.Duration {
	var p time.Duration
	for _, sl := range v.Slots {
		if sl.State == SlotUnknown && sl.Period > 0 && (p == 0 || sl.Period < p) {
			p = sl.Period
		}
	}
	return p
}

// snapshotPatient re-reads a torn region every millisecond for up to
// patience.
func snapshotPatient(ctx context.Context, r *Region, patience time.Duration) (Snapshot, error) {
	deadline := time.Now().Add(patience)
	for {
		s, err := r.Snapshot()
		if err != nil || !s.Torn || time.Now().After(deadline) || ctx.Err() != nil {
			return s, err
		}
		time.Sleep(time.Millisecond)
	}
}

// faultVerdict is the verdict for a snapshot that could not be taken.
func faultVerdict(s Snapshot, err error) Verdict {
	v := Verdict{At: s.At, Snapshot: s, State: StateCorrupt, Reason: "reading the region failed (mapping fault or closed region)"}
	v.Fault = errors.Is(err, ErrFault)
	return v
}
