package metrics

import (
	"fmt"
	"time"
)

// Aggregate is LAD's FullAggregate (mdsd LADQuery.hh): the count, total,
// minimum, maximum and last of the samples of one counter in one window.
// The zero value is an empty aggregate.
type Aggregate struct {
	Count   int64
	Total   float64
	Minimum float64
	Maximum float64
	Last    float64
}

// Add adds one sample (LADQuery::FullAggregate::Sample).
func (a *Aggregate) Add(v float64) {
	a.Total += v
	a.Last = v
	if a.Count == 0 {
		a.Minimum, a.Maximum = v, v
	} else {
		if v > a.Maximum {
			a.Maximum = v
		}
		if v < a.Minimum {
			a.Minimum = v
		}
	}
	a.Count++
}

// Average is Total/Count, 0 for an empty aggregate (as LAD).
func (a Aggregate) Average() float64 {
	if a.Count == 0 {
		return 0
	}
	return a.Total / float64(a.Count)
}

// MemorySample is one reading of a VM's memory.
type MemorySample struct {
	// Time is when the values were current (for balloon statistics, the
	// guest's last-update).
	Time time.Time
	// TotalBytes is the memory the guest has (balloon stat-total-memory,
	// or the VM's configured RAM for the host view).
	TotalBytes uint64
	// AvailableBytes is the memory available for new work (balloon
	// stat-available-memory, the guest's MemAvailable).
	AvailableBytes uint64
	// Source says where the values come from: SourceBalloon or
	// SourceHost.
	Source string
}

// Sample sources.
const (
	// SourceBalloon: the guest's own numbers, via its virtio_balloon driver.
	SourceBalloon = "balloon"
	// SourceHost: the host's view (QEMU process RSS or its cgroup), for
	// guests without the driver; "used" is what the host spends on the VM.
	SourceHost = "host"
)

// Values returns the four counter values of the sample in Counters order:
// available bytes, percent available, used bytes (total - available) and
// percent used. It returns false for a sample without a total or with more
// available than total.
func (s MemorySample) Values() (v [NumCounters]float64, ok bool) {
	if s.TotalBytes == 0 || s.AvailableBytes > s.TotalBytes {
		return v, false
	}
	total := float64(s.TotalBytes)
	avail := float64(s.AvailableBytes)
	used := total - avail
	v[IdxAvailable] = avail
	v[IdxPercentAvailable] = 100 * avail / total
	v[IdxUsed] = used
	v[IdxPercentUsed] = 100 * used / total
	return v, true
}

// Window is one transfer interval of one VM: [Start, Start+Period), with
// one Aggregate per counter (Counters order).
type Window struct {
	Start      time.Time
	Period     time.Duration
	Aggregates [NumCounters]Aggregate
}

// End is the end of the window (exclusive).
func (w Window) End() time.Time { return w.Start.Add(w.Period) }

// Count is the number of samples in the window.
func (w Window) Count() int64 { return w.Aggregates[0].Count }

// VMAggregator aggregates one VM's samples into windows aligned to the
// transfer period: a window starts at a multiple of the period since the
// Unix epoch (mdsd runs a DerivedEvent at MdsTime::Round(duration)
// boundaries), so every VM's windows line up. It is not safe for
// concurrent use.
type VMAggregator struct {
	period  int64 // ns
	start   int64 // current window start, ns since the epoch
	open    bool
	cur     [NumCounters]Aggregate
	late    uint64
	invalid uint64
}

// NewVMAggregator returns an aggregator for windows of the given period
// (a positive whole number of seconds).
func NewVMAggregator(period time.Duration) (*VMAggregator, error) {
	if period <= 0 || period%time.Second != 0 {
		return nil, fmt.Errorf("metrics: transfer period %s is not a positive whole number of seconds", period)
	}
	return &VMAggregator{period: int64(period)}, nil
}

// Period returns the window period.
func (a *VMAggregator) Period() time.Duration { return time.Duration(a.period) }

// windowStart returns the aligned start of the window holding t (ns).
func (a *VMAggregator) windowStart(ns int64) int64 {
	r := ns % a.period
	if r < 0 {
		r += a.period
	}
	return ns - r
}

// Add adds a sample. When the sample belongs to a later window than the
// open one, the open window is closed and returned (done true) and the
// sample starts the new window. A sample older than the open window is
// counted as late and dropped; a sample whose values are invalid (no
// total, available above total) is counted and dropped.
func (a *VMAggregator) Add(s MemorySample) (closed Window, done bool) {
	v, ok := s.Values()
	if !ok {
		a.invalid++
		return Window{}, false
	}
	return a.AddValues(s.Time, v)
}

// AddValues is Add for precomputed counter values (MemorySample.Values).
func (a *VMAggregator) AddValues(t time.Time, v [NumCounters]float64) (closed Window, done bool) {
	ns := t.UnixNano()
	ws := a.windowStart(ns)
	if a.open && ws != a.start {
		if ws < a.start {
			a.late++
			return Window{}, false
		}
		closed, done = a.window(), true
		a.open = false
	}
	if !a.open {
		a.start, a.open = ws, true
		a.cur = [NumCounters]Aggregate{}
	}
	for i := range a.cur {
		a.cur[i].Add(v[i])
	}
	return closed, done
}

// Flush closes the open window when now is at or after its end and
// returns it (done true). Call it on every sampling round so a VM whose
// samples stop still delivers its last window.
func (a *VMAggregator) Flush(now time.Time) (closed Window, done bool) {
	if !a.open || now.UnixNano() < a.start+a.period {
		return Window{}, false
	}
	a.open = false
	return a.window(), true
}

// Late returns how many samples were dropped for being older than the open
// window; Invalid how many were dropped for invalid values.
func (a *VMAggregator) Late() uint64    { return a.late }
func (a *VMAggregator) Invalid() uint64 { return a.invalid }

func (a *VMAggregator) window() Window {
	return Window{Start: time.Unix(0, a.start).UTC(), Period: time.Duration(a.period), Aggregates: a.cur}
}
