package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/render"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/monitor"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/ssdt"
)

// demoOptions tune runDemo.
type demoOptions struct {
	Workdir string        // default: a temporary directory, removed unless Keep
	Keep    bool          // keep the temporary workdir (config, bundles)
	HangAt  time.Duration // when the guest's userspace hangs, from its /init (default 25 s)
	Timeout time.Duration // whole demo (default 4 min)
}

// errNoBundle says the demo ended without the incident bundle.
var errNoBundle = errors.New("demo: no incident bundle")

// runDemo boots the bundled test guest (QEMU/TCG, 1 vCPU) with its console
// shell (acpidiag.shell=1) and a userspace hang after HangAt, writes a
// diagmon configuration for it (a console probe typing uptime every 3 s),
// and runs the monitor on it: the probe passes, userspace hangs, the probe
// fails twice, and one bundle is written. It prints the events, the
// bundle's artifacts and the failure-to-bundle time.
func runDemo(ctx context.Context, w io.Writer, o demoOptions) error {
	if o.HangAt <= 0 {
		o.HangAt = 25 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 4 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	say := func(format string, a ...any) {
		render.Elapsed(w, start, format, a...)
	}
	k, err := testguest.Kernel()
	if err != nil {
		return err
	}
	ird, err := testguest.Build(ctx, "")
	if err != nil {
		return err
	}
	dir := o.Workdir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "diagmon-demo"); err != nil {
			return err
		}
		if !o.Keep {
			defer os.RemoveAll(dir)
		}
	}
	ch, err := qemuhook.NewChannel(dir, ssdt.DefaultConfig(), qemuhook.MachineQ35)
	if err != nil {
		return err
	}
	qc := qemuhook.Config{Machine: qemuhook.MachineQ35, MemoryMB: 256, SMP: 1, Workdir: dir, Kernel: k.Vmlinuz, Initrd: ird.Path,
		Append: testguest.BootArgs(testguest.ModeUhang, o.HangAt, "acpidiag.shell=1"), Channel: ch,
		ERSTPath: filepath.Join(dir, "erst"), PVPanic: true, Balloon: true,
		QMPSocket: filepath.Join(dir, "qmp.sock"), SerialSocket: filepath.Join(dir, "serial.sock")}
	cfg := monitor.Config{
		VMs: []monitor.VMConfig{{Name: "testguest", Labels: map[string]string{"app": "demo"},
			QMP: qc.QMPSocket, Serial: qc.SerialSocket, Region: ch.BackingPath, ERST: qc.ERSTPath}},
		Scenarios: []monitor.ScenarioConfig{{Name: "uptime", Match: map[string]string{"app": "demo"},
			Probe: monitor.ProbeConfig{Kind: monitor.ProbeConsole, Send: "uptime", Expect: `load average: [0-9.]+`},
			Every: "3s", Timeout: "2s", Failures: 2, Cooldown: "10m",
			Diagnostics: specs("sysrq:t", "sysrq:w", "sysrq:l", "registers", "qmp", "host", "console", "region", "erst")}},
		Sinks: []monitor.SinkConfig{{Kind: "dir", Path: filepath.Join(dir, "reports"), Pack: true}},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(dir, "diagmon.json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		return err
	}
	say("config %s (the same run: diagmon run --config %s)", cfgPath, cfgPath)
	plan, err := monitor.Check(cfg, monitor.CheckOptions{NoFileChecks: true})
	if err != nil {
		return err
	}
	p, err := qemuhook.Start(ctx, qc, qemuhook.StartOptions{})
	if err != nil {
		return err
	}
	defer p.Kill()
	say("QEMU pid %d booting the test guest (userspace hangs %s after /init)", p.Pid(), o.HangAt)

	// The VM first, the scenario once the guest ticks: a console probe
	// during boot would fail (no shell yet).
	boot := *plan
	boot.Scenarios = nil
	m, err := monitor.New(ctx, &boot, monitor.Options{Workdir: filepath.Join(dir, "work")})
	if err != nil {
		return err
	}
	defer m.Close()
	pr := printer{w: w}
	alive := time.NewTicker(200 * time.Millisecond)
	defer alive.Stop()
	added := false
	var firstFail time.Time
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w within %s: %v", errNoBundle, o.Timeout, ctx.Err())
		case <-alive.C:
			if added {
				continue
			}
			if rv, ok := m.RegionVerdict("testguest"); ok && rv.State == hostreader.StateAlive {
				if err := m.Apply(plan); err != nil {
					return err
				}
				added = true
				say("guest alive; scenario %q bound (reload)", "uptime")
			}
		case e := <-m.Events():
			pr.print(e)
			if e.Type == monitor.EventProbe && e.State == "fail" && firstFail.IsZero() {
				firstFail = e.Time
			}
			if e.Type != monitor.EventBundle {
				continue
			}
			man, err := monitor.ReadManifest(e.Path)
			if err != nil {
				return err
			}
			say("bundle %s", e.Path)
			if err := render.Artifacts(w, "           ", man.Artifacts); err != nil {
				return err
			}
			say("first failed probe → bundle on disk: %s (bound: failures × every + 15 s = 21 s)", man.Finished.Sub(firstFail).Round(time.Millisecond))
			return nil
		}
	}
}

func specs(names ...string) []monitor.DiagSpec {
	var out []monitor.DiagSpec
	for _, n := range names {
		out = append(out, monitor.ParseDiagSpec(n))
	}
	return out
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", stderr)
	var o demoOptions
	fs.StringVar(&o.Workdir, "workdir", "", "directory for the run (default: temporary)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary directory (config, bundles)")
	fs.DurationVar(&o.HangAt, "hang-after", 25*time.Second, "when the guest's userspace hangs, from its /init")
	if !parse(fs, args, stderr) {
		return exitUsage
	}
	if err := runDemo(ctx, stdout, o); err != nil {
		fmt.Fprintf(stderr, "diagmon demo: %v\n", err)
		return exitError
	}
	return exitOK
}
