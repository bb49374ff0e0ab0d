package hostreader

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

var t0 = time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)

func snapOf(t *testing.T, img []byte, at time.Time) Snapshot {
	t.Helper()
	s, err := DecodeRegion(img, at)
	require.NoError(t, err)
	return s
}

func TestVerdictHeaderStates(t *testing.T) {
	cases := []struct {
		name   string
		mod    func(b []byte)
		state  State
		field  string
		offset int
	}{
		{"absent", func(b []byte) { clear(b) }, StateAbsent, "magic", region.MagicWord.Offset},
		{"bad magic", func(b []byte) { putWord(b, region.MagicWord.Offset, 0x31474441+1) }, StateCorrupt, "magic", region.MagicWord.Offset},
		{"version", func(b []byte) { putWord(b, region.VersionWord.Offset, 2) }, StateCorrupt, "version", region.VersionWord.Offset},
		{"header size", func(b []byte) { putWord(b, region.HeaderSizeWord.Offset, 0x80) }, StateCorrupt, "header_size", region.HeaderSizeWord.Offset},
		{"region size not page multiple", func(b []byte) { putWord(b, region.RegionSize.Offset, 5000) }, StateCorrupt, "region_size", region.RegionSize.Offset},
		{"region size zero", func(b []byte) { putWord(b, region.RegionSize.Offset, 0) }, StateCorrupt, "region_size", region.RegionSize.Offset},
		{"region size beyond source", func(b []byte) { putWord(b, region.RegionSize.Offset, 16384) }, StateCorrupt, "region_size", region.RegionSize.Offset},
		{"torn", func(b []byte) { putWord(b, region.Seq.Offset, 3) }, StateTorn, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := newImage(8192)
			setEcho(img, t0)
			setHostStamp(img, t0)
			c.mod(img)
			// Go through bytes without RegionFromBytes' size check so a
			// header changed after opening is judged at snapshot time.
			r, err := RegionFromBytes(newImage(8192))
			require.NoError(t, err)
			copy(unsafeBytes(r), img)
			s, err := r.SnapshotAt(t0)
			require.NoError(t, err)
			v := Assess(s, VerdictConfig{}, nil)
			assert.Equal(t, c.state, v.State, v.Reason)
			assert.Equal(t, c.field, v.Field)
			assert.Equal(t, uint32(c.offset), v.FieldOffset)
			assert.NotEmpty(t, v.Reason)
			assert.Contains(t, v.String(), c.state.String())
			if c.state == StateCorrupt {
				assert.Contains(t, v.String(), c.field)
			}
		})
	}
}

// unsafeBytes returns the bytes behind a byte-backed region (tests only).
func unsafeBytes(r *Region) []byte {
	return (*[region.HeaderSize]byte)(unsafePointer(r.words))[:]
}

func TestVerdictFromEcho(t *testing.T) {
	cfg := VerdictConfig{} // K 3, stamp interval 1 s
	now := t0
	cases := []struct {
		name      string
		echo      time.Time
		stamp     time.Time
		state     State
		source    TickSource
		wantAgeMs int64
	}{
		{"fresh echo", now.Add(-1500 * time.Millisecond), now.Add(-200 * time.Millisecond), StateAlive, TickEcho, 1500},
		// The echo is a lower bound of the tick time: the bound is k*period
		// (the 1 s stamp interval is within (k-1) periods, so no tolerance).
		{"at the bound k*period", now.Add(-3 * time.Second), now.Add(-100 * time.Millisecond), StateAlive, TickEcho, 3000},
		{"old echo while host stamps", now.Add(-3001 * time.Millisecond), now.Add(-100 * time.Millisecond), StateStale, TickEcho, 3001},
		{"stamping stopped, guest saw last stamp", now.Add(-60 * time.Second), now.Add(-60 * time.Second), StateUnknown, TickEcho, 60000},
		{"stamping stopped, guest missed later stamp", now.Add(-60 * time.Second), now.Add(-30 * time.Second), StateStale, TickEcho, 60000},
		{"no stamp at all but echo", now.Add(-60 * time.Second), time.Time{}, StateUnknown, TickEcho, 60000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := newImage(4096)
			setEcho(img, c.echo)
			if !c.stamp.IsZero() {
				setHostStamp(img, c.stamp)
			}
			v := Assess(snapOf(t, img, now), cfg, nil)
			assert.Equal(t, c.state, v.State, v.Reason)
			assert.Equal(t, c.source, v.LastTickSource)
			assert.Equal(t, c.wantAgeMs, v.Age.Milliseconds())
			assert.True(t, v.LastTick.Equal(c.echo), "%v", v.LastTick)
			assert.Equal(t, time.Second, v.Period)
		})
	}
}

func TestVerdictNoEchoIsUnknownThenObserved(t *testing.T) {
	img := newImage(4096) // period 10 ds = 1 s, K 3
	var tr Tracker
	v := tr.Update(snapOf(t, img, t0))
	assert.Equal(t, StateUnknown, v.State)
	assert.Contains(t, v.Reason, "no host stamp echo")
	assert.Equal(t, TickUnknown, v.LastTickSource)

	// Ticks moved one second later: alive, observed. The tick happened
	// after the previous snapshot: that is its lower bound.
	putWord(img, region.Ticks.Offset, 2)
	v = tr.Update(snapOf(t, img, t0.Add(time.Second)))
	assert.Equal(t, StateAlive, v.State, v.Reason)
	assert.Equal(t, TickObserved, v.LastTickSource)
	assert.True(t, v.LastTick.Equal(t0), "%v", v.LastTick)

	// The timer word alone moving also counts as a tick.
	putWord(img, region.TimerLo.Offset, 1234)
	v = tr.Update(snapOf(t, img, t0.Add(2*time.Second)))
	assert.Equal(t, StateAlive, v.State)
	assert.Equal(t, time.Second, v.Age)

	// Nothing moves: alive until K periods (3 s) past the lower bound
	// (t0+1 s), then stale.
	v = tr.Update(snapOf(t, img, t0.Add(4*time.Second)))
	assert.Equal(t, StateAlive, v.State)
	assert.Equal(t, 3*time.Second, v.Age)
	v = tr.Update(snapOf(t, img, t0.Add(4*time.Second+time.Millisecond)))
	assert.Equal(t, StateStale, v.State, v.Reason)
	assert.Contains(t, v.Reason, "unchanged")

	// It ticks again: alive.
	putWord(img, region.Ticks.Offset, 3)
	v = tr.Update(snapOf(t, img, t0.Add(6*time.Second)))
	assert.Equal(t, StateAlive, v.State)
}

func TestVerdictNeverTicksIsStaleAfterKPeriods(t *testing.T) {
	img := newImage(4096)
	putWord(img, region.Period.Offset, 5) // 0.5 s
	tr := NewTracker(VerdictConfig{K: 2})
	assert.Equal(t, StateUnknown, tr.Update(snapOf(t, img, t0)).State)
	assert.Equal(t, StateUnknown, tr.Update(snapOf(t, img, t0.Add(time.Second))).State)
	v := tr.Update(snapOf(t, img, t0.Add(time.Second+time.Millisecond)))
	assert.Equal(t, StateStale, v.State)
	assert.Equal(t, 500*time.Millisecond, v.Period)
}

func TestVerdictRebooted(t *testing.T) {
	img := newImage(4096)
	putWord(img, region.Ticks.Offset, 50)
	var tr Tracker
	tr.Update(snapOf(t, img, t0))
	putWord(img, region.Boots.Offset, 2)
	putWord(img, region.Ticks.Offset, 1)
	v := tr.Update(snapOf(t, img, t0.Add(time.Second)))
	assert.Equal(t, StateRebooted, v.State)
	assert.Equal(t, "boot count changed", v.Reason)
	assert.Equal(t, uint32(2), v.Snapshot.Boots)
	putWord(img, region.Ticks.Offset, 2)
	v = tr.Update(snapOf(t, img, t0.Add(2*time.Second)))
	assert.Equal(t, StateAlive, v.State, "a reboot is reported once")

	// Ticks going back without a boot count change (region re-created).
	putWord(img, region.Ticks.Offset, 1)
	v = tr.Update(snapOf(t, img, t0.Add(3*time.Second)))
	assert.Equal(t, StateRebooted, v.State)
	assert.Equal(t, "tick count went backwards", v.Reason)

	// Boot count going through absent (zeroed during boot) and back.
	clear(img)
	v = tr.Update(snapOf(t, img, t0.Add(4*time.Second)))
	assert.Equal(t, StateAbsent, v.State)
	copy(img, newImage(4096))
	putWord(img, region.Boots.Offset, 3)
	v = tr.Update(snapOf(t, img, t0.Add(5*time.Second)))
	assert.Equal(t, StateRebooted, v.State)
}

func TestVerdictPanicEvidence(t *testing.T) {
	img := newImage(4096)
	setEcho(img, t0)
	setHostStamp(img, t0)
	ev := PanicEvidence{Source: "pvpanic", At: t0, Detail: "GUEST_PANICKED \x1b[31m"}
	v := Assess(snapOf(t, img, t0), VerdictConfig{}, &ev)
	assert.Equal(t, StatePanicked, v.State)
	assert.True(t, v.HasPanic)
	assert.Equal(t, ev, v.Panic)
	assert.NotContains(t, v.String(), "\x1b", "guest text escaped")
	assert.Contains(t, v.String(), `\x1b[31m`)

	// Tracker: alive, panic reported, stays panicked (even while the echo
	// is fresh), cleared by a reboot.
	var tr Tracker
	assert.Equal(t, StateAlive, tr.Update(snapOf(t, img, t0)).State)
	tr.ReportPanic(PanicEvidence{Source: "erst", RecordID: 7, At: t0})
	v = tr.Update(snapOf(t, img, t0.Add(time.Second)))
	assert.Equal(t, StatePanicked, v.State)
	assert.Equal(t, uint64(7), v.Panic.RecordID)
	v = tr.Update(snapOf(t, img, t0.Add(30*time.Second)))
	assert.Equal(t, StatePanicked, v.State, "panicked wins over stale")
	putWord(img, region.Boots.Offset, 2)
	putWord(img, region.Ticks.Offset, 1)
	setEcho(img, t0.Add(31*time.Second))
	setHostStamp(img, t0.Add(31*time.Second))
	v = tr.Update(snapOf(t, img, t0.Add(31*time.Second)))
	assert.Equal(t, StateRebooted, v.State)
	assert.False(t, v.HasPanic)
	putWord(img, region.Ticks.Offset, 2)
	v = tr.Update(snapOf(t, img, t0.Add(32*time.Second)))
	assert.Equal(t, StateAlive, v.State)

	// Panic reported while the region is absent: panicked; the first valid
	// header then pins the boot count, a later change clears it.
	var tr2 Tracker
	zero := make([]byte, 4096)
	tr2.Update(snapOf(t, zero, t0))
	tr2.ReportPanic(ev)
	assert.Equal(t, StatePanicked, tr2.Update(snapOf(t, zero, t0.Add(time.Second))).State)
	img2 := newImage(4096)
	assert.Equal(t, StatePanicked, tr2.Update(snapOf(t, img2, t0.Add(2*time.Second))).State)
	putWord(img2, region.Boots.Offset, 2)
	assert.Equal(t, StateRebooted, tr2.Update(snapOf(t, img2, t0.Add(3*time.Second))).State)
}

func TestEchoTornPairIsCorrected(t *testing.T) {
	// Real echo: high word h, low word just below the 2^32 ms carry. A torn
	// copy pairs the new high word (h+1) with the old low word.
	real := uint64(0x19a)<<32 | 0xfffff000
	now := time.UnixMilli(int64(real) + 800)
	img := newImage(4096)
	putWord(img, region.EchoLo.Offset, uint32(real))
	putWord(img, region.EchoHi.Offset, uint32(real>>32)+1)
	setHostStamp(img, now.Add(-100*time.Millisecond))
	v := Assess(snapOf(t, img, now), VerdictConfig{}, nil)
	assert.Equal(t, StateAlive, v.State, v.Reason)
	assert.Equal(t, int64(real), v.LastTick.UnixMilli())
	assert.Equal(t, 800*time.Millisecond, v.Age)

	// The same torn pattern on our own host stamp words.
	putWord(img, region.HostStampLo.Offset, uint32(real))
	putWord(img, region.HostStampHi.Offset, uint32(real>>32)+1)
	v = Assess(snapOf(t, img, now), VerdictConfig{}, nil)
	assert.Equal(t, int64(real), v.HostStamp.UnixMilli())

	// An echo in the future that is not a torn pair is refused.
	setEcho(img, now.Add(time.Hour))
	v = Assess(snapOf(t, img, now), VerdictConfig{}, nil)
	assert.True(t, v.EchoImplausible)
	assert.Equal(t, StateUnknown, v.State)
	assert.Contains(t, v.Reason, "future")
	js, err := json.Marshal(v)
	require.NoError(t, err)
	assert.Contains(t, string(js), `"echo_implausible":true`)
	// So is one beyond int64 milliseconds.
	putWord(img, region.EchoHi.Offset, 0xffffffff)
	v = Assess(snapOf(t, img, now), VerdictConfig{}, nil)
	assert.True(t, v.EchoImplausible)
}

func TestStampHostTimeOrderMatchesCorrection(t *testing.T) {
	// StampHostTime writes high then low. Replay every interleaving of the
	// AML's copy (low then high) with it across a carry: each copy must
	// decode to the old or the new stamp, never 49 days off.
	oldMs := int64(0x19a)<<32 | 0xffffff00
	newMs := oldMs + 0x200 // carries into the high word
	hostWrites := []func(w *[2]uint32){
		func(w *[2]uint32) { w[1] = uint32(uint64(newMs) >> 32) }, // hi first
		func(w *[2]uint32) { w[0] = uint32(newMs) },
	}
	for loAfter := 0; loAfter <= 2; loAfter++ { // host writes done before the AML reads low
		for hiAfter := loAfter; hiAfter <= 2; hiAfter++ { // ... before it reads high
			w := [2]uint32{uint32(oldMs), uint32(uint64(oldMs) >> 32)}
			for i := 0; i < loAfter; i++ {
				hostWrites[i](&w)
			}
			lo := w[0]
			for i := loAfter; i < hiAfter; i++ {
				hostWrites[i](&w)
			}
			hi := w[1]
			got, ok := msValue(lo, hi, time.UnixMilli(newMs+100).UnixNano())
			require.True(t, ok)
			assert.Contains(t, []int64{oldMs, newMs}, got, "lo after %d writes, hi after %d", loAfter, hiAfter)
		}
	}
}

func TestVerdictPeriodBounds(t *testing.T) {
	img := newImage(4096)
	setEcho(img, t0.Add(-1500*time.Millisecond))
	setHostStamp(img, t0)
	putWord(img, region.Period.Offset, 0)
	v := Assess(snapOf(t, img, t0), VerdictConfig{DefaultPeriod: 500 * time.Millisecond}, nil)
	assert.Equal(t, 500*time.Millisecond, v.Period)
	assert.Equal(t, StateAlive, v.State, "1.5 s <= 3*0.5 s")
	setEcho(img, t0.Add(-1501*time.Millisecond))
	v = Assess(snapOf(t, img, t0), VerdictConfig{DefaultPeriod: 500 * time.Millisecond}, nil)
	assert.Equal(t, StateStale, v.State)
	// Stamping slower than (K-1) periods widens the threshold by the excess
	// (3 s - 2*0.5 s = 2 s) instead of calling a healthy guest stale.
	slow := VerdictConfig{DefaultPeriod: 500 * time.Millisecond, StampInterval: 3 * time.Second}
	setEcho(img, t0.Add(-3500*time.Millisecond))
	assert.Equal(t, StateAlive, Assess(snapOf(t, img, t0), slow, nil).State)
	setEcho(img, t0.Add(-3501*time.Millisecond))
	assert.Equal(t, StateStale, Assess(snapOf(t, img, t0), slow, nil).State)

	// A hostile period and a huge K saturate instead of overflowing.
	putWord(img, region.Period.Offset, 0xffffffff)
	v = Assess(snapOf(t, img, t0), VerdictConfig{K: 1 << 30}, nil)
	assert.Equal(t, StateAlive, v.State)
	assert.Equal(t, time.Duration(0xffffffff)*100*time.Millisecond, v.Period)
}

func TestSlotVerdicts(t *testing.T) {
	img := newImage(4096)
	setSlot(img, 0, 1, 200, "web")          // 200 ms promise
	setSlot(img, 3, 9, 0, "noperiod")       // no promise
	setSlot(img, 5, 1, 1000, "\x1b]0;evil") // hostile tag
	var tr Tracker
	v := tr.Update(snapOf(t, img, t0))
	assert.Equal(t, SlotUnknown, v.Slots[0].State, "one snapshot cannot tell")
	assert.Equal(t, SlotUnused, v.Slots[1].State)
	assert.Equal(t, SlotUnknown, v.Slots[3].State)

	setSlot(img, 0, 2, 200, "web")
	v = tr.Update(snapOf(t, img, t0.Add(100*time.Millisecond)))
	assert.Equal(t, SlotAlive, v.Slots[0].State)
	assert.True(t, v.Slots[0].LastBeat.Equal(t0.Add(100*time.Millisecond)))
	assert.Equal(t, 200*time.Millisecond, v.Slots[0].Period)

	// 3 * 200 ms without a beat: stale; the machine-level state is not
	// changed by an app slot.
	putWord(img, region.Ticks.Offset, 5)
	v = tr.Update(snapOf(t, img, t0.Add(701*time.Millisecond)))
	assert.Equal(t, SlotStale, v.Slots[0].State)
	assert.Equal(t, SlotUnknown, v.Slots[5].State, "no beat seen, but 3 s have not passed")
	assert.Equal(t, 1, v.StaleSlots())
	assert.Equal(t, StateAlive, v.State)
	assert.Contains(t, v.String(), "stale app slot")

	var sb strings.Builder
	require.NoError(t, v.WriteText(&sb))
	assert.Contains(t, sb.String(), `tag "web"`)
	assert.Contains(t, sb.String(), `\x1b]0;evil`)
	assert.NotContains(t, sb.String(), "\x1b")

	v = tr.Update(snapOf(t, img, t0.Add(3001*time.Millisecond)))
	assert.Equal(t, SlotStale, v.Slots[5].State, "no beat for 3 of its periods")
	assert.Equal(t, SlotUnknown, v.Slots[3].State, "no period promised: never stale")

	// Slot cleared: unused again.
	setSlot(img, 0, 0, 0, "\x00\x00\x00")
	v = tr.Update(snapOf(t, img, t0.Add(3100*time.Millisecond)))
	assert.Equal(t, SlotUnused, v.Slots[0].State)
}

func TestVerdictJSON(t *testing.T) {
	img := newImage(4096)
	setEcho(img, t0.Add(-time.Second))
	setHostStamp(img, t0)
	putWord(img, region.OSI.Offset, region.OSIValid|1|1<<7)
	putWord(img, region.Rev.Offset, 2)
	setSlot(img, 2, 4, 500, "db\"\\\x01")
	ev := PanicEvidence{Source: "erst", At: t0, Detail: "Kernel panic\x00x", RecordID: 99}
	v := Assess(snapOf(t, img, t0), VerdictConfig{}, nil)
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{"state", "reason", "at", "ticks", "boots", "period_ds", "period_ms", "timer_lo",
		"last_tick", "last_tick_source", "age_ms", "host_stamp", "echo_ms", "header", "seq", "attempts", "torn",
		"osi", "rev", "mailbox", "slots"} {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, "alive", m["state"])
	assert.Equal(t, "echo", m["last_tick_source"])
	assert.EqualValues(t, 1000, m["age_ms"])
	assert.Equal(t, []any{"Linux", "Windows 2015"}, m["osi"].(map[string]any)["names"])
	slots := m["slots"].([]any)
	require.Len(t, slots, 1)
	assert.Equal(t, "db\"\\\x01", slots[0].(map[string]any)["tag"], "the guest's tag as it is: JSON escapes it once")
	assert.NotContains(t, m, "panic")

	v = Assess(snapOf(t, img, t0), VerdictConfig{}, &ev)
	b, err = json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &m))
	p := m["panic"].(map[string]any)
	assert.Equal(t, "Kernel panic\x00x", p["detail"], "the guest's text as it is: JSON escapes it once")
	assert.EqualValues(t, 99, p["record_id"])

	// Corrupt carries the field and offset.
	putWord(img, region.VersionWord.Offset, 9)
	b, err = json.Marshal(Assess(snapOf(t, img, t0), VerdictConfig{}, nil))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, "version", m["field"])
	assert.EqualValues(t, 4, m["field_offset"])
}

func TestStateText(t *testing.T) {
	for s := StateNone; s <= StateUnknown; s++ {
		b, err := s.MarshalText()
		require.NoError(t, err)
		var back State
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, s, back)
	}
	var x State
	assert.Error(t, x.UnmarshalText([]byte("zombie")))
	assert.Equal(t, "State(200)", State(200).String())
}

// Check re-reads a region without an echo until its ticks move.
func TestCheckWaitsForTicks(t *testing.T) {
	img := newImage(4096)
	putWord(img, region.Period.Offset, 1) // 100 ms
	r, err := RegionFromBytes(img)
	require.NoError(t, err)

	v, err := Check(context.Background(), r, VerdictConfig{}, 0)
	require.NoError(t, err)
	assert.Equal(t, StateUnknown, v.State, "wait 0 = one snapshot")

	// Nobody ticks: stale after K periods (300 ms).
	start := time.Now()
	v, err = Check(context.Background(), r, VerdictConfig{}, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, StateStale, v.State)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)

	// A writer ticks every 50 ms: alive well before the wait ends.
	a := &amlWriter{r: r, boots: 1}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				a.tick()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	v, err = Check(context.Background(), r, VerdictConfig{}, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, StateAlive, v.State, v.Reason)
	assert.Equal(t, TickObserved, v.LastTickSource)

	// A cancelled context ends the wait (region without ticks: unknown).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	quiet, err := RegionFromBytes(newImage(4096))
	require.NoError(t, err)
	v, err = Check(ctx, quiet, VerdictConfig{}, 5*time.Second)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, StateUnknown, v.State)
}

// K = 1 is a valid setting (diagread --k 1): judging a valid region with it
// used to divide by zero (K-1 periods of tolerance).
func TestVerdictKOne(t *testing.T) {
	img := newImage(8192)
	setEcho(img, t0)
	setHostStamp(img, t0)
	s, err := DecodeRegion(img, t0.Add(500*time.Millisecond))
	require.NoError(t, err)
	v := Assess(s, VerdictConfig{K: 1}, nil)
	assert.Equal(t, StateAlive, v.State, v.Reason)
	setHostStamp(img, t0.Add(2400*time.Millisecond)) // the host keeps stamping; the echo stays at t0
	s, err = DecodeRegion(img, t0.Add(2500*time.Millisecond))
	require.NoError(t, err)
	v = Assess(s, VerdictConfig{K: 1}, nil)
	assert.Equal(t, StateStale, v.State, v.Reason)
}

// hostileLine is guest text with a quote, an ESC byte and valid UTF-8.
const hostileLine = "Kernel panic - not syncing: \"q\" \x1b[1m café"

// hostileShown is hostileLine as a text printer must show it: the ESC byte
// visibly escaped, the quote and the UTF-8 kept, nothing escaped twice.
const hostileShown = `Kernel panic - not syncing: "q" \x1b[1m café`

func TestEscapeLine(t *testing.T) {
	assert.Equal(t, hostileShown, EscapeLine(hostileLine))
	assert.Equal(t, `a\x0ab\x09c\\d\xff\x7f`, EscapeLine("a\nb\tc\\d\xff\x7f"))
	assert.Equal(t, "a\nb\tc\\\\d\\xff", EscapeLog("a\nb\tc\\d\xff"), "EscapeLog keeps the lines")
	assert.Equal(t, "plain text", EscapeLine("plain text"))
}

// TestVerdictPrintersEscapeOnce: a guest panic line and slot tag holding
// a quote, an ESC byte and "café" are escaped exactly once by each
// printer: text (String, WriteText) escapes the ESC and keeps the rest;
// JSON carries the guest's text as it is.
func TestVerdictPrintersEscapeOnce(t *testing.T) {
	img := newImage(4096)
	setEcho(img, t0.Add(-time.Second))
	setHostStamp(img, t0)
	const tag = "\"\x1bcafé" // 7 bytes
	setSlot(img, 1, 4, 500, tag)
	ev := PanicEvidence{Source: "erst", At: t0, Detail: hostileLine, RecordID: 7}
	v := Assess(snapOf(t, img, t0), VerdictConfig{}, &ev)
	require.True(t, v.HasPanic)
	assert.Equal(t, hostileLine, v.Panic.Detail, "the library value holds the raw text")
	assert.Contains(t, v.Line(), hostileLine, "Line is raw")

	s := v.String()
	assert.Contains(t, s, hostileShown)
	assert.NotContains(t, s, "\x1b")
	assert.NotContains(t, s, `\x22`)
	assert.NotContains(t, s, `\x5c`)

	var sb strings.Builder
	require.NoError(t, v.WriteText(&sb))
	assert.Contains(t, sb.String(), "record 7: "+hostileShown+"\n")
	assert.Contains(t, sb.String(), `tag ""\x1bcafé"`)
	assert.NotContains(t, sb.String(), "\x1b")

	b, err := json.Marshal(v)
	require.NoError(t, err)
	assert.True(t, json.Valid(b))
	var m struct {
		Panic struct {
			Detail string `json:"detail"`
		} `json:"panic"`
		Slots []struct {
			Tag string `json:"tag"`
		} `json:"slots"`
	}
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, hostileLine, m.Panic.Detail)
	require.Len(t, m.Slots, 1)
	assert.Equal(t, tag, m.Slots[0].Tag)
	assert.NotContains(t, string(b), `\\x`, "nothing escaped before the JSON encoding")
}
