//go:build e2e

package metrics

// End-to-end: the bundled Linux test guest (internal/testguest) under real
// QEMU (TCG) with a virtio-balloon device, its stock virtio_balloon driver
// reporting memory statistics; the host samples them over QMP, aggregates
// them into LAD windows and uploads them to a real Azurite. The guest
// prints /proc/meminfo on its console every second (acpidiag.meminfo=1s),
// the reference the balloon values are checked against (within 5 %).

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/ssdt"
)

// meminfoObs is one meminfo console line (kB values) and when the host
// received it.
type meminfoObs struct {
	At                             time.Time
	Total, Free, Available, Cached int64
}

// parseMeminfoLine parses "acpidiag-guest: meminfo MemTotal=N MemFree=N MemAvailable=N Cached=N".
func parseMeminfoLine(line string) (meminfoObs, bool) {
	_, rest, ok := strings.Cut(line, "acpidiag-guest: meminfo ")
	if !ok {
		return meminfoObs{}, false
	}
	var o meminfoObs
	n := 0
	for _, kv := range strings.Fields(rest) {
		k, v, _ := strings.Cut(kv, "=")
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return meminfoObs{}, false
		}
		switch k {
		case "MemTotal":
			o.Total = x
		case "MemFree":
			o.Free = x
		case "MemAvailable":
			o.Available = x
		case "Cached":
			o.Cached = x
		default:
			continue
		}
		n++
	}
	return o, n == 4
}

// maxDev is the largest relative difference seen per field.
var maxDev = map[string]float64{}

func within(t *testing.T, what string, got, wantKB int64, tol float64) {
	t.Helper()
	want := float64(wantKB) * 1024
	field := what[strings.LastIndexByte(what, ' ')+1:]
	maxDev[field] = math.Max(maxDev[field], math.Abs(float64(got)-want)/want)
	assert.LessOrEqual(t, math.Abs(float64(got)-want), tol*want, "%s: balloon %d bytes, /proc/meminfo %.0f bytes (more than %.0f%% apart)", what, got, want, tol*100)
}

func TestE2EBalloonWindows(t *testing.T) {
	k, ird := guesttest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	az := startAzurite(t)

	dir, err := os.MkdirTemp("", "acpidiag-me2e-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ch, err := qemuhook.NewChannel(dir, ssdt.DefaultConfig(), "q35")
	require.NoError(t, err)
	cfg := qemuhook.Config{MemoryMB: 256, Workdir: dir, Balloon: true, Channel: ch,
		Kernel: k.Vmlinuz, Initrd: ird.Path, Append: testguest.BootArgs(testguest.ModeAlive, 0, "acpidiag.meminfo=1s"),
		QMPSocket: filepath.Join(dir, "qmp"), SerialSocket: filepath.Join(dir, "serial")}
	s, err := qemuhook.Launch(ctx, cfg, qemuhook.SupervisorOptions{})
	require.NoError(t, err)
	defer s.Close()
	go func() {
		for range s.Verdicts() {
		}
	}()
	con := s.Console()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("console tail:\n%s", con.Tail(6000))
		}
	})
	out, err := con.WaitFor(ctx, 0, "acpidiag-guest: mode ") // logged after the driver report
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "virtio_balloon bound: virtio", "the stock driver binds the device")

	q := s.QMP()
	path := BalloonQOMPath(qemuhook.BalloonID)
	require.NoError(t, EnableBalloonStats(ctx, q, path, time.Second))

	// Collect for ~35 s: the console's meminfo lines (timestamped on
	// arrival, polled every 50 ms) and every new balloon update.
	const period = 10 * time.Second // windows: LAD's 60 s minimum is the Config's; the aggregator takes any whole period
	agg, err := NewVMAggregator(period)
	require.NoError(t, err)
	var (
		mem     []meminfoObs
		samples []MemorySample
		stats   []BalloonStats
		windows []Window
		partial []byte
	)
	mark := con.Mark()
	tracker := BalloonStallTracker{MaxAge: 5 * time.Second}
	deadline := time.Now().Add(35 * time.Second)
	lastQMP := time.Time{}
	for time.Now().Before(deadline) {
		b, lost := con.Since(mark)
		mark += int64(len(b)) + lost
		now := time.Now()
		partial = append(partial, b...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				break
			}
			if o, ok := parseMeminfoLine(string(partial[:i])); ok {
				o.At = now
				mem = append(mem, o)
			}
			partial = partial[i+1:]
		}
		if now.Sub(lastQMP) >= 250*time.Millisecond {
			lastQMP = now
			st, err := ReadBalloonStats(ctx, q, path)
			require.NoError(t, err)
			r := tracker.Observe(st, now)
			assert.False(t, r.Stalled, "a live guest's last-update advances: %s", r.Reason)
			if smp, ok := st.Sample(); ok && (len(samples) == 0 || smp.Time.After(samples[len(samples)-1].Time)) {
				samples = append(samples, smp)
				stats = append(stats, st)
				if w, done := agg.Add(smp); done {
					windows = append(windows, w)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if w, done := agg.Flush(samples[len(samples)-1].Time.Add(period)); done {
		windows = append(windows, w)
	}
	t.Logf("%d balloon updates, %d meminfo lines, %d windows", len(samples), len(mem), len(windows))
	require.GreaterOrEqual(t, len(samples), 15, "balloon statistics every ~1 s")
	require.GreaterOrEqual(t, len(mem), 15)
	require.GreaterOrEqual(t, len(windows), 3)

	// Values: each balloon update against the meminfo line printed
	// closest to it (the guest prints every second; last-update has 1 s
	// resolution), within 5 %.
	checked := 0
	for i, st := range stats {
		best := -1
		for j, m := range mem {
			if best < 0 || absDur(m.At.Sub(st.LastUpdate)) < absDur(mem[best].At.Sub(st.LastUpdate)) {
				best = j
			}
		}
		m := mem[best]
		if absDur(m.At.Sub(st.LastUpdate)) > 2*time.Second {
			continue
		}
		within(t, fmt.Sprintf("update %d total", i), st.TotalMemory, m.Total, 0.05)
		within(t, fmt.Sprintf("update %d available", i), st.AvailableMemory, m.Available, 0.05)
		within(t, fmt.Sprintf("update %d free", i), st.FreeMemory, m.Free, 0.05)
		within(t, fmt.Sprintf("update %d caches", i), st.DiskCaches, m.Cached, 0.05)
		checked++
	}
	assert.GreaterOrEqual(t, checked, len(stats)*3/4, "most updates matched a meminfo line within 2 s")
	t.Logf("NUMBER balloon_vs_meminfo_max_dev total=%.3f%% available=%.3f%% free=%.3f%% caches=%.3f%% (%d updates checked)",
		100*maxDev["total"], 100*maxDev["available"], 100*maxDev["free"], 100*maxDev["caches"], checked)

	// Windows: aligned to the period, and each aggregate exactly what the
	// samples in the window give (computed here independently).
	for _, w := range windows {
		assert.Zero(t, w.Start.UnixNano()%int64(period), "window %s aligned", w.Start)
		var in []MemorySample
		for _, smp := range samples {
			if !smp.Time.Before(w.Start) && smp.Time.Before(w.End()) {
				in = append(in, smp)
			}
		}
		require.NotEmpty(t, in)
		for c := 0; c < NumCounters; c++ {
			a := w.Aggregates[c]
			assert.Equal(t, int64(len(in)), a.Count, "window %s %s count", w.Start, Counters[c])
			var total float64
			mn, mx := math.Inf(1), math.Inf(-1)
			for _, smp := range in {
				v, _ := smp.Values()
				total += v[c]
				mn, mx = math.Min(mn, v[c]), math.Max(mx, v[c])
			}
			last, _ := in[len(in)-1].Values()
			assert.Equal(t, total, a.Total, "%s total", Counters[c])
			assert.Equal(t, mn, a.Minimum, "%s min", Counters[c])
			assert.Equal(t, mx, a.Maximum, "%s max", Counters[c])
			assert.Equal(t, last[c], a.Last, "%s last", Counters[c])
		}
		pa := w.Aggregates[IdxPercentAvailable].Average() + w.Aggregates[IdxPercentUsed].Average()
		assert.InDelta(t, 100, pa, 1e-9, "percent available + used")
	}

	// The windows as LAD entities in Azurite, read back field by field.
	now := time.Now()
	sink, err := NewTableSink(az.diagnostics(t, az.SAS(t, allPerms, time.Hour)), SinkOptions{Now: func() time.Time { return now }})
	require.NoError(t, err)
	qu, err := OpenQueue(filepath.Join(dir, "queue"), 100)
	require.NoError(t, err)
	u := &Uploader{Queue: qu, Sink: sink}
	id := VMAzure{}.Identity("e2e-vm")
	for _, w := range windows {
		require.NoError(t, u.Enqueue("e2e-vm", id, w))
	}
	n, err := u.Drain(ctx)
	require.NoError(t, err)
	require.Equal(t, len(windows), n)
	table, err := TableName(period, now)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(table, "WADMetricsPT10SP10DV2S"), table)
	got := readBack(t, sink.Client(table), EscapePartitionKey("e2e-vm"))
	assert.Len(t, got, len(windows)*NumCounters*2)
	for _, w := range windows {
		want, err := Entities(w, id)
		require.NoError(t, err)
		for _, e := range want {
			g, ok := got[e.RowKey]
			require.True(t, ok, "row %s", e.RowKey)
			assert.Equal(t, e.Total, g.Total)
			assert.Equal(t, e.Count, g.Count)
			assert.Equal(t, e.Last, g.Last)
			assert.True(t, e.Timestamp.Equal(g.Timestamp))
			assert.Equal(t, "unknown", g.DeploymentID)
			assert.Equal(t, "e2e-vm", g.Host)
		}
	}
	t.Logf("NUMBER balloon_updates=%d windows=%d entities=%d", len(samples), len(windows), len(got))

	// The same guest through the Pipeline: it finds the balloon, samples
	// it (source balloon, not the host view) and exports the gauges.
	mc, err := ParseConfig([]byte(`{"diagnostics":{"storage_account":"devstoreaccount1","storage_account_sas":"` + az.SAS(t, allPerms, time.Hour) +
		`","endpoint":"` + az.Endpoint + `","metrics":{}}}`))
	require.NoError(t, err)
	exp := NewExporter(nil)
	var warned []string
	pl, err := NewPipeline(mc, PipelineOptions{QueueDir: filepath.Join(dir, "pq"), Exporter: exp, Warn: func(w string) { warned = append(warned, w) },
		Sample: time.Second, Transfer: 2 * time.Second})
	require.NoError(t, err)
	pl.SetVMs([]PipelineVM{{Name: "e2e-vm", QMP: q, Pid: s.Process().Pid(), RAMBytes: 256 << 20}})
	for i := 0; i < 5; i++ {
		_, err := pl.SampleOnce(ctx, time.Now())
		require.NoError(t, err)
		time.Sleep(time.Second)
	}
	assert.Empty(t, warned, "the guest reports: no host-view fallback")
	st, err := ReadBalloonStats(ctx, q, path)
	require.NoError(t, err)
	fams, err := exp.Registry().Gather()
	require.NoError(t, err)
	var avail float64
	for _, f := range fams {
		if f.GetName() == "acpidiag_vm_memory_available_bytes" {
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if l.GetName() == "source" {
						assert.Equal(t, SourceBalloon, l.GetValue())
					}
				}
				avail = m.GetGauge().GetValue()
			}
		}
	}
	assert.InEpsilon(t, float64(st.AvailableMemory), avail, 0.05, "exported available memory is the guest's")
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
