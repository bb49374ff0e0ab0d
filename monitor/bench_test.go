package monitor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// writerRole makes the test binary the region writer process of the
// 1,000-VM benchmark: it ticks every region listed in the file named by
// the variable once a second until its stdin closes.
const writerRole = "ACPIDIAG_MONITOR_REGION_WRITER"

func TestMain(m *testing.M) {
	if list := os.Getenv(writerRole); list != "" {
		os.Exit(regionWriterMain(list))
	}
	os.Exit(m.Run())
}

func regionWriterMain(list string) int {
	b, err := os.ReadFile(list)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w, err := openRegionWriter(strings.Fields(string(b)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // parent gone: stdin closes
		bufio.NewReader(os.Stdin).ReadString('\n') //nolint:errcheck // any end will do
		cancel()
	}()
	w.tick()
	fmt.Println("ready")
	w.run(ctx, time.Second)
	return 0
}

// startWriter starts the region writer process for paths.
func startWriter(tb testing.TB, dir string, paths []string) {
	list := filepath.Join(dir, "regions.txt")
	require.NoError(tb, os.WriteFile(list, []byte(strings.Join(paths, "\n")), 0o644))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), writerRole+"="+list)
	stdin, err := cmd.StdinPipe()
	require.NoError(tb, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(tb, err)
	cmd.Stderr = os.Stderr
	require.NoError(tb, cmd.Start())
	tb.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(tb, err)
	require.Equal(tb, "ready\n", line)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func statusKB(key string) int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkMonitor1000VMs is the load: one monitor with 1,000 VMs
// whose region files a separate writer process keeps ticking, three
// scenarios each (region, slot by tag, exec /bin/true), every 10 s. It
// reports the monitor process's CPU use (percent of one core, children
// excluded: the exec'd commands are separate processes), its RSS, and the
// probe start lag percentiles. Run it with -benchtime=1x; the measuring
// window is MONITOR_BENCH_WINDOW (default 40s) after a 12 s warm-up.
func BenchmarkMonitor1000VMs(b *testing.B) {
	const n = 1000
	window := 40 * time.Second
	if s := os.Getenv("MONITOR_BENCH_WINDOW"); s != "" {
		d, err := time.ParseDuration(s)
		require.NoError(b, err)
		window = d
	}
	dir := b.TempDir()
	var paths []string
	var vms []VMConfig
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("vm%04d.region", i))
		paths = append(paths, p)
		vms = append(vms, VMConfig{Name: fmt.Sprintf("vm%04d", i), Labels: map[string]string{"fleet": "bench"}, Region: p})
	}
	startWriter(b, dir, paths)
	sel := map[string]string{"fleet": "bench"}
	cfg := Config{VMs: vms, Scenarios: []ScenarioConfig{
		{Name: "region", Match: sel, Probe: ProbeConfig{Kind: ProbeRegion}, Every: "10s", Timeout: "2s", Failures: 3, Cooldown: "10m"},
		{Name: "slot", Match: sel, Probe: ProbeConfig{Kind: ProbeSlot, Tag: "app"}, Every: "10s", Timeout: "2s", Failures: 3, Cooldown: "10m"},
		{Name: "exec", Match: sel, Probe: ProbeConfig{Kind: ProbeExec, Command: []string{"/bin/true"}}, Every: "10s", Timeout: "5s", Failures: 3, Cooldown: "10m"},
	}, Sinks: []SinkConfig{{Kind: "dir", Path: filepath.Join(dir, "reports")}}}
	if os.Getenv("MONITOR_BENCH_EXEC") == "0" { // the cost of everything but the exec'd commands
		cfg.Scenarios[2] = ScenarioConfig{Name: "region2", Match: sel, Probe: ProbeConfig{Kind: ProbeRegion}, Every: "10s", Timeout: "2s", Failures: 3}
	}
	p, err := Check(cfg, CheckOptions{})
	require.NoError(b, err)
	for i := 0; i < b.N; i++ {
		m, err := New(context.Background(), p, Options{Workdir: filepath.Join(dir, "work")})
		require.NoError(b, err)
		go func() {
			for range m.Events() {
			}
		}()
		time.Sleep(12 * time.Second) // every binding has run once
		c0, t0 := cpuTime(), time.Now()
		time.Sleep(window)
		cpu, wall := cpuTime()-c0, time.Since(t0)
		st := m.Stats()
		failed := 0
		var sample string
		for _, s := range m.States() {
			if s.Last == nil || !s.Last.OK {
				failed++
				if s.Last != nil && sample == "" {
					sample = s.VM + "/" + s.Scenario + ": " + s.Last.Error
				}
			}
		}
		rss, hwm := statusKB("VmRSS"), statusKB("VmHWM")
		m.Close()
		pct := float64(cpu) / float64(wall) * 100
		b.ReportMetric(pct, "%core")
		b.ReportMetric(float64(rss)/1024, "MB-rss")
		b.ReportMetric(float64(hwm)/1024, "MB-hwm")
		b.ReportMetric(float64(st.StartLagP50.Microseconds())/1000, "ms-lag-p50")
		b.ReportMetric(float64(st.StartLagP99.Microseconds())/1000, "ms-lag-p99")
		b.ReportMetric(float64(st.StartLagMax.Microseconds())/1000, "ms-lag-max")
		b.Logf("%d VMs, %d bindings: CPU %.2f%% of one core over %s, RSS %d MB (peak %d MB), start lag p50 %s p99 %s max %s (%d samples), %d bindings not passing %s",
			st.VMs, st.Bindings, pct, wall.Round(time.Millisecond), rss/1024, hwm/1024, st.StartLagP50, st.StartLagP99, st.StartLagMax, st.LagSamples, failed, sample)
		require.Zero(b, failed, "every probe passes under the load")
	}
}

// BenchmarkRunCommand is the exec probe's command path (start, wait,
// reap, read output): /bin/true in its own process group, output
// captured. It reports the process's CPU time per command (the child's
// own CPU excluded). In a tight loop the process never goes idle, so this
// is the floor of what a command costs; in the 1,000-VM monitor the
// wake-ups around it cost as much again (docs/numbers.md).
func BenchmarkRunCommand(b *testing.B) {
	ctx := context.Background()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, _, err := runCommand(ctx, 5*time.Second, []string{"/bin/true"}, nil, 4096); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "µs-cpu/op")
}

// BenchmarkInlineProbeRun is one run of a region probe and of a slot
// probe as the scheduler loop does them (probe on the watcher's latest
// verdict, result recorded in the binding's state and history): the
// per-probe cost of 2/3 of the 1,000-VM load, and its allocations.
func BenchmarkInlineProbeRun(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "vm.region")
	w, err := openRegionWriter([]string{path})
	require.NoError(b, err)
	defer w.close()
	w.tick()
	sel := map[string]string{"fleet": "bench"}
	cfg := Config{VMs: []VMConfig{{Name: "vm", Labels: sel, Region: path}}, Scenarios: []ScenarioConfig{
		{Name: "region", Match: sel, Probe: ProbeConfig{Kind: ProbeRegion}, Every: "1h", Timeout: "2s", Failures: 3},
		{Name: "slot", Match: sel, Probe: ProbeConfig{Kind: ProbeSlot, Tag: "app"}, Every: "1h", Timeout: "2s", Failures: 3},
	}, Sinks: []SinkConfig{{Kind: "dir", Path: filepath.Join(dir, "reports")}}}
	p, err := Check(cfg, CheckOptions{})
	require.NoError(b, err)
	m, err := New(context.Background(), p, Options{Workdir: filepath.Join(dir, "work"), WatchInterval: 10 * time.Millisecond})
	require.NoError(b, err)
	defer m.Close()
	go func() {
		for range m.Events() {
		}
	}()
	require.Eventually(b, func() bool { _, ok := m.RegionVerdict("vm"); return ok }, 10*time.Second, 10*time.Millisecond)
	m.mu.Lock()
	rb, sb := m.bindings[bindKey{"vm", "region"}], m.bindings[bindKey{"vm", "slot"}]
	m.mu.Unlock()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := time.Now()
		rb.runOnce(rb.ctx, now, now)
		sb.runOnce(sb.ctx, now, now)
	}
	b.StopTimer()
	for _, bd := range []*binding{rb, sb} {
		st := bd.state()
		require.True(b, st.Last != nil && st.Last.OK, "%s: %+v", st.Scenario, st.Last)
	}
}
