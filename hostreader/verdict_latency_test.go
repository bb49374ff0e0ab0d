package hostreader

import (
	"fmt"
	"testing"
	"time"

	"github.com/acpidiag/acpidiag/region"
	"github.com/stretchr/testify/require"
)

// simulateHang plays a guest that ticks every period (with a phase) until
// lastTick, and a host that polls (and, with stamp, stamps its time before
// each read, as the Watcher does) every interval. It returns the time from
// the guest's last real tick to the first stale verdict, and whether any
// verdict before the hang said something other than alive/unknown.
func simulateHang(t *testing.T, period, interval, phase, lastTick time.Duration, stamp bool) (latency time.Duration, falseAlarm bool) {
	t.Helper()
	base := time.Unix(1_700_000_000, 0)
	tr := NewTracker(VerdictConfig{StampInterval: interval})
	var s Snapshot
	s.Magic, s.Version, s.HeaderSize, s.RegionSize = region.Magic, region.Version, region.HeaderSize, 4096
	s.Avail, s.Boots = 4096, 1
	s.Period = uint32(period / (100 * time.Millisecond))
	var stampMs int64
	nextTick := phase
	for now := time.Duration(0); now < lastTick+10*period+10*interval; now += interval {
		// Every tick that happened up to now copied the host stamp current then.
		for nextTick <= now && nextTick <= lastTick {
			s.Ticks++
			s.TimerLo += uint32(period / 100)
			if stamp {
				s.EchoLo, s.EchoHi = uint32(stampMs), uint32(stampMs>>32)
			}
			nextTick += period
		}
		at := base.Add(now)
		if stamp {
			stampMs = at.UnixMilli()
			s.HostStampLo, s.HostStampHi = uint32(stampMs), uint32(stampMs>>32)
		}
		s.At = at
		v := tr.Update(s)
		if v.State == StateStale {
			last := nextTick - period
			if now < lastTick {
				return now - last, true
			}
			return now - last, false
		}
		if now <= lastTick && v.State != StateAlive && v.State != StateUnknown {
			falseAlarm = true
		}
	}
	t.Fatalf("never stale")
	return 0, false
}

// TestHangDetectionBound: a hang must be reported within K periods plus one
// poll interval of the guest's last tick (the bound, k = 3), with
// the host stamping or not, whatever the phase between ticks and polls —
// and a healthy guest must never be called stale. Before the tick time was
// taken as a lower bound, a tick seen one poll late (or an echo given a
// whole stamp interval of tolerance) pushed detection to 3P + 2I.
func TestHangDetectionBound(t *testing.T) {
	for _, tc := range []struct{ period, interval time.Duration }{
		{1024 * time.Millisecond, time.Second}, // PLATFORM.md: _TZP=10 polls every 1.024 s
		{100 * time.Millisecond, 5 * time.Millisecond},
		{100 * time.Millisecond, 50 * time.Millisecond},
		{time.Second, 250 * time.Millisecond},
	} {
		for _, stamp := range []bool{false, true} {
			// The region's period word is in deciseconds; the guest's real
			// period (tc.period) may be a little longer, as Linux re-arms.
			word := tc.period.Truncate(100 * time.Millisecond)
			bound := 3*word + tc.interval
			for phase := time.Duration(0); phase < tc.interval; phase += tc.interval / 7 {
				name := fmt.Sprintf("P=%v/I=%v/stamp=%v/phase=%v", tc.period, tc.interval, stamp, phase)
				lat, falseAlarm := simulateHang(t, tc.period, tc.interval, phase+tc.interval/3, 20*tc.period+phase, stamp)
				require.False(t, falseAlarm, "%s: stale while the guest was still ticking", name)
				require.LessOrEqual(t, lat, bound, "%s: hang detected %v after the last tick, bound 3P+I = %v", name, lat, bound)
			}
		}
	}
}
