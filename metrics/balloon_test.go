package metrics

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/qemuhook"
)

func TestDecodeBalloonStats(t *testing.T) {
	// The shape QEMU 7.2 prints (hw/virtio/virtio-balloon.c balloon_stats_get_all).
	s, err := DecodeBalloonStats([]byte(`{"stats":{"stat-swap-out":0,"stat-available-memory":180518912,"stat-free-memory":150000000,
		"stat-disk-caches":20480000,"stat-total-memory":234000000,"stat-htlb-pgalloc":-1},"last-update":1764412345}`))
	require.NoError(t, err)
	assert.Equal(t, BalloonStats{LastUpdate: time.Unix(1764412345, 0).UTC(), TotalMemory: 234000000, FreeMemory: 150000000, AvailableMemory: 180518912, DiskCaches: 20480000}, s)
	smp, ok := s.Sample()
	require.True(t, ok)
	assert.Equal(t, MemorySample{Time: s.LastUpdate, TotalBytes: 234000000, AvailableBytes: 180518912, Source: SourceBalloon}, smp)
	// No driver: everything -1, last-update 0.
	s, err = DecodeBalloonStats([]byte(`{"stats":{"stat-total-memory":-1,"stat-free-memory":-1,"stat-available-memory":-1,"stat-disk-caches":-1},"last-update":0}`))
	require.NoError(t, err)
	assert.False(t, s.Supported())
	// A guest without MemAvailable: free + caches.
	s, err = DecodeBalloonStats([]byte(`{"stats":{"stat-total-memory":1000,"stat-free-memory":300,"stat-available-memory":-1,"stat-disk-caches":200},"last-update":5}`))
	require.NoError(t, err)
	smp, ok = s.Sample()
	require.True(t, ok)
	assert.Equal(t, uint64(500), smp.AvailableBytes)
	// u64 -1 is unsupported; other huge values and non-integers are errors.
	s, err = DecodeBalloonStats([]byte(`{"stats":{"stat-total-memory":18446744073709551615},"last-update":1}`))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), s.TotalMemory)
	_, err = DecodeBalloonStats([]byte(`{"stats":{"stat-total-memory":18446744073709551614},"last-update":1}`))
	assert.ErrorContains(t, err, "stat-total-memory: 18446744073709551614 does not fit")
	_, err = DecodeBalloonStats([]byte(`{"stats":{"stat-free-memory":1.5},"last-update":1}`))
	assert.ErrorContains(t, err, `stat-free-memory: "1.5" is not an integer`)
	_, err = DecodeBalloonStats([]byte(`{"stats":[]}`))
	assert.Error(t, err)
}

func FuzzDecodeBalloonStats(f *testing.F) {
	f.Add([]byte(`{"stats":{"stat-total-memory":1000,"stat-free-memory":300,"stat-available-memory":-1,"stat-disk-caches":200},"last-update":5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeBalloonStats(b)
		if err != nil {
			return
		}
		if smp, ok := s.Sample(); ok {
			if smp.AvailableBytes > smp.TotalBytes {
				t.Fatalf("available %d above total %d", smp.AvailableBytes, smp.TotalBytes)
			}
			if _, ok := smp.Values(); !ok {
				t.Fatalf("sample %+v has no values", smp)
			}
		}
	})
}

func TestReadHostMemory(t *testing.T) {
	h, err := ReadHostMemory(os.Getpid())
	require.NoError(t, err)
	assert.Greater(t, h.RSSBytes, uint64(1<<20))
	smp := h.Sample(time.Now(), 1<<40)
	assert.Equal(t, SourceHost, smp.Source)
	assert.Equal(t, uint64(1<<40)-h.RSSBytes, smp.AvailableBytes)
	// Capped at the total.
	assert.Equal(t, uint64(0), h.Sample(time.Now(), 1024).AvailableBytes)
	// Bad /proc content is an error naming the file.
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "7"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "7", "status"), []byte("Name:\tx\nVmRSS:\t12 MB\n"), 0o644))
	_, err = readHostMemory(root, root, 7)
	assert.ErrorContains(t, err, `VmRSS line`)
	_, err = ReadHostMemory(1 << 30)
	assert.Error(t, err)
}

func TestStallTracker(t *testing.T) {
	tr := BalloonStallTracker{MaxAge: 10 * time.Second}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := BalloonStats{LastUpdate: t0}
	assert.False(t, tr.Observe(st, t0).Stalled)
	st.LastUpdate = t0.Add(2 * time.Second)
	assert.False(t, tr.Observe(st, t0.Add(9*time.Second)).Stalled)
	r := tr.Observe(st, t0.Add(19*time.Second))
	assert.False(t, r.Stalled, "10 s since the change, not more")
	r = tr.Observe(st, t0.Add(20*time.Second))
	assert.True(t, r.Stalled)
	assert.Contains(t, r.Reason, "stuck at 2026-01-01T00:00:02Z for 11s")
	st.LastUpdate = t0.Add(21 * time.Second)
	assert.False(t, tr.Observe(st, t0.Add(21*time.Second)).Stalled, "advancing again")
}

// TestBalloonRealQEMUNoDriver: a real QEMU with the balloon and no guest
// OS (SeaBIOS finds nothing to boot): QMP polling is enabled and read, the
// guest reports nothing, the sampler falls back to the host view of the
// real QEMU process with one warning, and the stall tracker calls it.
func TestBalloonRealQEMUNoDriver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	vm := startQEMU(ctx, t, 128, true)
	p, q := vm.P, vm.Q
	path, found, err := FindBalloon(ctx, q)
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, BalloonQOMPath(qemuhook.BalloonID), path)
	require.NoError(t, EnableBalloonStats(ctx, q, path, time.Second))
	assert.ErrorContains(t, EnableBalloonStats(ctx, q, path, 0), "at least 1s")
	st, err := ReadBalloonStats(ctx, q, path)
	require.NoError(t, err)
	assert.False(t, st.Supported())
	assert.True(t, st.LastUpdate.IsZero())
	_, err = ReadBalloonStats(ctx, q, "/machine/peripheral/nope")
	assert.ErrorContains(t, err, "/machine/peripheral/nope")

	var warnings []string
	s := &VMSampler{QMP: q, QOMPath: path, Pid: p.Pid(), TotalBytes: 128 << 20, Warn: func(w string) { warnings = append(warnings, w) }}
	for i := 0; i < 3; i++ {
		smp, _, err := s.Sample(ctx, time.Now())
		require.NoError(t, err)
		assert.Equal(t, SourceHost, smp.Source)
		assert.Equal(t, uint64(128<<20), smp.TotalBytes)
		assert.Less(t, smp.AvailableBytes, smp.TotalBytes, "QEMU's RSS counts as used")
	}
	require.Len(t, warnings, 1, "warned once")
	assert.True(t, strings.Contains(warnings[0], "virtio_balloon driver"), warnings[0])

	tr := BalloonStallTracker{MaxAge: 2 * time.Second}
	now := time.Now()
	detail, err := tr.Probe(ctx, q, path, now)
	require.NoError(t, err)
	assert.Equal(t, "balloon statistics not yet reported", detail)
	_, err = tr.Probe(ctx, q, path, now.Add(3*time.Second))
	var se *StallError
	require.ErrorAs(t, err, &se)
	assert.True(t, se.Result.Stalled)
	assert.Contains(t, err.Error(), "never updated in 3s")
}

// TestFindBalloonRealQEMU: a balloon without an id is found under
// peripheral-anon; a VM without a balloon has none, and its sampler uses
// the host view.
func TestFindBalloonRealQEMU(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"anonymous", []string{"-device", "virtio-balloon-pci"}, "/machine/peripheral-anon/device["},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			vm := startQEMU(ctx, t, 64, false, append([]string{"-S"}, tc.extra...)...)
			p, q := vm.P, vm.Q
			path, found, err := FindBalloon(ctx, q)
			require.NoError(t, err)
			if tc.want == "" {
				assert.False(t, found)
				var warned []string
				s := &VMSampler{QMP: q, Pid: p.Pid(), TotalBytes: 64 << 20, Warn: func(w string) { warned = append(warned, w) }}
				smp, _, err := s.Sample(ctx, time.Now())
				require.NoError(t, err)
				assert.Equal(t, SourceHost, smp.Source)
				require.Len(t, warned, 1)
				assert.Contains(t, warned[0], "no balloon device")
				return
			}
			require.True(t, found)
			assert.True(t, strings.HasPrefix(path, tc.want), path)
			require.NoError(t, EnableBalloonStats(ctx, q, path, time.Second))
		})
	}
}

// FuzzParseHostMemory: /proc/PID/status (VmRSS) and /proc/PID/cgroup
// decoders never panic; a refusal names VmRSS; a path never climbs.
// Seeds: this process's real files.
func FuzzParseHostMemory(f *testing.F) {
	for _, p := range []string{"/proc/self/status", "/proc/self/cgroup"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("Name:\tqemu\nVmRSS:\t18446744073709551615 kB\n"))
	f.Add([]byte("0::/../../etc\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rss, err := parseVmRSS(b)
		if err != nil {
			require.Contains(t, err.Error(), "VmRSS")
			require.Less(t, len(err.Error()), 400) // 64 bytes quoted at most
		} else {
			require.Zero(t, rss%1024)
		}
		if p, ok := parseCgroup2Path(b); ok {
			require.True(t, strings.HasPrefix(p, "/"))
			require.NotContains(t, p, "..")
			require.NotContains(t, p, "\n")
		}
	})
}
