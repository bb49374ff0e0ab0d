package hostreader

import (
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

// Every field of region.Fields lands in the Snapshot field its GoName
// names, and Word returns it: the decoder takes its offsets from package
// region only.
func TestSnapshotDecodesEveryField(t *testing.T) {
	img := make([]byte, 4096)
	for _, f := range region.Fields {
		putWord(img, f.Offset, uint32(0x1000+2*f.Offset)) // distinct per field, and even (seq must be)
	}
	for i := 0; i < region.NumSlots; i++ {
		setSlot(img, i, uint32(100+i), uint32(200+i), string(rune('a'+i))+"tag\x00")
	}
	s, err := DecodeRegion(img, time.Unix(1, 0))
	require.NoError(t, err)
	require.False(t, s.Torn)
	byGoName := reflect.ValueOf(s)
	for _, f := range region.Fields {
		v, ok := s.Word(f)
		require.True(t, ok, "field %s not decoded", f.Name)
		assert.Equal(t, uint32(0x1000+2*f.Offset), v, f.Name)
		assert.Equal(t, uint64(v), byGoName.FieldByName(f.GoName).Uint(), "Snapshot.%s", f.GoName)
	}
	_, ok := s.Word(region.Field{Name: "reserved", Offset: 0x60})
	assert.False(t, ok, "a reserved offset is no field")
	for i, sl := range s.Slots {
		assert.Equal(t, uint32(100+i), sl.Beat)
		assert.Equal(t, uint32(200+i), sl.PeriodMs)
		assert.Equal(t, string(rune('a'+i))+"tag", EscapeTag(sl.Tag[:]))
	}
}

func TestEscapeTag(t *testing.T) {
	assert.Equal(t, "app1", EscapeTag([]byte("app1\x00\x00zz")))
	assert.Equal(t, `\x1b[31mred`, EscapeTag([]byte("\x1b[31mred")))
	assert.Equal(t, `a\x5cb\x22\xff\x0a`, EscapeTag([]byte("a\\b\"\xff\n")))
	assert.Equal(t, "", EscapeTag(nil))
}

// A writer implementing the AML's seqlock protocol at full speed keeps
// ticks == timer_lo == echo_lo == echo_hi; a reader must never return an
// untorn snapshot that breaks the invariant.
func TestSeqlockConcurrentWriter(t *testing.T) {
	img := newImage(4096)
	putWord(img, region.Ticks.Offset, 0) // the invariant holds from the start
	r, err := RegionFromBytes(img)
	require.NoError(t, err)
	stop := make(chan struct{})
	var writes atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		seq := r.load(region.Seq.Offset)
		for i := uint32(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r.store(region.Seq.Offset, seq+1) // odd: update in progress
			r.store(region.Ticks.Offset, i)
			r.store(region.TimerLo.Offset, i)
			r.store(region.EchoLo.Offset, i)
			r.store(region.EchoHi.Offset, i)
			seq += 2
			r.store(region.Seq.Offset, seq) // even: stable
			writes.Add(1)
		}
	}()
	deadline := time.Now().Add(300 * time.Millisecond)
	var good, torn, changed int
	last := uint32(0)
	for time.Now().Before(deadline) {
		s, err := r.Snapshot()
		require.NoError(t, err)
		if s.Torn {
			torn++
			continue
		}
		good++
		require.Equal(t, s.Ticks, s.TimerLo, "torn read returned as consistent (seq %d)", s.Seq)
		require.Equal(t, s.Ticks, s.EchoLo)
		require.Equal(t, s.Ticks, s.EchoHi)
		require.Zero(t, s.Seq&1)
		if s.Ticks != last {
			changed++
			last = s.Ticks
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("writer: %d updates; reader: %d consistent (%d distinct), %d torn", writes.Load(), good, changed, torn)
	require.Greater(t, writes.Load(), uint64(100), "writer made progress")
	require.Greater(t, good, 10, "reader made progress")
	require.Greater(t, changed, 1, "reader saw the writer's updates")
}

func TestSeqlockStuckOddIsTorn(t *testing.T) {
	img := newImage(4096)
	putWord(img, region.Seq.Offset, 7) // writer died mid-update
	putWord(img, region.Ticks.Offset, 5)
	p := writeRegionFile(t, t.TempDir(), "r", img)
	r, err := OpenRegion(p, OpenOptions{Retries: 9})
	require.NoError(t, err)
	defer r.Close()
	s, err := r.Snapshot()
	require.NoError(t, err)
	assert.True(t, s.Torn)
	assert.Equal(t, 9, s.Attempts)
	assert.Equal(t, uint32(7), s.Seq)
	assert.Equal(t, uint32(5), s.Ticks, "what was seen is reported")
	v := Assess(s, VerdictConfig{}, nil)
	assert.Equal(t, StateTorn, v.State)
	assert.Contains(t, v.String(), "seq 0x7 after 9 attempts")

	// Once the writer finishes, the next snapshot is consistent.
	putWordFile(t, p, region.Seq.Offset, 8)
	s, err = r.Snapshot()
	require.NoError(t, err)
	assert.False(t, s.Torn)
	assert.Equal(t, 1, s.Attempts)

	// Default retry bound.
	r2, err := RegionFromBytes(img)
	require.NoError(t, err)
	s, err = r2.Snapshot()
	require.NoError(t, err)
	assert.True(t, s.Torn)
	assert.Equal(t, DefaultRetries, s.Attempts)
}

func putWordFile(t *testing.T, path string, off int, v uint32) {
	t.Helper()
	r, err := OpenRegion(path, OpenOptions{Writable: true})
	require.NoError(t, err)
	r.store(off, v)
	require.NoError(t, r.Close())
}

// BenchmarkSnapshotVerdict: one consistent snapshot of an mmapped region
// plus its verdict (target ≤ 200 ns, 0 allocations).
func BenchmarkSnapshotVerdict(b *testing.B) {
	img := newImage(64 << 10)
	// A 1 h period: the image's echo stays within K periods for the
	// whole run (with the 1 s default, a run longer than 3 s, as on a
	// loaded host, ended stale and failed).
	putWord(img, region.Period.Offset, 36000)
	now := time.Now()
	setEcho(img, now)
	setHostStamp(img, now)
	setSlot(img, 0, 1, 1000, "app")
	p := writeRegionFile(b, b.TempDir(), "r", img)
	r, err := OpenRegion(p, OpenOptions{})
	require.NoError(b, err)
	defer r.Close()
	var tr Tracker
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	var v Verdict
	for i := 0; i < b.N; i++ {
		s, err := r.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		v = tr.Update(s)
	}
	// CPU time per op: robust to other processes sharing the machine.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	b.StopTimer()
	if v.State != StateAlive {
		b.Fatalf("state %v: %s", v.State, v.Reason)
	}
}

// BenchmarkSnapshotAssess: the one-snapshot path (Assess) instead of a
// Tracker.
func BenchmarkSnapshotAssess(b *testing.B) {
	img := newImage(64 << 10)
	// A 1 h period: the image's echo stays within K periods for the
	// whole run (with the 1 s default, a run longer than 3 s, as on a
	// loaded host, ended stale and failed).
	putWord(img, region.Period.Offset, 36000)
	now := time.Now()
	setEcho(img, now)
	setHostStamp(img, now)
	p := writeRegionFile(b, b.TempDir(), "r", img)
	r, err := OpenRegion(p, OpenOptions{})
	require.NoError(b, err)
	defer r.Close()
	b.ReportAllocs()
	b.ResetTimer()
	var v Verdict
	for i := 0; i < b.N; i++ {
		s, err := r.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		v = Assess(s, VerdictConfig{}, nil)
	}
	b.StopTimer()
	if v.State != StateAlive {
		b.Fatalf("state %v: %s", v.State, v.Reason)
	}
}
