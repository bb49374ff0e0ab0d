package hostreader

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

// A new stamper on a healthy guest whose previous stamper died a while ago
// (the echo holds that stamper's last stamp, older than K periods): its
// first verdict is not stale. It said "host stamp echo older than K periods
// while the host keeps stamping", having just written that stamp itself.
func TestNewStamperNoFalseStale(t *testing.T) {
	p := writeRegionFile(t, t.TempDir(), "vm", make([]byte, 4096))
	// The guest ticks every 100 ms, its period word says 500 ms (K 3:
	// 1.5 s), which leaves room for a loaded machine.
	g := startGuest(t, p, 100*time.Millisecond, 5)
	// The old stamper stamped once, 3 s ago, and died; the guest has been
	// copying that stamp since.
	old, err := OpenRegion(p, OpenOptions{Writable: true})
	require.NoError(t, err)
	require.NoError(t, old.StampHostTime(time.Now().Add(-3*time.Second)))
	old.Close()
	time.Sleep(250 * time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := NewWatcher(ctx, WatchOptions{Interval: 100 * time.Millisecond, Stamp: true})
	defer w.Close()
	require.NoError(t, w.Add("vm", p))
	var seen []Change
	deadline := time.After(3 * time.Second)
	for len(seen) == 0 || seen[len(seen)-1].Verdict.State != StateAlive {
		select {
		case c := <-w.Changes():
			assert.NotEqual(t, StateStale, c.Verdict.State, "verdict %d: %s", len(seen), c.Verdict.Reason)
			seen = append(seen, c)
		case <-deadline:
			t.Fatalf("not alive within 3 s: %v", seen)
		}
	}

	// A hang is still reported: the guest stops, the verdict goes stale.
	g.ticking.Store(false)
	waitChange(t, w.Changes(), "vm", StateStale, 10*time.Second)
}

// Tracker level, with a fixed clock: the echo of an old stamp, the host
// stamp just written by this tracker's owner.
func TestTrackerStampedDatesStampingFromOwnStamps(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	img := newImage(4096)
	putWord(img, region.Period.Offset, 10) // 1 s
	putWord(img, region.Ticks.Offset, 50)
	setEcho(img, t0)
	now := t0.Add(4 * time.Second)
	setHostStamp(img, now)

	var tr Tracker
	tr.Stamped(now)
	v := tr.Update(snapOf(t, img, now))
	assert.Equal(t, StateUnknown, v.State, v.Reason)
	assert.Contains(t, v.Reason, "stamping started here")

	// Without Stamped (a reader that does not stamp, another process
	// stamping), the region's fresh stamp still proves it: stale.
	assert.Equal(t, StateStale, Assess(snapOf(t, img, now), VerdictConfig{}, nil).State)

	// The guest is hung: this process keeps stamping every second, the
	// echo stays; once K periods + a stamp interval of own stamps passed,
	// stale from the echo (the unchanged tick words say so too by then).
	var last Verdict
	for i := 1; i <= 5; i++ {
		at := now.Add(time.Duration(i) * time.Second)
		setHostStamp(img, at)
		tr.Stamped(at)
		last = tr.Update(snapOf(t, img, at))
		if i < 3 {
			assert.NotEqual(t, StateStale, last.State, "after %d s: %s", i, last.Reason)
		}
	}
	assert.Equal(t, StateStale, last.State)
	assert.Equal(t, "host stamp echo older than K periods while the host keeps stamping", last.Reason)

	// A gap in this process's stamping starts a new run.
	at := now.Add(20 * time.Second)
	setHostStamp(img, at)
	tr.Stamped(at)
	v = tr.Update(snapOf(t, img, at))
	assert.NotEqual(t, "host stamp echo older than K periods while the host keeps stamping", v.Reason)
}
