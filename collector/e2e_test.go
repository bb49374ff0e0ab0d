//go:build e2e

package collector

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"github.com/acpidiag/acpidiag/monitor"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/ssdt"
)

// bootGuest starts the real test guest under QEMU (TCG, 1 vCPU) with the
// channel, ERST, pvpanic, QMP and serial sockets.
func bootGuest(t *testing.T, appendArgs string) (*qemuhook.Process, monitor.VMConfig) {
	t.Helper()
	k, initrd := guesttest.Require(t)
	dir, err := os.MkdirTemp("", "dcol") // short: socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ch, err := qemuhook.NewChannel(dir, ssdt.DefaultConfig(), "q35")
	if err != nil {
		t.Fatal(err)
	}
	cfg := qemuhook.Config{Machine: "q35", MemoryMB: 256, SMP: 1, Workdir: dir, Kernel: k.Vmlinuz, Initrd: initrd.Path,
		Append: appendArgs, Channel: ch, ERSTPath: filepath.Join(dir, "erst"), PVPanic: true,
		QMPSocket: filepath.Join(dir, "qmp"), SerialSocket: filepath.Join(dir, "serial")}
	p, err := qemuhook.Start(context.Background(), cfg, qemuhook.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p, monitor.VMConfig{Name: "guest", QMP: cfg.QMPSocket, Serial: cfg.SerialSocket, Region: ch.BackingPath, ERST: cfg.ERSTPath}
}

// TestE2EAnalyzersRealGuest runs the whole path on the real test guest:
// the monitor raises an incident, its http sink spools and POSTs the
// bundle to a collector on 127.0.0.1, the collector verifies, stores and
// analyses it, and the diagnosis class is the one the guest was made to
// show, with no other class at high confidence. With
// ACPIDIAG_KEEP_BUNDLES=DIR each stored bundle is copied to DIR/<case>
// (fixtures/bundles was made so; see fixtures/README.md).
func TestE2EAnalyzersRealGuest(t *testing.T) {
	cases := []struct {
		name  string
		args  string
		probe monitor.ProbeConfig
		fails int
		diags []string
		class string
		// manual: no scenario; diagmon diag's Diagnose after wait.
		manual bool
		wait   time.Duration
		// details the diagnosis must carry: key → a substring of its value
		// (who and where; "where" is location and frames together: the
		// timer interrupt that reports a soft lockup may land in the
		// module's loop or in the delay it calls).
		details map[string]string
	}{
		{"panic", testguest.BootArgs("panic", 8*time.Second), monitor.ProbeConfig{Kind: monitor.ProbeRegion}, 1,
			[]string{"host", "region", "qmp", "erst", "console"}, ClassPanic, false, 0, nil},
		{"livelock", testguest.BootArgs("livelock", 8*time.Second), monitor.ProbeConfig{Kind: monitor.ProbeRegion}, 2,
			[]string{"host", "sysrq:l", "region", "qmp"}, ClassLockup, false, 0, nil},
		{"uhang", testguest.BootArgs("uhang", 8*time.Second, "acpidiag.app=1"), monitor.ProbeConfig{Kind: monitor.ProbeSlot, Tag: "testapp"}, 2,
			[]string{"host", "region", "qmp", "console", "sysrq:w"}, ClassUserspaceHang, false, 0, nil},
		{"poweroff", testguest.BootArgs("poweroff", 8*time.Second), monitor.ProbeConfig{Kind: monitor.ProbeRegion}, 2,
			[]string{"host", "region", "qmp", "console"}, ClassPoweredOff, false, 0, nil},
		{"oom", testguest.BootArgs("oom", 3*time.Second), monitor.ProbeConfig{}, 0,
			[]string{"host", "region", "console", "sysrq:m"}, ClassOOM, true, 25 * time.Second, nil},
		{"dstate", testguest.BootArgs("dstate", 3*time.Second), monitor.ProbeConfig{}, 0,
			[]string{"host", "region", "console", "sysrq:w"}, ClassHungTask, true, 12 * time.Second, nil},
		// A task in TASK_UNINTERRUPTIBLE (the test module's mode=hang):
		// the kernel's hung-task report and SysRq w name it and its stack.
		{"hungtask", testguest.BootArgs(testguest.ModeHungTask, 3*time.Second), monitor.ProbeConfig{}, 0,
			[]string{"host", "region", "console", "sysrq:w"}, ClassHungTask, true, 15 * time.Second,
			map[string]string{"task": "acpidiag-hang", "frames": "acpidiag_hang+"}},
		// A CPU spinning with preemption off (mode=softlockup, 20 s): the
		// kernel's soft lockup report names the CPU, the task and where;
		// the tick stops meanwhile (1 vCPU), so the region probe fails.
		{"softlockup", testguest.BootArgs(testguest.ModeSoftLockup, 8*time.Second, testguest.Duration(20*time.Second)),
			monitor.ProbeConfig{Kind: monitor.ProbeRegion}, 2,
			[]string{"host", "region", "qmp", "console", "sysrq:l"}, ClassLockup, false, 0,
			map[string]string{"kind": "soft", "cpu": "0", "task": "acpidiag-spin:", "where": "acpidiag_softlockup+"}},
		// A reader that holds RCU back (mode=rcustall, 20 s, stall
		// timeout 3 s): RCU's stall report names the blocked task and
		// its stack; the guest goes on (the reader yields the CPU), so
		// the diagnostics are asked for by hand.
		{"rcustall", testguest.BootArgs(testguest.ModeRCUStall, 3*time.Second, testguest.Duration(20*time.Second)), monitor.ProbeConfig{}, 0,
			[]string{"host", "region", "console"}, ClassLockup, true, 12 * time.Second,
			map[string]string{"kind": "rcu-stall", "task": "acpidiag-rcu", "where": "acpidiag_rcustall+"}},
		// A CPU spinning with interrupts off (mode=hardlockup, 20 s): no
		// detector in the guest can say so under TCG and SysRq gets no
		// answer; the registers (HMP and gdbstub) show CPU 0 in kernel
		// mode with IF clear while its vCPU thread is busy on the host.
		{"hardlockup", testguest.BootArgs(testguest.ModeHardLockup, 8*time.Second, testguest.Duration(20*time.Second)),
			monitor.ProbeConfig{Kind: monitor.ProbeRegion}, 2,
			[]string{"host", "region", "registers", "sysrq:l", "qmp", "console"}, ClassLockup, false, 0,
			map[string]string{"kind": "hard", "cpu": "0"}},
	}
	keep := os.Getenv("ACPIDIAG_KEEP_BUNDLES")
	// These guest modes load the test module (internal/testguest/oopsmod).
	needsModule := map[string]bool{"hungtask": true, "softlockup": true, "rcustall": true, "hardlockup": true}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if needsModule[c.name] {
				if k, err := testguest.Kernel(); err == nil && k.OopsModule == "" {
					if fixtures.InCI() {
						t.Fatal("the test module is required under CI (scripts/fetch-kernel.sh builds it with make and gcc-12)")
					}
					t.Skip("the kernel cache has no test module (scripts/fetch-kernel.sh builds it with make and gcc-12)")
				}
			}
			st, srv := newServer(t, StoreOptions{})
			_, vm := bootGuest(t, c.args)
			var diags []monitor.DiagSpec
			for _, d := range c.diags {
				diags = append(diags, monitor.ParseDiagSpec(d))
			}
			cfg := monitor.Config{VMs: []monitor.VMConfig{vm},
				Sinks: []monitor.SinkConfig{{Kind: "http", URL: srv.URL + "/api/bundles", Spool: filepath.Join(t.TempDir(), "spool"), MaxBackoff: "1s"}}}
			p, err := monitor.Check(cfg, monitor.CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			m, err := monitor.New(context.Background(), p, monitor.Options{Workdir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			// The monitor sees the guest alive, then the scenario is bound
			// (a reload) and must pass once: the incident is the mode's,
			// not the boot's.
			alive := time.Now().Add(3 * time.Minute)
			for {
				if v, ok := m.RegionVerdict("guest"); ok && v.State == hostreader.StateAlive {
					break
				}
				if time.Now().After(alive) {
					t.Fatal("the guest's region never became alive")
				}
				time.Sleep(100 * time.Millisecond)
			}
			if c.manual {
				time.Sleep(c.wait)
				if _, err := m.Diagnose(context.Background(), "guest", diags); err != nil {
					t.Logf("diagnose: %v", err)
				}
			} else {
				cfg.Scenarios = []monitor.ScenarioConfig{{Name: c.name, VMs: []string{"guest"}, Probe: c.probe, Every: "1s", Timeout: "1s",
					Failures: c.fails, Cooldown: "10m", Diagnostics: diags}}
				if p, err = monitor.Check(cfg, monitor.CheckOptions{}); err != nil {
					t.Fatal(err)
				}
				if err := m.Apply(p); err != nil {
					t.Fatal(err)
				}
				passed := time.Now().Add(time.Minute)
				for {
					if st, ok := m.State("guest", c.name); ok && st.Last != nil && st.Last.OK {
						break
					}
					if time.Now().After(passed) {
						t.Fatal("the probe never passed on the healthy guest")
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			go func() {
				for e := range m.Events() {
					if e.Type != monitor.EventProbe {
						t.Logf("event %s %s %s %s", e.Type, e.State, e.Incident, e.Detail)
					}
				}
			}()
			deadline := time.Now().Add(4 * time.Minute)
			for st.Len() == 0 && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
			}
			incs := st.Incidents("guest")
			if len(incs) == 0 {
				t.Fatal("no bundle reached the collector")
			}
			d, err := st.Incident(incs[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range d.Analysis.Findings {
				t.Logf("finding %s %.2f %s", f.Class, f.Confidence, f.Summary)
			}
			if keep != "" {
				dst := filepath.Join(keep, c.name)
				os.RemoveAll(dst)
				os.MkdirAll(keep, 0o755)
				if out, err := exec.Command("cp", "-r", st.BundleDir(d.ID), dst).CombinedOutput(); err != nil {
					t.Errorf("keep: %v %s", err, out)
				}
			}
			if d.Analysis.Diagnosis.Class != c.class || d.Analysis.Diagnosis.Confidence < HighConfidence {
				t.Fatalf("diagnosis %s %.2f (%s), want %s at high confidence", d.Analysis.Diagnosis.Class, d.Analysis.Diagnosis.Confidence,
					d.Analysis.Diagnosis.Summary, c.class)
			}
			for _, f := range d.Analysis.Findings {
				if f.Class != c.class && f.Confidence >= HighConfidence {
					t.Errorf("wrong class at high confidence: %s %.2f %s", f.Class, f.Confidence, f.Summary)
				}
			}
			for k, sub := range c.details {
				v := d.Analysis.Diagnosis.Details[k]
				if k == "where" {
					v = d.Analysis.Diagnosis.Details["location"] + " < " + d.Analysis.Diagnosis.Details["frames"]
				}
				if !strings.Contains(v, sub) {
					t.Errorf("diagnosis detail %s = %q, want it to contain %q (details %v)", k, v, sub, d.Analysis.Diagnosis.Details)
				}
			}
		})
	}
}
