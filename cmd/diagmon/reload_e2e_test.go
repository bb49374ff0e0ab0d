//go:build e2e

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"github.com/acpidiag/acpidiag/monitor"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/ssdt"
)

// reloadGuest is one booted test guest and its monitor configuration.
type reloadGuest struct {
	proc *qemuhook.Process
	vm   monitor.VMConfig
}

// bootReloadGuest starts the real test guest (QEMU/TCG, 1 vCPU) with the
// channel, ERST, QMP and a serial console shell.
func bootReloadGuest(t *testing.T, name, kernel, initrd, appendArgs string) reloadGuest {
	t.Helper()
	dir, err := os.MkdirTemp("", "dmr") // short: socket paths
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ch, err := qemuhook.NewChannel(dir, ssdt.DefaultConfig(), qemuhook.MachineQ35)
	require.NoError(t, err)
	qc := qemuhook.Config{Machine: qemuhook.MachineQ35, MemoryMB: 256, SMP: 1, Workdir: dir, Kernel: kernel, Initrd: initrd,
		Append: appendArgs, Channel: ch, ERSTPath: filepath.Join(dir, "erst"), PVPanic: true,
		QMPSocket: filepath.Join(dir, "qmp"), SerialSocket: filepath.Join(dir, "serial")}
	p, err := qemuhook.Start(context.Background(), qc, qemuhook.StartOptions{})
	require.NoError(t, err)
	t.Cleanup(p.Kill)
	return reloadGuest{proc: p, vm: monitor.VMConfig{Name: name, Labels: map[string]string{"app": "testguest"},
		QMP: qc.QMPSocket, Serial: qc.SerialSocket, Region: ch.BackingPath, ERST: qc.ERSTPath}}
}

// waitTicking waits until the guest's AML tick moves in its region file.
func waitTicking(t *testing.T, g reloadGuest, timeout time.Duration) {
	t.Helper()
	var first, last uint32
	var lastErr error
	have := false
	ok := assert.Eventually(t, func() bool {
		r, err := hostreader.OpenRegion(g.vm.Region, hostreader.OpenOptions{})
		if lastErr = err; err != nil {
			return false
		}
		defer r.Close()
		s, err := r.Snapshot()
		if lastErr = err; err != nil || s.Ticks == 0 {
			return false
		}
		last = s.Ticks
		if !have {
			first, have = s.Ticks, true
			return false
		}
		return s.Ticks >= first+2
	}, timeout, 250*time.Millisecond, "guest %s ticking", g.vm.Name)
	if !ok {
		t.Fatalf("guest %s: ticks %d (first %d), last error %v; QEMU exited %v, stderr: %s", g.vm.Name, last, first, lastErr,
			g.proc.Exited(), strings.Join(g.proc.Stderr(), " | "))
	}
}

// diagmonProc is a running `diagmon run --json` and its output lines.
type diagmonProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []monitor.Event
	raw    []string
	stderr strings.Builder
	done   chan struct{}
}

func startDiagmon(t *testing.T, bin string, args ...string) *diagmonProc {
	t.Helper()
	d := &diagmonProc{t: t, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	out, err := d.cmd.StdoutPipe()
	require.NoError(t, err)
	errp, err := d.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, d.cmd.Start())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(errp)
		for sc.Scan() {
			d.mu.Lock()
			d.stderr.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e monitor.Event
			err := json.Unmarshal(sc.Bytes(), &e)
			d.mu.Lock()
			d.raw = append(d.raw, sc.Text())
			if err == nil {
				d.events = append(d.events, e)
			} else {
				d.events = append(d.events, monitor.Event{Type: "unparsed", Detail: sc.Text()})
			}
			d.mu.Unlock()
		}
	}()
	go func() { wg.Wait(); close(d.done) }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
		d.mu.Lock()
		t.Logf("diagmon output:\n%s\nstderr:\n%s", strings.Join(d.raw, "\n"), d.stderr.String())
		d.mu.Unlock()
	})
	return d
}

func (d *diagmonProc) signal(s syscall.Signal) {
	require.NoError(d.t, d.cmd.Process.Signal(s))
}

// count returns the number of lines so far.
func (d *diagmonProc) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.events)
}

// since returns the events from index i on.
func (d *diagmonProc) since(i int) []monitor.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]monitor.Event(nil), d.events[i:]...)
}

// wait waits for an event from index from on that matches, and returns
// its index.
func (d *diagmonProc) wait(from int, timeout time.Duration, what string, match func(monitor.Event) bool) int {
	d.t.Helper()
	found := -1
	require.Eventually(d.t, func() bool {
		for i, e := range d.since(from) {
			if match(e) {
				found = from + i
				return true
			}
		}
		return false
	}, timeout, 50*time.Millisecond, "diagmon line: %s", what)
	return found
}

func (d *diagmonProc) event(i int) monitor.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.events[i]
}

func is(typ, vm, scenario, state string) func(monitor.Event) bool {
	return func(e monitor.Event) bool {
		return e.Type == typ && (vm == "" || e.VM == vm) && (scenario == "" || e.Scenario == scenario) && (state == "" || e.State == state)
	}
}

func replaceConfig(t *testing.T, path string, c monitor.Config) {
	t.Helper()
	b, err := json.MarshalIndent(c, "", "  ")
	require.NoError(t, err)
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, b, 0o644))
	require.NoError(t, os.Rename(tmp, path)) // a reload never reads half a file
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	return p
}

// TestE2EDiagmonReload runs the real diagmon binary (`diagmon run --config
// FILE --json`) against two real test guests under QEMU and reloads its
// configuration by SIGHUP:
//
//  1. a second VM is added: its scenarios start, the first VM's scenarios
//     are left alone (no vm event, no new probe line for it, and its
//     incident's probe history reaches back before the reload: the
//     consecutive-failure count carried on);
//  2. a broken configuration is refused, the error names the key path,
//     and the running configuration goes on;
//  3. the first VM is removed while its incident's diagnostics run (a
//     slow script diagnostic): the script is cancelled, the bundle is still
//     written with the cancelled item and the items not run marked, and
//     diagmon goes on; the SysRq capture before the script left the
//     guest's console loglevel where it booted (6, from QEMU's -append;
//     read back in the guest);
//  4. the second VM is removed: its scenarios stop (no more probe lines);
//  5. SIGTERM: diagmon exits 0, without a panic.
func TestE2EDiagmonReload(t *testing.T) {
	k, ird := guesttest.Require(t)
	bin := fixtures.BuildCommand(t, "diagmon")

	// a boots with console loglevel 6: its SysRq capture raises it to 8,
	// and diagmon sets 6 back (from QEMU's -append, as nothing is
	// configured).
	a := bootReloadGuest(t, "a", k.Vmlinuz, ird.Path, testguest.BootArgs("alive", 0, "acpidiag.shell=1", "loglevel=6"))
	b := bootReloadGuest(t, "b", k.Vmlinuz, ird.Path, testguest.BootArgs("alive", 0, "acpidiag.shell=1"))
	waitTicking(t, a, 150*time.Second)
	waitTicking(t, b, 150*time.Second)

	dir := t.TempDir()
	failA := filepath.Join(dir, "fail-a")
	started := filepath.Join(dir, "slow-started")
	flagA := writeScript(t, dir, "flag-a.sh", fmt.Sprintf("test ! -e %s", failA))
	// flip-b fails every other run: a probe line for b every run.
	flip := filepath.Join(dir, "flip-b")
	flipB := writeScript(t, dir, "flip-b.sh", fmt.Sprintf("if [ -e %s ]; then rm %s; exit 1; fi; touch %s", flip, flip, flip))
	slow := writeScript(t, dir, "slow.sh", fmt.Sprintf("echo slow diagnostic for $ACPIDIAG_VM; touch %s; exec sleep 120", started))
	sinkDir := filepath.Join(dir, "reports")
	sinks := []monitor.SinkConfig{{Kind: "dir", Path: sinkDir}}

	alive := monitor.ScenarioConfig{Name: "alive", Match: map[string]string{"app": "testguest"},
		Probe: monitor.ProbeConfig{Kind: monitor.ProbeRegion}, Every: "1s", Timeout: "1s", Failures: 5, Cooldown: "1h",
		Diagnostics: specs("region")}
	const failuresA = 6
	scA := monitor.ScenarioConfig{Name: "flag", VMs: []string{"a"},
		Probe: monitor.ProbeConfig{Kind: monitor.ProbeExec, Command: []string{flagA}}, Every: "1s", Timeout: "1s",
		Failures: failuresA, Cooldown: "1h",
		Diagnostics: []monitor.DiagSpec{{Kind: monitor.DiagHost}, {Kind: monitor.DiagQMP}, {Kind: monitor.DiagSysRq, Key: "w"},
			{Kind: monitor.DiagScript, Command: []string{slow}, Timeout: "3m"}, {Kind: monitor.DiagRegion}}}
	scB := monitor.ScenarioConfig{Name: "flip", VMs: []string{"b"},
		Probe: monitor.ProbeConfig{Kind: monitor.ProbeExec, Command: []string{flipB}}, Every: "500ms", Timeout: "500ms",
		Failures: 1000, Cooldown: "1h"}

	cfgPath := filepath.Join(dir, "diagmon.json")
	replaceConfig(t, cfgPath, monitor.Config{VMs: []monitor.VMConfig{a.vm}, Scenarios: []monitor.ScenarioConfig{alive, scA}, Sinks: sinks})
	d := startDiagmon(t, bin, "run", "--config", cfgPath, "--json", "--workdir", filepath.Join(dir, "work"))

	d.wait(0, 60*time.Second, "a alive pass", is("probe", "a", "alive", "pass"))
	d.wait(0, 60*time.Second, "a flag pass", is("probe", "a", "flag", "pass"))

	// a's flag scenario starts failing; right after its first failure,
	// b is added by SIGHUP.
	require.NoError(t, os.WriteFile(failA, nil, 0o644))
	failAt := d.wait(0, 30*time.Second, "a flag fail", is("probe", "a", "flag", "fail"))
	firstFail := d.event(failAt).Time
	replaceConfig(t, cfgPath, monitor.Config{VMs: []monitor.VMConfig{a.vm, b.vm}, Scenarios: []monitor.ScenarioConfig{alive, scA, scB}, Sinks: sinks})
	mark := d.count()
	reloadAt := time.Now()
	d.signal(syscall.SIGHUP)
	rl := d.wait(mark, 30*time.Second, "reload", is("reload", "", "", ""))
	require.Contains(t, d.event(rl).Detail, "2 VMs, 3 scenarios")
	d.wait(mark, 30*time.Second, "b added", is("vm", "b", "", "added"))
	d.wait(mark, 30*time.Second, "b alive pass", is("probe", "b", "alive", "pass"))
	d.wait(mark, 30*time.Second, "b flip pass", is("probe", "b", "flip", "pass"))
	d.wait(mark, 30*time.Second, "b flip fail", is("probe", "b", "flip", "fail"))

	// A broken configuration: refused with the key path, the running one
	// goes on (a's incident below comes from it).
	require.NoError(t, os.WriteFile(cfgPath, []byte(`{"vms": [{"name": "a"}], "scenarios": [{"name": "x", "vms": ["a"], "probe": {"kind": "qmp"}, "every": "-5s", "timeout": "1s"}], "sinks": [{"kind": "dir", "path": "/tmp"}]}`), 0o644))
	mark2 := d.count()
	d.signal(syscall.SIGHUP)
	bad := d.wait(mark2, 30*time.Second, "reload refused", is("error", "", "", ""))
	detail := d.event(bad).Detail
	require.Contains(t, detail, "reload refused, keeping the running configuration")
	require.Contains(t, detail, "scenarios[0].every")
	require.Contains(t, detail, cfgPath)

	// a's incident comes after failuresA consecutive failures counted
	// from before the reload.
	inc := d.wait(mark, 90*time.Second, "a flag incident", is("incident", "a", "flag", ""))
	incID := d.event(inc).Incident
	for _, e := range d.since(mark) {
		if e.VM == "a" {
			require.NotEqual(t, "vm", e.Type, "a was left alone by the reload: %+v", e)
			// A restarted binding reports its first result; a's flag
			// probe keeps failing, so a kept one prints nothing. (a's
			// region probe is not checked: a host stall may flip it.)
			require.False(t, e.Type == "probe" && e.Scenario == "flag", "a's flag scenario was not restarted: %+v", e)
		}
	}
	require.Eventually(t, func() bool { _, err := os.Stat(started); return err == nil }, 60*time.Second, 50*time.Millisecond,
		"a's slow diagnostic starts")

	// Remove a while its diagnostics run.
	replaceConfig(t, cfgPath, monitor.Config{VMs: []monitor.VMConfig{b.vm}, Scenarios: []monitor.ScenarioConfig{alive, scB}, Sinks: sinks})
	mark3 := d.count()
	t0 := time.Now()
	d.signal(syscall.SIGHUP)
	d.wait(mark3, 30*time.Second, "a removed", is("vm", "a", "", "removed"))
	bl := d.wait(mark3, 60*time.Second, "a's bundle", is("bundle", "a", "", ""))
	t.Logf("a removed mid-diagnostic: bundle %s after the SIGHUP", time.Since(t0).Round(time.Millisecond))
	be := d.event(bl)
	require.Equal(t, incID, be.Incident)
	require.Contains(t, be.Detail, "failed: script")
	d.wait(mark3, 30*time.Second, "reload", is("reload", "", "", ""))
	man, err := monitor.ReadManifest(strings.Split(be.Path, ",")[0])
	require.NoError(t, err)
	byDiag := map[string]monitor.Artifact{}
	for _, art := range man.Artifacts {
		byDiag[art.Diagnostic] = art
		t.Logf("  %-24s %-20s %8d B %6d ms %s", art.Diagnostic, art.Name, art.Size, art.Duration.Milliseconds(), art.Error)
	}
	require.Empty(t, byDiag["host"].Error)
	require.Empty(t, byDiag["qmp"].Error)
	require.Empty(t, byDiag["sysrq:w"].Error)
	require.NotNil(t, man.LogLevel, "the SysRq capture's loglevel is recorded")
	require.Equal(t, monitor.ManifestLogLevel{Raised: 8, Restored: 6, From: "qemu -append loglevel=6"}, *man.LogLevel)
	require.Contains(t, byDiag["script:slow.sh"].Error, "context canceled", "the running script was cancelled")
	require.Contains(t, byDiag["region"].Error, "not run", "what had not started is marked not run")
	require.Equal(t, failuresA, man.Failures)
	require.NotEmpty(t, man.ProbeHistory)
	var beforeReload int
	for _, r := range man.ProbeHistory {
		if !r.OK && r.Start.Before(reloadAt) {
			beforeReload++
		}
	}
	require.GreaterOrEqual(t, beforeReload, 1, "the failures before the reload count toward the incident (first failure %s, reload %s): %+v",
		firstFail, reloadAt, man.ProbeHistory)

	// The guest's console loglevel is 6 again (a's console is free now
	// that a is removed).
	con, err := qemuhook.DialConsole(context.Background(), a.vm.Serial, 0)
	require.NoError(t, err)
	defer con.Close()
	pm := con.Mark()
	_, err = con.Write([]byte("cat /proc/sys/kernel/printk\n"))
	require.NoError(t, err)
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	pout, err := con.WaitFor(pctx, pm, "\n# ")
	cancel()
	require.NoError(t, err, "%q", pout)
	lv := regexp.MustCompile(`(?m)^([0-9]+)\s+[0-9]+\s+[0-9]+\s+[0-9]+`).FindSubmatch(pout)
	require.NotNil(t, lv, "%q", pout)
	require.Equal(t, "6", string(lv[1]), "console loglevel after the SysRq capture: %q", pout)

	// b goes on after a's removal (its flip scenario keeps reporting).
	mark4 := d.count()
	d.wait(mark4, 30*time.Second, "b flip after a's removal", is("probe", "b", "flip", ""))

	// Remove b: its scenarios stop.
	replaceConfig(t, cfgPath, monitor.Config{Sinks: sinks})
	mark5 := d.count()
	d.signal(syscall.SIGHUP)
	rm := d.wait(mark5, 30*time.Second, "b removed", is("vm", "b", "", "removed"))
	d.wait(mark5, 30*time.Second, "reload", is("reload", "", "", ""))
	time.Sleep(3 * time.Second) // six flip periods
	for _, e := range d.since(rm + 1) {
		require.NotEqual(t, "b", e.VM, "no line for b after its removal: %+v", e)
	}

	// SIGTERM: exit 0.
	d.signal(syscall.SIGTERM)
	werr := make(chan error, 1)
	go func() { werr <- d.cmd.Wait() }()
	select {
	case err := <-werr:
		require.NoError(t, err, "diagmon exits 0 on SIGTERM")
	case <-time.After(60 * time.Second):
		t.Fatal("diagmon did not exit within 60 s of SIGTERM")
	}
	<-d.done
	d.mu.Lock()
	stderr := d.stderr.String()
	d.mu.Unlock()
	require.NotContains(t, stderr, "panic")
	require.NotContains(t, stderr, "goroutine ")
	for _, e := range d.since(0) {
		require.NotEqual(t, "unparsed", e.Type, "every stdout line is JSON: %s", e.Detail)
	}
}
