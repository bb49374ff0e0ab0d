package metrics

import (
	"fmt"
	"testing"
	"time"
)

var sinkWindow Window

// BenchmarkAggregateAdd: adding one sample to one aggregate (target
// <= 50 ns, 0 allocations).
func BenchmarkAggregateAdd(b *testing.B) {
	b.ReportAllocs()
	var a Aggregate
	v := 1.0
	for i := 0; i < b.N; i++ {
		a.Add(v)
		v += 0.5
	}
	sinkWindow.Aggregates[0] = a
}

// BenchmarkVMAggregatorAdd: one memory sample of one VM into its window
// (4 counters), with the window bookkeeping.
func BenchmarkVMAggregatorAdd(b *testing.B) {
	b.ReportAllocs()
	a, _ := NewVMAggregator(time.Minute)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := MemorySample{TotalBytes: 4 << 30, AvailableBytes: 3 << 30}
	for i := 0; i < b.N; i++ {
		s.Time = t0.Add(time.Duration(i) * 15 * time.Second)
		s.AvailableBytes = uint64(1<<30 + i%1000)
		if w, ok := a.Add(s); ok {
			sinkWindow = w
		}
	}
}

// Benchmark10000VMs: one 15 s sampling round of 10,000 VMs x 4 metrics:
// the samples' values, the windows (one in four rounds closes every VM's
// window) and the flush. %core@15s is the share of one core this takes
// at 15 s sampling (target < 1 %). QMP round trips are not included.
func Benchmark10000VMs(b *testing.B) {
	const vms = 10000
	aggs := make([]*VMAggregator, vms)
	for i := range aggs {
		aggs[i], _ = NewVMAggregator(time.Minute)
	}
	samples := make([]MemorySample, vms)
	for i := range samples {
		samples[i] = MemorySample{TotalBytes: 4 << 30, AvailableBytes: uint64(1<<30 + i)}
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	closed := 0
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		now := t0.Add(time.Duration(n) * 15 * time.Second)
		for i, a := range aggs {
			s := &samples[i]
			s.Time = now
			s.AvailableBytes += 4096
			if s.AvailableBytes > s.TotalBytes {
				s.AvailableBytes = 1 << 30
			}
			if w, ok := a.Add(*s); ok {
				sinkWindow = w
				closed++
			}
			if w, ok := a.Flush(now); ok {
				sinkWindow = w
				closed++
			}
		}
	}
	b.StopTimer()
	perRound := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perRound/float64(15*time.Second)*100, "%core@15s")
	b.ReportMetric(float64(closed)/float64(b.N), "windows/round")
}

// BenchmarkUploadAzurite1000VMs: one 60 s window of 1,000 VMs (8,000 LAD
// entities) queued on disk and uploaded to a real Azurite, one batch
// transaction per VM, with 1 (strict order) and 8 workers.
func BenchmarkUploadAzurite1000VMs(b *testing.B) {
	for _, w := range []int{1, 8} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) { benchUpload(b, w) })
	}
}

func benchUpload(b *testing.B, workers int) {
	az := startAzurite(b)
	sink, err := NewTableSink(az.diagnostics(b, az.SAS(b, allPerms, time.Hour)), SinkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var entities, enqueueNs, drainNs int64
	for n := 0; n < b.N; n++ {
		q, err := OpenQueue(b.TempDir(), 2000)
		if err != nil {
			b.Fatal(err)
		}
		u := &Uploader{Queue: q, Sink: sink, Workers: workers}
		w := testWindow(start.Add(time.Duration(n)*time.Minute), 1)
		names, ids, ws := make([]string, 1000), make([]Identity, 1000), make([]Window, 1000)
		for vm := range names {
			names[vm] = fmt.Sprintf("vm-%04d", vm)
			ids[vm] = Identity{ResourceID: names[vm], Host: names[vm], DeploymentID: "unknown"}
			ws[vm] = w
		}
		t0 := time.Now()
		if err := u.EnqueueAll(names, ids, ws); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := u.Drain(ctxT(b, 10*time.Minute)); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		_, ents := u.Uploaded()
		entities += int64(ents)
		enqueueNs += t1.Sub(t0).Nanoseconds()
		drainNs += t2.Sub(t1).Nanoseconds()
	}
	b.ReportMetric(float64(entities)/(float64(drainNs)/1e9), "entities/s")
	b.ReportMetric(float64(enqueueNs)/1e6/float64(b.N), "enqueue-ms")
	b.ReportMetric(float64(drainNs)/1e6/float64(b.N), "upload-ms")
	b.Logf("uploaded %d entities in %.2f s: %.0f entities/s", entities, float64(drainNs)/1e9, float64(entities)/(float64(drainNs)/1e9))
}
