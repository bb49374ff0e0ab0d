package monitor

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/region"
)

// regionWriter imitates the guest side of a region file the way the SSDT's
// tick does (seqlock: seq odd, ticks++, echo := host stamp, seq even) and
// an application's heartbeat slot 0 (tag "app"). It is the writer the
// monitor tests and the 1,000-VM benchmark use: the region's format is
// the real one (package region), only the writer is not a guest.
//
// close may come while run's goroutine is in the middle of a tick (a test
// that fails with require runs its deferred cancel and close at once): mu
// keeps the unmapping out of a tick, else the tick writes to unmapped
// memory and the whole test binary dies of SIGSEGV, hiding the failure.
type regionWriter struct {
	mu      sync.RWMutex // tick: read; close: write
	closed  bool
	maps    [][]byte
	paused  []atomic.Bool
	appStop []atomic.Bool
}

const regionFileSize = 4096

func newRegionFile(t testing.TB, path string) {
	t.Helper()
	b := make([]byte, regionFileSize)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

func openRegionWriter(paths []string) (*regionWriter, error) {
	w := &regionWriter{paused: make([]atomic.Bool, len(paths)), appStop: make([]atomic.Bool, len(paths))}
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		if err := f.Truncate(regionFileSize); err != nil {
			f.Close()
			return nil, err
		}
		b, err := syscall.Mmap(int(f.Fd()), 0, regionFileSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		f.Close()
		if err != nil {
			return nil, err
		}
		put := func(off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
		put(region.MagicWord.Offset, region.Magic)
		put(region.VersionWord.Offset, region.Version)
		put(region.HeaderSizeWord.Offset, region.HeaderSize)
		put(region.RegionSize.Offset, regionFileSize)
		put(region.Boots.Offset, 1)
		put(region.Period.Offset, 10) // deciseconds, as _TZP
		soff, _ := region.SlotOffset(0)
		put(soff+region.SlotPeriodMs, 1000)
		copy(b[soff+region.SlotTag:], "app")
		w.maps = append(w.maps, b)
	}
	return w, nil
}

func word(b []byte, off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&b[off]))
}

// tick does one tick on every region that is not paused.
func (w *regionWriter) tick() {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return
	}
	soff, _ := region.SlotOffset(0)
	for i, b := range w.maps {
		if w.paused[i].Load() {
			continue
		}
		seq := word(b, region.Seq.Offset)
		atomic.AddUint32(seq, 1)
		atomic.AddUint32(word(b, region.Ticks.Offset), 1)
		atomic.StoreUint32(word(b, region.EchoLo.Offset), atomic.LoadUint32(word(b, region.HostStampLo.Offset)))
		atomic.StoreUint32(word(b, region.EchoHi.Offset), atomic.LoadUint32(word(b, region.HostStampHi.Offset)))
		atomic.AddUint32(seq, 1)
		if !w.appStop[i].Load() {
			atomic.AddUint32(word(b, soff+region.SlotBeat), 1)
		}
	}
}

func (w *regionWriter) run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	w.tick()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.tick()
		}
	}
}

func (w *regionWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	for _, b := range w.maps {
		syscall.Munmap(b)
	}
}

// testMonitor starts a monitor for cfg (JSON) with a dir sink in a temp
// directory and collects its events.
type testMon struct {
	*Monitor
	sinkDir string
	mu      sync.Mutex
	events  []Event
}

func startMonitor(t *testing.T, cfg Config) *testMon {
	t.Helper()
	tm := &testMon{sinkDir: t.TempDir()}
	cfg.Sinks = []SinkConfig{{Kind: "dir", Path: tm.sinkDir, Pack: true}}
	p, err := Check(cfg, CheckOptions{})
	require.NoError(t, err)
	m, err := New(context.Background(), p, Options{Workdir: t.TempDir(), WatchInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	tm.Monitor = m
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case e := <-m.Events():
				tm.mu.Lock()
				tm.events = append(tm.events, e)
				tm.mu.Unlock()
			case <-m.ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { m.Close(); <-done })
	return tm
}

func (tm *testMon) eventsOf(typ string) []Event {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	var out []Event
	for _, e := range tm.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// bundles lists the bundle directories in the sink.
func (tm *testMon) bundles(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(tm.sinkDir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if e.IsDir() && e.Name()[0] != '.' {
			out = append(out, filepath.Join(tm.sinkDir, e.Name()))
		}
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	return p
}

// TestRegionWriterCloseWhileTicking: closing the writer while its run
// goroutine ticks (as a failing test's deferred calls do) must not write
// to the unmapped region (it crashed the test binary with SIGSEGV under
// load, in TestIncidentBundle).
func TestRegionWriterCloseWhileTicking(t *testing.T) {
	p := filepath.Join(t.TempDir(), "region")
	for i := 0; i < 200; i++ {
		w, err := openRegionWriter([]string{p})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); w.run(ctx, time.Microsecond) }()
		time.Sleep(50 * time.Microsecond)
		w.close() // before cancel: the goroutine is ticking now
		cancel()
		<-done
	}
}

// diagnoseInBackground starts tm.Diagnose of vm with specs and returns a
// wait for its result: at most timeout, failing the test with "diagnose
// did not return after <after>" or when it wrote no bundle.
func diagnoseInBackground(t *testing.T, tm *testMon, vm string, specs []DiagSpec) (wait func(timeout time.Duration, after string) *BundleResult) {
	t.Helper()
	done := make(chan *BundleResult, 1)
	go func() {
		res, err := tm.Diagnose(context.Background(), vm, specs)
		if err != nil {
			t.Logf("diagnose: %v", err)
		}
		done <- res
	}()
	return func(timeout time.Duration, after string) *BundleResult {
		t.Helper()
		select {
		case res := <-done:
			require.NotNil(t, res, "diagnose wrote no bundle")
			return res
		case <-time.After(timeout):
			t.Fatalf("diagnose did not return after %s", after)
			return nil
		}
	}
}
