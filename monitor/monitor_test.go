package monitor

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/qemuhook"
)

// flakyScript fails on the runs listed in pattern (one character per run,
// 'F' fail, 'P' pass; the last character repeats) and counts runs in a file.
// It uses shell builtins only (one fork+exec per run), so that a loaded
// host does not push a passing run past the probe's timeout.
func flakyScript(t *testing.T, dir, pattern string) string {
	counter := filepath.Join(dir, "runs")
	exit := func(c byte) int {
		if c == 'P' {
			return 0
		}
		return 1
	}
	var cases strings.Builder
	for i := 0; i < len(pattern)-1; i++ {
		fmt.Fprintf(&cases, "%d) exit %d;;\n", i, exit(pattern[i]))
	}
	fmt.Fprintf(&cases, "*) exit %d;;", exit(pattern[len(pattern)-1]))
	return script(t, dir, "flaky.sh", fmt.Sprintf("read n < %[1]s 2>/dev/null || n=0\necho $((n+1)) > %[1]s\ncase $n in\n%[2]s\nesac",
		counter, cases.String()))
}

func execScenario(name, vm string, cmd []string, every string, failures int, cooldown string, diags ...string) ScenarioConfig {
	sc := ScenarioConfig{Name: name, VMs: []string{vm}, Probe: ProbeConfig{Kind: ProbeExec, Command: cmd},
		Every: every, Timeout: every, Failures: failures, Cooldown: cooldown}
	for _, d := range diags {
		sc.Diagnostics = append(sc.Diagnostics, ParseDiagSpec(d))
	}
	return sc
}

// TestFlappingMakesNoIncident: a probe that fails every other run never
// has 2 consecutive failures, so it never raises an incident, and each of
// its state changes is an event.
//
// Robust under load: the probe script uses shell builtins only (one
// fork+exec per run, no cat/cut/printf pipeline) and has a 1 s timeout.
// A host so loaded that a passing run still times out turns it into a
// failure for real; the assertion is therefore the monitor's rule over
// the results it actually recorded (an incident if and only if 2
// consecutive failures), which is "no incident" whenever no run timed out.
func TestFlappingMakesNoIncident(t *testing.T) {
	dir := t.TempDir()
	counter := filepath.Join(dir, "runs")
	// Run n (from 0) fails when n is even: F P F P ...
	cmd := []string{script(t, dir, "flap.sh", fmt.Sprintf(`read n < %[1]s 2>/dev/null || n=0
echo $((n+1)) > %[1]s
[ $((n %% 2)) -eq 1 ]`, counter))}
	tm := startMonitor(t, Config{VMs: []VMConfig{{Name: "a"}},
		Scenarios: []ScenarioConfig{execScenario("flap", "a", cmd, "1s", 2, "", "host")}})
	const runs = 6
	require.Eventually(t, func() bool {
		st, _ := tm.State("a", "flap")
		return st.Runs >= runs
	}, 60*time.Second, 20*time.Millisecond)
	tm.Monitor.mu.Lock()
	b := tm.Monitor.bindings[bindKey{"a", "flap"}]
	tm.Monitor.mu.Unlock()
	require.NotNil(t, b)
	b.mu.Lock()
	hist := append([]Result(nil), b.history...)
	st := b.st
	b.mu.Unlock()
	var pattern []byte
	twoInARow, changes, timedOut := false, 0, 0
	for i, r := range hist {
		c := byte('P')
		if !r.OK {
			c = 'F'
		}
		if r.TimedOut {
			c, timedOut = 'T', timedOut+1
		}
		pattern = append(pattern, c)
		if i > 0 && !r.OK && !hist[i-1].OK {
			twoInARow = true
		}
		if i == 0 || r.OK != hist[i-1].OK {
			changes++
		}
	}
	t.Logf("results: %s (T: timed out under host load)", pattern)
	require.GreaterOrEqual(t, len(hist), runs)
	if timedOut == 0 {
		require.Equal(t, "FPFPFP", string(pattern[:runs]), "the script's own pattern")
	}
	if twoInARow {
		require.Positive(t, st.Incidents, "2 consecutive failures (%s) must raise an incident", pattern)
	} else {
		require.Zero(t, st.Incidents, "fail once then pass never makes an incident (%s)", pattern)
		require.Empty(t, tm.eventsOf(EventIncident))
	}
	require.Eventually(t, func() bool { return len(tm.eventsOf(EventProbe)) >= changes }, 10*time.Second, 20*time.Millisecond,
		"each state change is an event: %d changes in %s", changes, pattern)
}

func TestCooldownHolds(t *testing.T) {
	dir := t.TempDir()
	cmd := []string{flakyScript(t, dir, "F")}
	tm := startMonitor(t, Config{VMs: []VMConfig{{Name: "a"}},
		Scenarios: []ScenarioConfig{execScenario("down", "a", cmd, "50ms", 2, "1h", "host")}})
	require.Eventually(t, func() bool {
		st, _ := tm.State("a", "down")
		return st.Runs >= 20
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(tm.bundles(t)) == 1 }, 10*time.Second, 20*time.Millisecond)
	st, _ := tm.State("a", "down")
	require.Equal(t, 1, st.Incidents, "one incident within the cooldown")
	require.GreaterOrEqual(t, st.Failures, 20)
	require.NotEmpty(t, st.LastIncidentID)
	require.Len(t, tm.eventsOf(EventIncident), 1)
}

func TestCooldownElapsedRaisesAgain(t *testing.T) {
	dir := t.TempDir()
	cmd := []string{flakyScript(t, dir, "F")}
	tm := startMonitor(t, Config{VMs: []VMConfig{{Name: "a"}},
		Scenarios: []ScenarioConfig{execScenario("down", "a", cmd, "50ms", 1, "300ms")}})
	require.Eventually(t, func() bool {
		st, _ := tm.State("a", "down")
		return st.Incidents >= 3
	}, 10*time.Second, 20*time.Millisecond)
	inc := tm.eventsOf(EventIncident)
	for i := 1; i < len(inc); i++ {
		require.GreaterOrEqual(t, inc[i].Time.Sub(inc[i-1].Time), 300*time.Millisecond, "incidents %d and %d", i-1, i)
	}
}

// TestExecTimeoutKillsProcessGroup: a probe command that overruns its
// timeout is killed together with its children.
func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	cmd := []string{script(t, dir, "hang.sh", "sleep 60 & echo $! > "+pidFile+"; wait")}
	ctx := context.Background()
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, _, err := runCommand(pctx, 0, cmd, nil, 100)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 30*time.Second, "killed at the 300 ms timeout, not after the script's 60 s")
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		// The child is gone (or a zombie reaped by init): signal 0 fails,
		// or /proc says Z.
		if syscall.Kill(pid, 0) != nil {
			return true
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(st), ") Z ")
	}, 3*time.Second, 20*time.Millisecond, "the probe's child (sleep, pid %d) must be killed with it", pid)
}

// TestIncidentBundle: consecutive failures raise an incident whose bundle
// lands in the dir sink with a manifest that describes every artifact.
func TestIncidentBundle(t *testing.T) {
	dir := t.TempDir()
	regionPath := filepath.Join(dir, "region")
	w, err := openRegionWriter([]string{regionPath})
	require.NoError(t, err)
	defer w.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.run(ctx, 100*time.Millisecond)
	envOut := filepath.Join(dir, "env")
	diagScript := script(t, dir, "collect.sh", "env | grep ^ACPIDIAG_ | sort > "+envOut+"; echo collected; echo oops >&2; exit 3")
	cmd := []string{flakyScript(t, dir, "PPFF")}
	vm := VMConfig{Name: "web", Labels: map[string]string{"app": "nginx"}, Region: regionPath}
	// 500 ms: the passing runs must not time out on a loaded host (the
	// history below wants exactly P P F F).
	sc := execScenario("check", "web", cmd, "500ms", 2, "1h", "host", "region", "script:"+diagScript)
	tm := startMonitor(t, Config{VMs: []VMConfig{vm}, Scenarios: []ScenarioConfig{sc}})
	require.Eventually(t, func() bool { return len(tm.bundles(t)) == 1 }, 15*time.Second, 20*time.Millisecond)
	bdir := tm.bundles(t)[0]
	m, err := ReadManifest(bdir)
	require.NoError(t, err)
	require.Equal(t, SchemaVersion, m.Schema)
	require.Equal(t, "scenario", m.Trigger)
	require.Equal(t, "web", m.VM.Name)
	require.Equal(t, map[string]string{"app": "nginx"}, m.VM.Labels)
	require.Equal(t, "check", m.Scenario.Name)
	require.Equal(t, []string{"host", "region", "script:collect.sh"}, m.Scenario.Diagnostics)
	require.Equal(t, 2, m.Failures)
	// History: two passes then two failures, oldest first.
	require.GreaterOrEqual(t, len(m.ProbeHistory), 4)
	h := m.ProbeHistory[len(m.ProbeHistory)-4:]
	require.True(t, h[0].OK && h[1].OK && !h[2].OK && !h[3].OK, "%+v", h)
	require.Contains(t, h[3].Error, "exit status 1")

	byDiag := map[string]Artifact{}
	for _, a := range m.Artifacts {
		byDiag[a.Diagnostic] = a
		if a.Name == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(bdir, a.Name))
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		require.Equal(t, hex.EncodeToString(sum[:]), a.SHA256, a.Name)
		require.Equal(t, int64(len(b)), a.Size, a.Name)
		require.Positive(t, a.Duration, a.Name)
	}
	require.Empty(t, byDiag["host"].Error)
	require.Empty(t, byDiag["region"].Error)
	rb, _ := os.ReadFile(filepath.Join(bdir, "region.json"))
	require.Contains(t, string(rb), `"state": "alive"`)
	sa := byDiag["script:collect.sh"]
	require.Equal(t, "exit status 3", sa.Error, "a failing script is recorded as failed, with its output")
	sb, _ := os.ReadFile(filepath.Join(bdir, sa.Name))
	require.Equal(t, "collected\noops\n", string(sb))
	env, err := os.ReadFile(envOut)
	require.NoError(t, err)
	require.Contains(t, string(env), "ACPIDIAG_INCIDENT="+m.ID)
	require.Contains(t, string(env), "ACPIDIAG_REGION="+regionPath)
	require.Contains(t, string(env), "ACPIDIAG_SCENARIO=check")
	require.Contains(t, string(env), "ACPIDIAG_LABEL_APP=nginx")

	// The packed copy holds the same files.
	f, err := os.Open(bdir + ".tar.gz")
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	names := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		names[hdr.Name] = true
	}
	require.True(t, names[filepath.Base(bdir)+"/manifest.json"], "%v", names)
	require.True(t, names[filepath.Base(bdir)+"/host.json"], "%v", names)
	require.Eventually(t, func() bool { return len(tm.eventsOf(EventBundle)) == 1 }, 5*time.Second, 10*time.Millisecond)
}

// TestBundleCaps: an artifact over the cap is cut and marked; the bundle
// cap holds over all artifacts.
func TestBundleCaps(t *testing.T) {
	dir := t.TempDir()
	big := script(t, dir, "big.sh", "head -c 5000 /dev/zero | tr '\\0' x")
	cmd := []string{flakyScript(t, dir, "F")}
	sc := execScenario("s", "a", cmd, "100ms", 1, "1h", "script:"+big, "script:"+big, "script:"+big)
	cfg := Config{VMs: []VMConfig{{Name: "a"}}, Scenarios: []ScenarioConfig{sc},
		Limits: Limits{ArtifactBytes: 3000, BundleBytes: 7000}}
	tm := startMonitor(t, cfg)
	require.Eventually(t, func() bool { return len(tm.bundles(t)) == 1 }, 10*time.Second, 20*time.Millisecond)
	m, err := ReadManifest(tm.bundles(t)[0])
	require.NoError(t, err)
	require.True(t, m.Truncated)
	require.LessOrEqual(t, m.TotalBytes, int64(7000))
	var sizes []int64
	for _, a := range m.Artifacts {
		sizes = append(sizes, a.Size)
		require.True(t, a.Truncated)
		require.Equal(t, int64(5000), a.OriginalSize)
	}
	// Artifact names collide (same script): the last write wins on disk,
	// but each one is listed; sizes follow the caps.
	require.Equal(t, []int64{3000, 3000, 1000}, sizes)
	require.Contains(t, m.Artifacts[0].Error, "artifact cap")
	require.Contains(t, m.Artifacts[2].Error, "bundle cap")
}

// TestRegionAndSlotProbes runs the region and slot probes against region
// files kept ticking by a writer; pausing the writer makes them fail.
func TestRegionAndSlotProbes(t *testing.T) {
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "r0")}
	w, err := openRegionWriter(paths)
	require.NoError(t, err)
	defer w.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.run(ctx, 100*time.Millisecond)
	one := 1
	cfg := Config{VMs: []VMConfig{{Name: "a", Region: paths[0]}}, Scenarios: []ScenarioConfig{
		{Name: "region", VMs: []string{"a"}, Probe: ProbeConfig{Kind: ProbeRegion}, Every: "200ms", Timeout: "200ms", Failures: 100},
		{Name: "slot-tag", VMs: []string{"a"}, Probe: ProbeConfig{Kind: ProbeSlot, Tag: "app"}, Every: "200ms", Timeout: "200ms", Failures: 100},
		{Name: "slot-index", VMs: []string{"a"}, Probe: ProbeConfig{Kind: ProbeSlot, Index: &one}, Every: "200ms", Timeout: "200ms", Failures: 100},
	}}
	tm := startMonitor(t, cfg)
	ok := func(sc string) func() bool {
		return func() bool { st, _ := tm.State("a", sc); return st.Last != nil && st.Last.OK }
	}
	failing := func(sc string) func() bool {
		return func() bool { st, _ := tm.State("a", sc); return st.Last != nil && !st.Last.OK }
	}
	require.Eventually(t, ok("region"), 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, ok("slot-tag"), 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, failing("slot-index"), 5*time.Second, 20*time.Millisecond, "slot 1 is unused")
	st, _ := tm.State("a", "slot-index")
	require.Contains(t, st.Last.Error, "slot 1 unused")

	w.appStop[0].Store(true) // the application stops; the kernel ticks on
	require.Eventually(t, failing("slot-tag"), 8*time.Second, 20*time.Millisecond)
	require.True(t, ok("region")(), "region still alive")
	st, _ = tm.State("a", "slot-tag")
	require.Contains(t, st.Last.Error, "stale")

	w.paused[0].Store(true) // the kernel stops ticking
	require.Eventually(t, failing("region"), 8*time.Second, 20*time.Millisecond)
	st, _ = tm.State("a", "region")
	require.Contains(t, st.Last.Error, "stale")
}

func TestTCPHTTPDiskProbes(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	status := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	disk := filepath.Join(dir, "disk.img")
	rec := make([]byte, 4096)
	require.NoError(t, os.WriteFile(disk, rec, 0o644))
	bump := func(n uint64) {
		binary.LittleEndian.PutUint64(rec[512:], n)
		binary.LittleEndian.PutUint64(rec[520:], uint64(time.Now().UnixNano()))
		require.NoError(t, os.WriteFile(disk, rec, 0o644))
	}
	bump(1)
	closedPort := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		a := l.Addr().String()
		l.Close()
		return a
	}()

	ctx := context.Background()
	run := func(pc ProbeConfig, st *probeState) error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		sc := &Scenario{Config: ScenarioConfig{Probe: pc}}
		_, err := runProbe(cctx, 0, nil, sc, st)
		return err
	}
	require.NoError(t, run(ProbeConfig{Kind: ProbeTCP, Address: ln.Addr().String()}, &probeState{}))
	require.ErrorContains(t, run(ProbeConfig{Kind: ProbeTCP, Address: closedPort}, &probeState{}), "connect")
	require.NoError(t, run(ProbeConfig{Kind: ProbeHTTP, URL: srv.URL}, &probeState{}))
	status = 503
	require.ErrorContains(t, run(ProbeConfig{Kind: ProbeHTTP, URL: srv.URL}, &probeState{}), "status 503, want 200")
	require.NoError(t, run(ProbeConfig{Kind: ProbeHTTP, URL: srv.URL, Status: 503}, &probeState{}))

	var ds probeState
	dp := ProbeConfig{Kind: ProbeDisk, Path: disk, Offset: 512}
	require.NoError(t, run(dp, &ds), "baseline")
	require.ErrorContains(t, run(dp, &ds), "did not advance")
	bump(2)
	require.NoError(t, run(dp, &ds))
	require.ErrorContains(t, run(ProbeConfig{Kind: ProbeDisk, Path: disk, Offset: 4090}, &probeState{}), "offset 4090")
	ln.Close()
}

// TestRuntimeVMSet: Apply adds and removes VMs and leaves an unchanged VM
// (its connection and its scenario state) alone; the Go API does the same.
func TestRuntimeVMSet(t *testing.T) {
	dir := t.TempDir()
	pass := []string{script(t, dir, "ok.sh", "exit 0")}
	sc := ScenarioConfig{Name: "ok", Match: map[string]string{"tier": "web"}, Probe: ProbeConfig{Kind: ProbeExec, Command: pass},
		Every: "50ms", Timeout: "50ms", Failures: 1}
	web := map[string]string{"tier": "web"}
	cfg := Config{VMs: []VMConfig{{Name: "a", Labels: web}, {Name: "c", Labels: web}}, Scenarios: []ScenarioConfig{sc}}
	tm := startMonitor(t, cfg)
	require.Eventually(t, func() bool { st, _ := tm.State("a", "ok"); return st.Runs >= 3 }, 5*time.Second, 10*time.Millisecond)
	tm.mu.Lock()
	rtA := tm.vms["a"]
	tm.mu.Unlock()
	before, _ := tm.State("a", "ok")

	cfg2 := Config{VMs: []VMConfig{{Name: "a", Labels: web}, {Name: "b", Labels: web}}, Scenarios: []ScenarioConfig{sc},
		Sinks: []SinkConfig{{Kind: "dir", Path: tm.sinkDir}}}
	p2, err := Check(cfg2, CheckOptions{})
	require.NoError(t, err)
	require.NoError(t, tm.Apply(p2))
	require.Equal(t, []string{"a", "b"}, tm.VMs())
	tm.mu.Lock()
	require.Same(t, rtA, tm.vms["a"], "unchanged VM left alone")
	tm.mu.Unlock()
	after, ok := tm.State("a", "ok")
	require.True(t, ok)
	require.GreaterOrEqual(t, after.Runs, before.Runs, "scenario state kept")
	_, ok = tm.State("c", "ok")
	require.False(t, ok, "removed VM's scenario stopped")
	require.Eventually(t, func() bool { st, _ := tm.State("b", "ok"); return st.Runs >= 1 }, 5*time.Second, 10*time.Millisecond)

	// Go API: add, change labels (unbinds), remove.
	require.NoError(t, tm.AddVM(VMConfig{Name: "d", Labels: web}))
	require.Error(t, tm.AddVM(VMConfig{Name: "d"}), "duplicate")
	require.Eventually(t, func() bool { st, _ := tm.State("d", "ok"); return st.Runs >= 1 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, tm.UpdateVM(VMConfig{Name: "d", Labels: map[string]string{"tier": "db"}}))
	_, ok = tm.State("d", "ok")
	require.False(t, ok, "relabelled VM no longer matches")
	require.NoError(t, tm.RemoveVM("d"))
	require.Error(t, tm.RemoveVM("d"))
	require.Equal(t, []string{"a", "b"}, tm.VMs())
	require.ErrorContains(t, tm.AddVM(VMConfig{Name: ""}), "empty")
}

// TestDiagnosticsConcurrencyLimit: incidents on 4 VMs at once run at most
// limits.diagnostics diagnostics at a time.
func TestDiagnosticsConcurrencyLimit(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	slow := script(t, dir, "slow.sh", "echo start $(date +%s%N) >> "+log+"; sleep 0.3; echo end $(date +%s%N) >> "+log)
	fail := []string{script(t, dir, "fail.sh", "exit 1")}
	var vms []VMConfig
	for i := 0; i < 4; i++ {
		vms = append(vms, VMConfig{Name: fmt.Sprintf("v%d", i), Labels: map[string]string{"x": "y"}})
	}
	sc := ScenarioConfig{Name: "f", Match: map[string]string{"x": "y"}, Probe: ProbeConfig{Kind: ProbeExec, Command: fail},
		Every: "100ms", Timeout: "100ms", Failures: 1, Cooldown: "1h",
		Diagnostics: []DiagSpec{ParseDiagSpec("script:" + slow), ParseDiagSpec("script:" + slow)}}
	tm := startMonitor(t, Config{VMs: vms, Scenarios: []ScenarioConfig{sc}, Limits: Limits{Diagnostics: 2}})
	require.Eventually(t, func() bool { return len(tm.bundles(t)) == 4 }, 20*time.Second, 50*time.Millisecond)
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	cur, peak := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.HasPrefix(line, "start") {
			cur++
		} else {
			cur--
		}
		peak = max(peak, cur)
	}
	require.Equal(t, 2, peak, "8 slow diagnostics, at most 2 at once:\n%s", b)
}

// TestConsoleProbeReadsOnlyWhatFollows: the console probe ignores output
// that was there before it typed (a real unix socket with a shell-like
// responder stands in for QEMU's serial chardev; the e2e test uses the
// real guest).
func TestConsoleProbeReadsOnlyWhatFollows(t *testing.T) {
	dir, err := os.MkdirTemp("", "con")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "serial")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer ln.Close()
	answer := make(chan bool, 16)
	got := make(chan string, 16)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("old output: load average: 9.99\n"))
		buf := make([]byte, 256)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
			if <-answer {
				c.Write([]byte(" 10:00:00 up 1 min,  load average: 0.01, 0.02, 0.03\n"))
			}
		}
	}()
	re := regexp.MustCompile(`load average: [0-9.]+`)
	tm := startMonitor(t, Config{VMs: []VMConfig{{Name: "a", Serial: sock}}, Scenarios: nil})
	tm.mu.Lock()
	v := tm.vms["a"]
	tm.mu.Unlock()
	require.Eventually(t, func() bool { con := v.console(); return con != nil && len(con.Tail(100)) > 0 }, 5*time.Second, 10*time.Millisecond)

	answer <- false
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = probeConsole(ctx, v, "uptime", re)
	cancel()
	require.Error(t, err, "the old 'load average' line must not satisfy the probe")
	require.Equal(t, "uptime\n", <-got, "typed one whole line")

	answer <- true
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	out, err := probeConsole(ctx, v, "uptime", re)
	cancel()
	require.NoError(t, err)
	require.Contains(t, out, "load average: 0.01")
	require.NotContains(t, out, "9.99")
}

// TestRemoveVMWhileDiagnosticsRun: the removed VM's running diagnostics are
// cancelled (the script's process group killed), the rest are marked not
// run, and the bundle is still delivered.
func TestRemoveVMWhileDiagnosticsRun(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	slow := script(t, dir, "slow.sh", "touch "+started+"; sleep 30")
	fail := []string{script(t, dir, "fail.sh", "exit 1")}
	sc := execScenario("f", "a", fail, "100ms", 1, "1h", "host", "script:"+slow, "script:"+slow)
	tm := startMonitor(t, Config{VMs: []VMConfig{{Name: "a"}}, Scenarios: []ScenarioConfig{sc}})
	require.Eventually(t, func() bool { _, err := os.Stat(started); return err == nil }, 10*time.Second, 20*time.Millisecond)
	t0 := time.Now()
	require.NoError(t, tm.RemoveVM("a"))
	require.Eventually(t, func() bool { return len(tm.bundles(t)) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Less(t, time.Since(t0), 5*time.Second, "the 30 s script was cut short")
	m, err := ReadManifest(tm.bundles(t)[0])
	require.NoError(t, err)
	require.Len(t, m.Artifacts, 3)
	require.Empty(t, m.Artifacts[0].Error, "host ran")
	require.Contains(t, m.Artifacts[1].Error, "context canceled")
	require.Contains(t, m.Artifacts[2].Error, "not run")
}

func TestParseStat(t *testing.T) {
	st, err := parseStat([]byte("1234 (qemu (x) y) R 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 7 0 100 4096 300 0 0"))
	require.NoError(t, err)
	require.Equal(t, "qemu (x) y", st.comm)
	require.Equal(t, "R", st.state)
	require.Equal(t, int64(250), st.utime)
	require.Equal(t, int64(30), st.stime)
	require.Equal(t, 7, st.threads)
	require.Equal(t, int64(300), st.rssPages)
	_, err = parseStat([]byte("1 (a) R 1 2"))
	require.ErrorContains(t, err, "fields after comm")
	_, err = parseStat([]byte("no comm"))
	require.Error(t, err)
	h := CollectHost(context.Background(), nil, HostOptions{Paths: []string{t.TempDir()}})
	require.NotEmpty(t, h.LoadAvg)
	require.Positive(t, h.Memory["MemTotal"])
	require.Len(t, h.Disks, 1)
	require.Empty(t, h.Errors)
}

// shortConn cuts its first write in half and fails it, as a write that
// times out midway would. A partial write cannot be produced on demand with
// a real serial socket, hence this wrapper (the bytes still go through a
// real unix socket).
type shortConn struct {
	net.Conn
	cut bool
}

func (c *shortConn) Write(p []byte) (int, error) {
	if !c.cut {
		c.cut = true
		n, _ := c.Conn.Write(p[:len(p)/2])
		return n, os.ErrDeadlineExceeded
	}
	return c.Conn.Write(p)
}

// TestConsoleProbeNeverLeavesHalfTypedInput: a cut write is followed by a
// kill-line (^U), so the guest's line buffer holds no half command.
func TestConsoleProbeNeverLeavesHalfTypedInput(t *testing.T) {
	dir, err := os.MkdirTemp("", "con")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	require.NoError(t, err)
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var all []byte
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for !bytes.Contains(all, []byte(lineKill)) {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- all
	}()
	raw, err := net.Dial("unix", filepath.Join(dir, "s"))
	require.NoError(t, err)
	con := qemuhook.NewConsole(&shortConn{Conn: raw}, 0)
	defer con.Close()
	err = writeLine(context.Background(), con, "uptime")
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Equal(t, "upt"+lineKill, string(<-got), "the half line is killed")
}

// TestReloadKeepsUnchangedSlotIndexScenario: a reload of the same file
// keeps a slot-by-index scenario's binding (and so its state). The probe
// was compared by its printed form, which holds the address of the
// parsed index: every reload restarted the binding.
func TestReloadKeepsUnchangedSlotIndexScenario(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "region")
	newRegionFile(t, reg)
	js := []byte(`{"vms": [{"name": "a", "region": "` + reg + `"}],
		"scenarios": [{"name": "app", "vms": ["a"], "probe": {"kind": "slot", "index": 0}, "every": "50ms", "timeout": "50ms",
		               "diagnostics": [{"kind": "region", "timeout": "5s"}, "host"]}]}`)
	c, err := ParseConfig(js)
	require.NoError(t, err)
	tm := startMonitor(t, c)
	require.Eventually(t, func() bool { st, _ := tm.State("a", "app"); return st.Runs >= 2 }, 5*time.Second, 10*time.Millisecond)
	binding := func() *binding {
		tm.mu.Lock()
		defer tm.mu.Unlock()
		return tm.bindings[bindKey{"a", "app"}]
	}
	before := binding()
	c2, err := ParseConfig(js) // the same file read again: a new *int for the index
	require.NoError(t, err)
	c2.Sinks = []SinkConfig{{Kind: "dir", Path: tm.sinkDir, Pack: true}}
	p2, err := Check(c2, CheckOptions{})
	require.NoError(t, err)
	require.NoError(t, tm.Apply(p2))
	require.Same(t, before, binding(), "an unchanged slot-by-index scenario keeps its binding")

	one := 1
	c2.Scenarios[0].Probe.Index = &one
	p3, err := Check(c2, CheckOptions{})
	require.NoError(t, err)
	require.NoError(t, tm.Apply(p3))
	require.NotSame(t, before, binding(), "a changed index restarts the binding")
}

// TestRemoveVMDuringDiagnosticsIsPrompt: RemoveVM waits for the VM's
// diagnostics in progress to end before it closes the connections (so a
// SysRq capture cut short can set the loglevel back), holding the
// monitor's lock. The diagnostics are cancelled first and take no lock
// the removal holds: the removal takes about as long as a cancelled
// diagnostic, not the drain bound.
func TestRemoveVMDuringDiagnosticsIsPrompt(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	slow := script(t, dir, "slow.sh", "touch "+started+"; sleep 30")
	tm := startMonitor(t, Config{VMs: []VMConfig{{Name: "v"}}})
	wait := diagnoseInBackground(t, tm, "v", diagList("script:"+slow, "script:"+slow, "script:"+slow))
	require.Eventually(t, func() bool { _, err := os.Stat(started); return err == nil }, 10*time.Second, 10*time.Millisecond)
	start := time.Now()
	require.NoError(t, tm.RemoveVM("v"))
	took := time.Since(start)
	res := wait(20*time.Second, "the VM was removed")
	require.Less(t, took, diagDrain/2, "RemoveVM took %s", took)
	var notRun int
	for _, a := range res.Manifest.Artifacts {
		t.Logf("%s: %s", a.Diagnostic, a.Error)
		if strings.Contains(a.Error, "not run") {
			notRun++
		}
	}
	require.Equal(t, 2, notRun, "the second and third scripts are not run")
}
