package hostreader

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

// watch10000 writes n region files (region 0 torn: its seq is odd, so
// every round stamps all n regions and then sleeps TornRecheck before
// re-reading it) and watches them with stamping on.
func watch10000(tb testing.TB, n int, opts WatchOptions) *Watcher {
	tb.Helper()
	dir := tb.TempDir()
	img := newImage(4096)
	setEcho(img, time.Now())
	for i := 0; i < n; i++ {
		b := img
		if i == 0 {
			b = append([]byte(nil), img...)
			binary.LittleEndian.PutUint32(b[region.Seq.Offset:], 7) // the guest is inside an update, forever
		}
		if err := os.WriteFile(fmt.Sprintf("%s/r%05d", dir, i), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	opts.Interval, opts.Stamp, opts.Buffer = time.Hour, true, 2*n
	w := NewWatcher(context.Background(), opts)
	tb.Cleanup(func() { w.Close() })
	for i := 0; i < n; i++ {
		if err := w.Add(fmt.Sprint(i), fmt.Sprintf("%s/r%05d", dir, i)); err != nil {
			tb.Fatal(err)
		}
	}
	go func() {
		for range w.Changes() {
		}
	}()
	return w
}

// TestWatcherReportPanicDoesNotWaitForRound: a panic report from the
// supervisor must not wait behind a poll round over 10,000 regions. The
// round here stamps every region and then sleeps 2 s (the torn recheck of
// region 0); before the fix, round held the watcher's one mutex through
// all of it and ReportPanic took >= 2 s.
func TestWatcherReportPanicDoesNotWaitForRound(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 region files")
	}
	const n = 10000
	var armed atomic.Bool
	started := make(chan struct{})
	recheck := 2 * time.Second
	w := watch10000(t, n, WatchOptions{TornRecheck: recheck, Now: func() time.Time {
		if armed.CompareAndSwap(true, false) {
			close(started)
		}
		return time.Now()
	}})
	require.Eventually(t, func() bool { _, ok := w.Verdict(fmt.Sprint(n - 1)); return ok },
		30*time.Second, 10*time.Millisecond, "every region has a first verdict")

	armed.Store(true)
	roundDone := make(chan struct{})
	go func() { defer close(roundDone); w.round(nil) }()
	<-started // a round (this one or the loop's) is stamping the 10,000 regions now
	t0 := time.Now()
	require.NoError(t, w.ReportPanic("5000", PanicEvidence{Source: "pvpanic", At: t0}))
	took := time.Since(t0)
	select {
	case <-roundDone:
		t.Fatalf("ReportPanic returned only after the round (%v)", took)
	default:
	}
	require.Less(t, took, recheck/2, "ReportPanic waited for the poll round")
	<-roundDone
	require.Eventually(t, func() bool { v, _ := w.Verdict("5000"); return v.State == StatePanicked },
		30*time.Second, 10*time.Millisecond, "the report is applied")
}

// BenchmarkReportPanicDuringRound10000: latency of ReportPanic while poll
// rounds over 10,000 stamped regions (one torn, so each round also sleeps
// the 2 ms torn recheck) run back to back: us/report is the mean
// latency, max-us the worst call (ns/op includes a 100 us pause per call).
func BenchmarkReportPanicDuringRound10000(b *testing.B) {
	const n = 10000
	w := watch10000(b, n, WatchOptions{})
	stop := make(chan struct{})
	stopped := make(chan struct{})
	var rounds atomic.Int64
	go func() {
		defer close(stopped)
		out := make([]Change, 0, n)
		for {
			select {
			case <-stop:
				return
			default:
			}
			out = w.round(out[:0])
			rounds.Add(1)
		}
	}()
	for rounds.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	ev := PanicEvidence{Source: "pvpanic"}
	var worst, total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := w.ReportPanic(fmt.Sprint(1+i%(n-1)), ev); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		total += d
		if d > worst {
			worst = d
		}
		time.Sleep(100 * time.Microsecond) // spread the calls over the rounds
	}
	b.StopTimer()
	close(stop)
	<-stopped
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "us/report")
	b.ReportMetric(float64(worst.Microseconds()), "max-us")
}
