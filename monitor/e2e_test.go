//go:build e2e

package monitor

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/ssdt"
)

// bootGuest starts the real test guest under QEMU (TCG, 1 vCPU) with the
// channel, ERST, pvpanic, a balloon, QMP and serial sockets, and returns
// the process and the VM's monitor configuration.
func bootGuest(t *testing.T, appendArgs string) (*qemuhook.Process, VMConfig) {
	t.Helper()
	k, initrd := guesttest.Require(t)
	dir, err := os.MkdirTemp("", "dmon") // short: socket paths
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ch, err := qemuhook.NewChannel(dir, ssdt.DefaultConfig(), "q35")
	require.NoError(t, err)
	cfg := qemuhook.Config{Machine: "q35", MemoryMB: 256, SMP: 1, Workdir: dir, Kernel: k.Vmlinuz, Initrd: initrd.Path,
		Append: appendArgs, Channel: ch, ERSTPath: filepath.Join(dir, "erst"), PVPanic: true, Balloon: true,
		QMPSocket: filepath.Join(dir, "qmp"), SerialSocket: filepath.Join(dir, "serial")}
	p, err := qemuhook.Start(context.Background(), cfg, qemuhook.StartOptions{})
	require.NoError(t, err)
	t.Cleanup(p.Kill)
	return p, VMConfig{Name: "guest", Labels: map[string]string{"app": "testguest"},
		QMP: cfg.QMPSocket, Serial: cfg.SerialSocket, Region: ch.BackingPath, ERST: cfg.ERSTPath}
}

func (tm *testMon) vm(name string) *vmRuntime {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.vms[name]
}

// waitBundle waits for the next bundle event and returns the bundle dir.
func (tm *testMon) waitBundle(t *testing.T, n int, timeout time.Duration) string {
	t.Helper()
	require.Eventually(t, func() bool { return len(tm.eventsOf(EventBundle)) >= n }, timeout, 50*time.Millisecond,
		"bundle %d; events so far: %s", n, func() string { return mustJSON(t, tm.events) }())
	e := tm.eventsOf(EventBundle)[n-1]
	return strings.Split(e.Path, ",")[0]
}

func readArtifact(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err, "artifact %s", name)
	return string(b)
}

func logArtifacts(t *testing.T, m *Manifest) {
	for _, a := range m.Artifacts {
		t.Logf("  %-16s %-20s %8d B %6d ms %s", a.Diagnostic, a.Name, a.Size, a.Duration.Milliseconds(), a.Error)
	}
}

// withScenario applies a plan that adds scenarios to the running VM set
// (a reload: the VM is unchanged and left alone).
func withScenario(t *testing.T, tm *testMon, vm VMConfig, scs ...ScenarioConfig) {
	t.Helper()
	p, err := Check(Config{VMs: []VMConfig{vm}, Scenarios: scs, Sinks: []SinkConfig{{Kind: "dir", Path: tm.sinkDir}}}, CheckOptions{})
	require.NoError(t, err)
	before := tm.vm(vm.Name)
	require.NoError(t, tm.Apply(p))
	require.Same(t, before, tm.vm(vm.Name), "the reload leaves the VM's connections alone")
}

func waitRegion(t *testing.T, tm *testMon, state hostreader.State, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		rv, ok := tm.vm("guest").regionVerdict()
		return ok && rv.State == state
	}, timeout, 100*time.Millisecond, "region %s", state)
}

var allDiags = []string{"sysrq:t", "sysrq:w", "sysrq:l", "registers", "qmp", "host", "console", "region", "erst"}

// TestE2EUserspaceHang: the guest's userspace stops answering on the
// console while the kernel keeps ticking. The console probe fails twice and
// one bundle appears with the region alive, SysRq t/w/l, registers from HMP
// and the gdbstub, QMP running and the host's vCPU thread states. Then
// QEMU is killed (kill -9) in the middle of a manual diagnosis: the bundle
// is still written, with the failed items marked.
func TestE2EUserspaceHang(t *testing.T) {
	proc, vm := bootGuest(t, testguest.BootArgs("alive", 0, "acpidiag.shell=1"))
	tm := startMonitor(t, Config{VMs: []VMConfig{vm}})
	waitRegion(t, tm, hostreader.StateAlive, 120*time.Second)
	const every, failures = 3 * time.Second, 2
	withScenario(t, tm, vm, ScenarioConfig{Name: "uptime", Match: map[string]string{"app": "testguest"},
		Probe: ProbeConfig{Kind: ProbeConsole, Send: "uptime", Expect: `load average: [0-9.]+`},
		Every: every.String(), Timeout: "2s", Failures: failures, Cooldown: "10m", Diagnostics: diagList(allDiags...)})
	require.Eventually(t, func() bool {
		st, _ := tm.State("guest", "uptime")
		return st.Last != nil && st.Last.OK
	}, 30*time.Second, 50*time.Millisecond, "the shell answers uptime")
	st, _ := tm.State("guest", "uptime")
	t.Logf("console probe passed: %s", st.Last.Detail)

	// Hang userspace through the shell (the monitor owns the console).
	v := tm.vm("guest")
	v.conMu.Lock()
	_, err := v.console().Write([]byte("hang\n"))
	v.conMu.Unlock()
	require.NoError(t, err)
	hangAt := time.Now()

	dir := tm.waitBundle(t, 1, 120*time.Second)
	m, err := ReadManifest(dir)
	require.NoError(t, err)
	firstFail := time.Time{}
	for _, r := range m.ProbeHistory {
		if !r.OK && firstFail.IsZero() {
			firstFail = r.Start
		}
	}
	t.Logf("bundle %s: hang→bundle %s, first failed probe→bundle %s (bound failures×every+15s = %s), diagnostics %s",
		filepath.Base(dir), m.Finished.Sub(hangAt).Round(time.Millisecond), m.Finished.Sub(firstFail).Round(time.Millisecond),
		failures*every+15*time.Second, m.Finished.Sub(m.Created).Round(time.Millisecond))
	logArtifacts(t, m)
	require.Equal(t, failures, m.Failures)
	require.Len(t, tm.eventsOf(EventIncident), 1)
	require.LessOrEqual(t, m.Finished.Sub(firstFail), failures*every+15*time.Second)

	// Region alive: the kernel still ticks.
	var region struct{ Monitor struct{ State string } }
	require.NoError(t, json.Unmarshal([]byte(readArtifact(t, dir, "region.json")), &region))
	require.Equal(t, "alive", region.Monitor.State)
	// SysRq t lists the guest's tasks; w and l answered.
	require.Contains(t, readArtifact(t, dir, "sysrq-t.txt"), "sysrq: Show State")
	require.Contains(t, readArtifact(t, dir, "sysrq-t.txt"), "task:init")
	require.Contains(t, readArtifact(t, dir, "sysrq-w.txt"), "Show Blocked State")
	require.Contains(t, readArtifact(t, dir, "sysrq-l.txt"), "Show backtrace of all active CPUs")
	// Registers from HMP and from the gdbstub, every vCPU.
	require.Contains(t, readArtifact(t, dir, "registers-hmp.txt"), "RIP=")
	var gdb struct {
		CPUs []struct {
			Info      string
			Registers []struct{ Name, Hex string }
		}
	}
	require.NoError(t, json.Unmarshal([]byte(readArtifact(t, dir, "registers-gdb.json")), &gdb))
	require.Len(t, gdb.CPUs, 1)
	rip := ""
	for _, r := range gdb.CPUs[0].Registers {
		if r.Name == "rip" {
			rip = r.Hex
		}
	}
	require.NotEmpty(t, rip)
	t.Logf("gdbstub: %s rip=%s", gdb.CPUs[0].Info, rip)
	// QMP running (the gdbstub detached and the VM resumed).
	var qr struct {
		Replies map[string]json.RawMessage
	}
	require.NoError(t, json.Unmarshal([]byte(readArtifact(t, dir, "qmp.json")), &qr))
	require.Contains(t, string(qr.Replies["query-status"]), `"status": "running"`)
	require.Contains(t, qr.Replies, "query-balloon")
	// Host: the vCPU thread, busy with the guest's busy loops.
	var host HostReport
	require.NoError(t, json.Unmarshal([]byte(readArtifact(t, dir, "host.json")), &host))
	require.Len(t, host.VCPUs, 1)
	require.NotEmpty(t, host.VCPUs[0].State)
	require.NotNil(t, host.QEMU)
	require.Equal(t, proc.Pid(), host.QEMU.PID)
	t.Logf("host: vCPU 0 thread %d state %s %.0f%% CPU, runnable %.0f%%; QEMU rss %d MB", host.VCPUs[0].ThreadID, host.VCPUs[0].State,
		host.VCPUs[0].CPUPercent, host.VCPUs[0].RunnablePercent, host.QEMU.RSSBytes>>20)
	require.Contains(t, readArtifact(t, dir, "console.txt"), "hanging userspace now")
	// The loglevel raised for SysRq is set back to the boot's (loglevel=4
	// in QEMU's -append; nothing configured).
	require.NotNil(t, m.LogLevel)
	require.Equal(t, ManifestLogLevel{Raised: 8, Restored: 4, From: "qemu -append loglevel=4"}, *m.LogLevel)
	for _, a := range m.Artifacts {
		require.Empty(t, a.Error, "%s", a.Diagnostic)
	}
	qs, err := qemuhook.QueryStatus(context.Background(), v.qmp())
	require.NoError(t, err)
	require.True(t, qs.Running, "the VM runs after the diagnostics")

	// QEMU killed (kill -9) in the middle of a diagnosis.
	wait := diagnoseInBackground(t, tm, "guest", diagList("host", "sysrq:t", "registers", "sysrq:m", "qmp", "sysrq:q", "region", "erst"))
	time.Sleep(1200 * time.Millisecond) // host sampling (0.5 s) is done, SysRq t is running
	require.NoError(t, syscall.Kill(proc.Pid(), syscall.SIGKILL))
	res := wait(90*time.Second, "QEMU was killed")
	logArtifacts(t, res.Manifest)
	byDiag := map[string]Artifact{}
	for _, a := range res.Manifest.Artifacts {
		byDiag[a.Diagnostic] = a
	}
	require.Empty(t, byDiag["host"].Error)
	require.NotEmpty(t, byDiag["registers"].Error, "registers after the kill fail")
	require.NotEmpty(t, byDiag["qmp"].Error)
	require.Empty(t, byDiag["region"].Error, "the region file outlives QEMU")
	_, err = os.Stat(filepath.Join(res.Locations[0], "manifest.json"))
	require.NoError(t, err)
}

// TestE2ELivelock: every CPU taken by an unthrottled SCHED_FIFO 99 loop.
// The region probe fails; the bundle shows the vCPU thread busy on the
// host and SysRq l's backtrace.
func TestE2ELivelock(t *testing.T) {
	_, vm := bootGuest(t, testguest.BootArgs("livelock", 8*time.Second))
	tm := startMonitor(t, Config{VMs: []VMConfig{vm}})
	waitRegion(t, tm, hostreader.StateAlive, 120*time.Second)
	withScenario(t, tm, vm, ScenarioConfig{Name: "region", VMs: []string{"guest"}, Probe: ProbeConfig{Kind: ProbeRegion},
		Every: "1s", Timeout: "1s", Failures: 2, Cooldown: "10m", Diagnostics: diagList("host", "sysrq:l", "region", "qmp")})
	dir := tm.waitBundle(t, 1, 120*time.Second)
	m, err := ReadManifest(dir)
	require.NoError(t, err)
	logArtifacts(t, m)
	last := m.ProbeHistory[len(m.ProbeHistory)-1]
	require.False(t, last.OK)
	require.Contains(t, last.Error, "stale")
	var host HostReport
	require.NoError(t, json.Unmarshal([]byte(readArtifact(t, dir, "host.json")), &host))
	require.Len(t, host.VCPUs, 1)
	t.Logf("vCPU 0: state %s, %.0f%% of a host CPU, runnable %.0f%% over %d ms", host.VCPUs[0].State, host.VCPUs[0].CPUPercent,
		host.VCPUs[0].RunnablePercent, host.VCPUs[0].SampleMs)
	// The host is shared (other tests, other builds): the vCPU's share of
	// a CPU varies, but a livelocked vCPU never stops wanting one.
	require.Greater(t, host.VCPUs[0].RunnablePercent, 85.0, "a livelocked vCPU is busy on the host")
	l := readArtifact(t, dir, "sysrq-l.txt")
	require.Contains(t, l, "Show backtrace of all active CPUs")
	require.Contains(t, l, "NMI backtrace for cpu 0")
}

// TestE2EPanic: the guest panics. The region probe fails (panicked) and the
// bundle holds the ERST panic text.
func TestE2EPanic(t *testing.T) {
	_, vm := bootGuest(t, testguest.BootArgs("panic", 6*time.Second))
	tm := startMonitor(t, Config{VMs: []VMConfig{vm}})
	waitRegion(t, tm, hostreader.StateAlive, 120*time.Second)
	withScenario(t, tm, vm, ScenarioConfig{Name: "region", VMs: []string{"guest"}, Probe: ProbeConfig{Kind: ProbeRegion},
		Every: "1s", Timeout: "1s", Failures: 1, Cooldown: "10m", Diagnostics: diagList("host", "region", "qmp", "erst")})
	dir := tm.waitBundle(t, 1, 120*time.Second)
	m, err := ReadManifest(dir)
	require.NoError(t, err)
	logArtifacts(t, m)
	require.Contains(t, m.ProbeHistory[len(m.ProbeHistory)-1].Error, "panicked")
	require.Contains(t, readArtifact(t, dir, "erst.txt"), "Kernel panic - not syncing")
	var e struct {
		New []struct {
			PanicLine string `json:"panic_line"`
		} `json:"new_dumps"`
	}
	require.NoError(t, json.Unmarshal([]byte(readArtifact(t, dir, "erst.json")), &e))
	require.NotEmpty(t, e.New)
	t.Logf("ERST: %s", e.New[0].PanicLine)
	var tl []string
	for _, x := range m.Timeline {
		tl = append(tl, x.Source+":"+x.State)
	}
	require.Contains(t, strings.Join(tl, " "), "panicked")
}

// TestE2ERemoveVMDuringSysRq: the VM is removed while a SysRq capture
// runs. The capture is cut short, the rest is not run, and the guest's
// console loglevel, raised to 8 for the capture, is still set back to the
// boot's 4 before the VM's connections close (it used to race with them
// and stay at 8: the manifest said "no QMP or console connection").
func TestE2ERemoveVMDuringSysRq(t *testing.T) {
	_, vm := bootGuest(t, testguest.BootArgs("alive", 0, "acpidiag.shell=1"))
	tm := startMonitor(t, Config{VMs: []VMConfig{vm}})
	waitRegion(t, tm, hostreader.StateAlive, 120*time.Second)
	v := tm.vm("guest")
	require.Eventually(t, func() bool { return v.qmp() != nil && v.console() != nil }, 30*time.Second, 20*time.Millisecond)
	con := v.console()
	// The region ticks before /init has enabled every SysRq function
	// (Debian's kernel.sysrq=438 refuses t, w and m): wait for its shell.
	require.Eventually(t, func() bool {
		v.conMu.Lock()
		defer v.conMu.Unlock()
		mark := con.Mark()
		if _, err := con.Write([]byte("echo shell-ready\n")); err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := con.WaitFor(ctx, mark, "\nshell-ready\r\n")
		return err == nil
	}, 60*time.Second, 100*time.Millisecond, "the guest's shell answers")
	mark := con.Mark()
	wait := diagnoseInBackground(t, tm, "guest", diagList("sysrq:t", "sysrq:w", "sysrq:m"))
	// SysRq t is printing (a 1-vCPU TCG guest takes seconds for it).
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	seen, err := con.WaitFor(wctx, mark, "sysrq: Show State")
	cancel()
	require.NoError(t, err, "console since the mark: %q", seen)
	require.NoError(t, tm.RemoveVM("guest"))
	res := wait(60*time.Second, "the VM was removed")
	logArtifacts(t, res.Manifest)
	require.NotNil(t, res.Manifest.LogLevel)
	require.Equal(t, ManifestLogLevel{Raised: 8, Restored: 4, From: "qemu -append loglevel=4"}, *res.Manifest.LogLevel)

	// The guest says so too: its console loglevel (the first field of
	// /proc/sys/kernel/printk) is 4, read over a console of our own now
	// that the monitor's is closed.
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var own *qemuhook.Console
	for own == nil {
		c, err := qemuhook.DialConsole(cctx, vm.Serial, 0)
		if err != nil {
			require.NoError(t, cctx.Err(), "console: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		own = c
	}
	defer own.Close()
	m := own.Mark()
	_, err = own.Write([]byte("cat /proc/sys/kernel/printk\n"))
	require.NoError(t, err)
	out, err := own.WaitFor(cctx, m, "\t")
	require.NoError(t, err, "%q", out)
	out, _ = own.WaitQuiet(cctx, m, 300*time.Millisecond)
	require.Regexp(t, `(?m)^4\s+4\s+1\s+7\s*$`, strings.ReplaceAll(string(out), "\r", ""))
}
