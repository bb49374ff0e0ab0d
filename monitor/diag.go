package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/acpidiag/acpidiag/gdbstub"
	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/qmp"
)

// Incident is a scenario failure (or a manual request) that gets a bundle.
type Incident struct {
	ID       string
	Time     time.Time
	Trigger  string // "scenario" or "manual"
	VM       VMConfig
	Scenario *Scenario // nil for manual
	History  []Result
	Failures int
	// Only, when set, replaces the scenario's diagnostics.
	Only []DiagSpec
}

func newIncident(v *vmRuntime, sc *Scenario, hist []Result, failures int, at time.Time) *Incident {
	return &Incident{ID: newIncidentID(v.cfg.Name, sc.Config.Name, at), Time: at, Trigger: "scenario",
		VM: v.cfg, Scenario: sc, History: hist, Failures: failures}
}

// BundleResult is what an incident produced.
type BundleResult struct {
	ID       string
	Manifest *Manifest
	// Locations are where the sinks put it.
	Locations []string
}

// runIncident runs the diagnostics and delivers the bundle, reporting
// through events.
func (m *Monitor) runIncident(v *vmRuntime, inc *Incident) {
	res, err := m.diagnose(v.diagCtx, v, inc)
	if err != nil {
		m.emit(Event{Type: EventError, VM: inc.VM.Name, Incident: inc.ID, Detail: err.Error()})
	}
	if res != nil {
		var failed []string
		for _, a := range res.Manifest.Artifacts {
			if a.Error != "" && !a.Truncated {
				failed = append(failed, a.Diagnostic)
			}
		}
		d := fmt.Sprintf("%d artifacts, %d bytes, %s after the incident", len(res.Manifest.Artifacts), res.Manifest.TotalBytes,
			res.Manifest.Finished.Sub(inc.Time).Round(time.Millisecond))
		if len(failed) > 0 {
			d += "; failed: " + strings.Join(failed, ", ")
		}
		m.emit(Event{Type: EventBundle, VM: inc.VM.Name, Incident: inc.ID, Path: strings.Join(res.Locations, ","), Detail: d})
	}
}

// Diagnose runs diagnostics on a VM now and delivers one bundle (what
// `diagmon diag` does). only selects the diagnostics (nil: every
// diagnostic the VM's paths allow).
func (m *Monitor) Diagnose(ctx context.Context, vm string, only []DiagSpec) (*BundleResult, error) {
	m.mu.Lock()
	v, ok := m.vms[vm]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("monitor: no vm %q", vm)
	}
	if only == nil {
		only = AllDiagnostics(v.cfg)
	}
	for i, d := range only {
		var bad []string
		checkDiag(fmt.Sprintf("only[%d]", i), d, m.planLimits(), CheckOptions{}, func(p, f string, a ...any) { bad = append(bad, p+": "+fmt.Sprintf(f, a...)) })
		for _, n := range diagNeeds(d.Kind) {
			if vmPath(v.cfg, n) == "" {
				bad = append(bad, fmt.Sprintf("only[%d]: %s needs %q, which vm %q does not have", i, d, n, vm))
			}
		}
		if len(bad) > 0 {
			return nil, errors.New("monitor: " + strings.Join(bad, "; "))
		}
	}
	now := time.Now()
	inc := &Incident{ID: newIncidentID(vm, "manual", now), Time: now, Trigger: "manual", VM: v.cfg, Only: only}
	// Wait (bounded) for the VM's connections to come up.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	for wctx.Err() == nil && ((v.cfg.QMP != "" && v.qmp() == nil) || (v.cfg.Serial != "" && v.console() == nil)) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	return m.diagnose(ctx, v, inc)
}

// AllDiagnostics is every diagnostic the VM's paths allow (memory and
// script excepted).
func AllDiagnostics(v VMConfig) []DiagSpec {
	var out []DiagSpec
	add := func(d DiagSpec) {
		for _, n := range diagNeeds(d.Kind) {
			if vmPath(v, n) == "" {
				return
			}
		}
		out = append(out, d)
	}
	add(DiagSpec{Kind: DiagHost})
	add(DiagSpec{Kind: DiagQMP})
	add(DiagSpec{Kind: DiagRegion})
	add(DiagSpec{Kind: DiagERST})
	add(DiagSpec{Kind: DiagRegisters})
	for _, k := range "twlmqpz" {
		add(DiagSpec{Kind: DiagSysRq, Key: string(k)})
	}
	add(DiagSpec{Kind: DiagConsole})
	return out
}

// diagnose runs the incident's diagnostics into a bundle and delivers it.
func (m *Monitor) diagnose(ctx context.Context, v *vmRuntime, inc *Incident) (*BundleResult, error) {
	m.mu.Lock()
	passthrough := m.plan.Config.ManifestPassthrough
	m.mu.Unlock()
	lim := m.planLimits()
	host, _ := os.Hostname()
	man := Manifest{ID: inc.ID, Created: inc.Time.UTC(), Trigger: inc.Trigger, Host: host,
		VM:       ManifestVM{Name: inc.VM.Name, Labels: inc.VM.Labels, QMP: inc.VM.QMP, Serial: inc.VM.Serial, Region: inc.VM.Region, ERST: inc.VM.ERST},
		Failures: inc.Failures, ProbeHistory: inc.History, ManifestPassthrough: passthrough}
	specs := inc.Only
	if sc := inc.Scenario; sc != nil {
		ms := &ManifestScenario{Name: sc.Config.Name, Probe: sc.Config.Probe, Every: sc.Every.String(), Timeout: sc.Timeout.String(),
			Failures: sc.Failures, Cooldown: sc.Cooldown.String()}
		for _, d := range sc.Diagnostics {
			ms.Diagnostics = append(ms.Diagnostics, d.String())
		}
		man.Scenario = ms
		if specs == nil {
			specs = sc.Diagnostics
		}
	}
	dir := filepath.Join(m.opts.Workdir, inc.ID)
	bw, err := newBundleWriter(dir, man, lim)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r := &diagRun{m: m, v: v, bw: bw, lim: lim, inc: inc}
	rctx, end := v.beginDiag(ctx)
	r.runAll(rctx, specs)
	end()
	bw.man.Timeline = v.timelineCopy()
	mf, err := bw.finish()
	if err != nil {
		return nil, err
	}
	res := &BundleResult{ID: inc.ID, Manifest: mf}
	b := &Bundle{ID: inc.ID, Dir: dir, Manifest: mf}
	var errs []error
	// Delivery uses its own context: a removed VM still gets its bundle.
	// It goes to the sinks in force now: a reload during the diagnostics
	// may have replaced (and closed) the ones in force when they started.
	dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m.sinkMu.RLock()
	defer m.sinkMu.RUnlock()
	for _, s := range m.sinks {
		loc, err := s.Deliver(dctx, b)
		if err != nil {
			errs = append(errs, fmt.Errorf("sink %s: %w", s.Name(), err))
			continue
		}
		res.Locations = append(res.Locations, loc)
	}
	return res, errors.Join(errs...)
}

// diagRun is one incident's diagnostics.
type diagRun struct {
	m     *Monitor
	v     *vmRuntime
	bw    *bundleWriter
	lim   Limits
	inc   *Incident
	sysrq bool // a SysRq capture raised the loglevel
}

func (r *diagRun) runAll(ctx context.Context, specs []DiagSpec) {
	for i, d := range specs {
		r.runOne(ctx, d)
		// Restore the loglevel after the last SysRq capture.
		if r.sysrq && !moreSysRq(specs[i+1:]) {
			r.restoreLogLevel(ctx)
		}
	}
}

func moreSysRq(specs []DiagSpec) bool {
	for _, d := range specs {
		if d.Kind == DiagSysRq {
			return true
		}
	}
	return false
}

func (r *diagRun) restoreLogLevel(ctx context.Context) {
	r.sysrq = false
	q, con := r.v.qmp(), r.v.console()
	start := time.Now()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	level, from := restoreLevel(cctx, r.lim, q, "/proc")
	ll := &ManifestLogLevel{Raised: 8, Restored: level, From: from}
	if q == nil || con == nil {
		ll.Error = "no QMP or console connection: loglevel not restored"
	} else {
		r.v.conMu.Lock()
		_, err := qemuhook.SysRq(cctx, q, con, byte('0'+level),
			qemuhook.SysRqOptions{NoRaiseLogLevel: true, Chardev: r.v.cfg.SerialChardev, Quiet: 200 * time.Millisecond})
		r.v.conMu.Unlock()
		if err != nil {
			ll.Error = fmt.Sprintf("restoring the console loglevel %d (%s): %v", level, from, err)
		}
	}
	r.bw.mu.Lock()
	r.bw.man.LogLevel = ll
	r.bw.mu.Unlock()
	if ll.Error != "" {
		r.bw.add(Artifact{Diagnostic: "sysrq:loglevel", Started: start.UTC(), Duration: time.Since(start), Error: ll.Error}, nil)
	}
}

// runOne runs one diagnostic under the global concurrency limit and its
// timeout, and records its artifacts (or its failure).
func (r *diagRun) runOne(ctx context.Context, d DiagSpec) {
	name := d.String()
	start := time.Now()
	fail := func(err error, timedOut bool) {
		r.bw.add(Artifact{Diagnostic: name, Started: start.UTC(), Duration: time.Since(start), Error: err.Error(), TimedOut: timedOut}, nil)
	}
	if ctx.Err() != nil {
		fail(fmt.Errorf("not run: %w", context.Cause(ctx)), false)
		return
	}
	sem := r.m.diagSemaphore()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		fail(fmt.Errorf("not run: %w", context.Cause(ctx)), false)
		return
	}
	defer func() { <-sem }()
	timeout := r.lim.diagTimeout()
	if d.Timeout != "" {
		if t, err := time.ParseDuration(d.Timeout); err == nil && t > 0 {
			timeout = t
		}
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start = time.Now()
	arts, err := r.dispatch(dctx, d)
	dur := time.Since(start)
	timedOut := dctx.Err() == context.DeadlineExceeded
	if err != nil && timedOut {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	if len(arts) == 0 {
		if err == nil {
			err = errors.New("no output")
		}
		fail(err, timedOut)
		return
	}
	for i, a := range arts {
		art := Artifact{Name: a.name, Diagnostic: name, Started: start.UTC(), Duration: dur, TimedOut: timedOut, Guest: a.guest}
		if i == 0 && err != nil {
			art.Error = err.Error()
		}
		if a.total > int64(len(a.data)) {
			art.Truncated, art.OriginalSize = true, a.total
		}
		if a.prewritten {
			r.bw.addFile(art)
			continue
		}
		r.bw.add(art, a.data)
	}
}

// diagSemaphore is the semaphore of limits.diagnostics in force. It takes
// no lock: a removal holds m.mu while it waits for the VM's diagnostics.
func (m *Monitor) diagSemaphore() chan struct{} { return *m.diagSem.Load() }

// artifact is a diagnostic's output before it is written.
type artifact struct {
	name       string
	data       []byte
	guest      bool
	prewritten bool // already in the bundle directory (memory dump)
	// total is the size before the producer cut it (0: not cut).
	total int64
}

func (r *diagRun) dispatch(ctx context.Context, d DiagSpec) ([]artifact, error) {
	v := r.v
	switch d.Kind {
	case DiagHost:
		h := CollectHost(ctx, v.qmp(), HostOptions{Paths: []string{v.cfg.Region, v.cfg.ERST, r.m.opts.Workdir}})
		b, _ := json.MarshalIndent(h, "", "  ")
		var err error
		if len(h.Errors) > 0 {
			err = errors.New(strings.Join(h.Errors, "; "))
		}
		return []artifact{{name: "host.json", data: b}}, err
	case DiagQMP:
		q := v.qmp()
		if q == nil {
			return nil, errors.New("no QMP connection")
		}
		out, err := CollectQMP(ctx, q, 256<<10)
		b, _ := json.MarshalIndent(out, "", "  ")
		return []artifact{{name: "qmp.json", data: b}}, err
	case DiagRegion:
		return r.region()
	case DiagERST:
		return r.erst()
	case DiagConsole:
		con := v.console()
		if con == nil {
			return nil, errors.New("no console connection")
		}
		return []artifact{{name: "console.txt", data: con.Tail(r.lim.ConsoleBytes), guest: true}}, nil
	case DiagSysRq:
		q, con := v.qmp(), v.console()
		if q == nil || con == nil {
			return nil, errors.New("SysRq needs the QMP and console connections")
		}
		v.conMu.Lock()
		defer v.conMu.Unlock()
		r.sysrq = true
		out, err := qemuhook.SysRq(ctx, q, con, d.Key[0], qemuhook.SysRqOptions{Chardev: v.cfg.SerialChardev})
		if len(out) == 0 {
			return nil, err
		}
		return []artifact{{name: "sysrq-" + d.Key + ".txt", data: out, guest: true}}, err
	case DiagRegisters:
		return r.registers(ctx)
	case DiagMemory:
		return r.memory(ctx)
	case DiagScript:
		return r.script(ctx, d)
	}
	return nil, fmt.Errorf("unknown diagnostic %q", d.Kind)
}

func (r *diagRun) region() ([]artifact, error) {
	type regionOut struct {
		// Monitor is the monitor's latest verdict (from its watcher,
		// with the history of ticks).
		Monitor *hostreader.Verdict `json:"monitor,omitempty"`
		// File is a fresh snapshot of the file, judged alone.
		File      *hostreader.Verdict `json:"file,omitempty"`
		FileError string              `json:"file_error,omitempty"`
	}
	var out regionOut
	if rv, ok := r.v.regionVerdict(); ok {
		out.Monitor = &rv
	}
	reg, err := hostreader.OpenRegion(r.v.cfg.Region, hostreader.OpenOptions{Offset: r.v.cfg.RegionOffset})
	if err == nil {
		var s hostreader.Snapshot
		s, err = reg.Snapshot()
		reg.Close()
		if err == nil {
			fv := hostreader.Assess(s, hostreader.VerdictConfig{}, nil)
			out.File = &fv
		}
	}
	if err != nil {
		out.FileError = err.Error()
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	return []artifact{{name: "region.json", data: b}}, err
}

// erst decodes the ERST store and keeps the dumps with a record that was
// not there when the VM was added: erst.json (summary) and erst.txt (the
// raw kernel log text of the new dumps).
func (r *diagRun) erst() ([]artifact, error) {
	st, err := hostreader.ReadERSTFile(r.v.cfg.ERST)
	if err != nil {
		return nil, err
	}
	type dump struct {
		Reason    string   `json:"reason"`
		Count     int      `json:"count"`
		Timestamp string   `json:"timestamp,omitempty"`
		Records   []string `json:"records"`
		PanicLine string   `json:"panic_line,omitempty"` // escaped
		OopsLines []string `json:"oops_lines,omitempty"` // escaped
		TextBytes int      `json:"text_bytes"`
	}
	out := struct {
		Records int      `json:"records"`
		Known   int      `json:"known_before"`
		New     []dump   `json:"new_dumps"`
		Errors  []string `json:"errors,omitempty"`
	}{Records: len(st.Records), Known: len(r.v.erstKnown), New: []dump{}}
	var text strings.Builder
	for _, ev := range st.Events() {
		isNew := false
		var ids []string
		for _, p := range ev.Parts {
			ids = append(ids, "0x"+strconv.FormatUint(p.ID, 16))
			if !r.v.erstKnown[p.ID] {
				isNew = true
			}
		}
		if !isNew {
			continue
		}
		dd := dump{Reason: ev.Reason, Count: ev.Count, Records: ids, PanicLine: hostreader.EscapeLog(ev.PanicLine), TextBytes: len(ev.Text())}
		if !ev.Timestamp.IsZero() {
			dd.Timestamp = ev.Timestamp.UTC().Format(time.RFC3339)
		}
		for _, l := range ev.OopsLines {
			dd.OopsLines = append(dd.OopsLines, hostreader.EscapeLog(l))
		}
		out.New = append(out.New, dd)
		fmt.Fprintf(&text, "==== %s#%d records %s\n%s\n", ev.Reason, ev.Count, strings.Join(ids, ","), ev.Text())
	}
	for _, e := range st.Errors {
		out.Errors = append(out.Errors, e.Error())
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	arts := []artifact{{name: "erst.json", data: b}}
	if text.Len() > 0 {
		arts = append(arts, artifact{name: "erst.txt", data: []byte(text.String()), guest: true})
	}
	return arts, nil
}

// registers reads every vCPU's registers twice: HMP "info registers -a"
// (registers-hmp.txt) and the gdbstub (registers-gdb.json).
func (r *diagRun) registers(ctx context.Context) ([]artifact, error) {
	q := r.v.qmp()
	if q == nil {
		return nil, errors.New("no QMP connection")
	}
	var arts []artifact
	var errs []error
	out, err := q.HMP(ctx, "info registers -a")
	if err != nil {
		errs = append(errs, fmt.Errorf("HMP info registers: %w", err))
	} else {
		arts = append(arts, artifact{name: "registers-hmp.txt", data: []byte(out)})
	}
	snap, err := GDBRegisters(ctx, q)
	if snap != nil {
		b, _ := json.MarshalIndent(snap, "", "  ")
		arts = append(arts, artifact{name: "registers-gdb.json", data: b})
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("gdbstub: %w", err))
	}
	return arts, errors.Join(errs...)
}

// GDBRegisters starts QEMU's gdbstub on a private unix socket (HMP
// gdbserver), reads every vCPU's registers through the GDB remote protocol
// (package gdbstub), detaches (QEMU resumes the VM), stops the stub (HMP
// gdbserver none) and, if the VM was running before, makes sure it runs
// again. The VM is stopped while the stub is attached (milliseconds).
func GDBRegisters(ctx context.Context, q *qmp.Client) (*gdbstub.Snapshot, error) {
	before, err := qemuhook.QueryStatus(ctx, q)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "acpidiag-gdb-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "gdb.sock")
	out, err := q.HMP(ctx, "gdbserver unix:"+sock+",server=on,wait=off")
	if err != nil {
		return nil, fmt.Errorf("HMP gdbserver: %w", err)
	}
	if !strings.Contains(out, "Waiting for gdb connection") {
		return nil, fmt.Errorf("HMP gdbserver: %s", strings.TrimSpace(out))
	}
	// Whatever happens: stop the stub and resume a VM that was running.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		q.HMP(cctx, "gdbserver none") //nolint:errcheck // best effort: the VM is what matters
		if before.Running {
			if st, err := qemuhook.QueryStatus(cctx, q); err == nil && !st.Running {
				q.Execute(cctx, "cont", nil, nil) //nolint:errcheck // reported by the next probe if it fails
			}
		}
	}()
	c, err := gdbstub.Dial(ctx, "unix", sock)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	snap, err := c.ReadAll(ctx)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	derr := c.Detach(dctx)
	cancel()
	return snap, errors.Join(err, derr)
}

// memory dumps guest memory (dump-guest-memory, ELF) into the bundle when
// the guest's RAM is within limits.memory_bytes.
func (r *diagRun) memory(ctx context.Context) ([]artifact, error) {
	q := r.v.qmp()
	if q == nil {
		return nil, errors.New("no QMP connection")
	}
	var sz struct {
		Base int64 `json:"base-memory"`
	}
	if err := q.Execute(ctx, "query-memory-size-summary", nil, &sz); err != nil {
		return nil, err
	}
	if r.lim.MemoryBytes <= 0 || sz.Base > r.lim.MemoryBytes {
		return nil, fmt.Errorf("guest RAM %d bytes exceeds limits.memory_bytes %d: not dumped", sz.Base, r.lim.MemoryBytes)
	}
	name := "memory.elf"
	if err := qemuhook.DumpGuestMemory(ctx, q, filepath.Join(r.bw.dir, name), ""); err != nil {
		os.Remove(filepath.Join(r.bw.dir, name))
		return nil, err
	}
	return []artifact{{name: name, prewritten: true}}, nil
}

// script runs a host executable with the VM's paths and the incident in
// its environment; its combined output is the artifact.
func (r *diagRun) script(ctx context.Context, d DiagSpec) ([]artifact, error) {
	c := r.v.cfg
	env := append(os.Environ(),
		"ACPIDIAG_VM="+c.Name, "ACPIDIAG_QMP="+c.QMP, "ACPIDIAG_SERIAL="+c.Serial,
		"ACPIDIAG_REGION="+c.Region, "ACPIDIAG_ERST="+c.ERST,
		"ACPIDIAG_INCIDENT="+r.inc.ID, "ACPIDIAG_TRIGGER="+r.inc.Trigger,
		"ACPIDIAG_INCIDENT_TIME="+r.inc.Time.UTC().Format(time.RFC3339Nano))
	if r.inc.Scenario != nil {
		env = append(env, "ACPIDIAG_SCENARIO="+r.inc.Scenario.Config.Name)
	}
	for k, val := range c.Labels {
		env = append(env, "ACPIDIAG_LABEL_"+safeEnv(k)+"="+val)
	}
	out, total, err := runCommand(ctx, 0, d.Command, env, int(r.lim.ArtifactBytes))
	name := "script-" + safeName(filepath.Base(d.Command[0])) + ".txt"
	return []artifact{{name: name, data: out, total: total}}, err
}

func safeEnv(s string) string {
	b := []byte(strings.ToUpper(s))
	for i, ch := range b {
		if !(ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
