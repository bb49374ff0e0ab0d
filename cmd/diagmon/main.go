// Command diagmon is the monitor daemon: it binds scenarios to VMs, runs
// them with a frequency and a timeout, runs diagnostics when one fails and
// writes one bundle per incident. All the work is done by package monitor;
// docs/monitor.md documents the configuration and docs/bundle.md the
// bundles.
//
//	diagmon run   --config FILE [--json] [--workdir DIR] [--metrics-listen ADDR]
//	diagmon check --config FILE
//	diagmon diag  --config FILE --vm NAME [--only LIST] [--json]
//	diagmon demo  [--keep] [--workdir DIR] [--hang-after D]
//
// Exit status: 0 ok, 1 runtime error (or, for check, configuration
// errors), 2 usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/render"
	"github.com/acpidiag/acpidiag/metrics"
	"github.com/acpidiag/acpidiag/monitor"
)

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, hup)
	stop()
	os.Exit(code)
}

const usage = `usage:
  diagmon run   --config FILE [--json] [--workdir DIR] [--metrics-listen ADDR]
  diagmon check --config FILE
  diagmon diag  --config FILE --vm NAME [--only LIST] [--json]
  diagmon status --config FILE [--json]

run    runs the scenarios until SIGINT/SIGTERM; one line per probe state
       change and per incident/bundle (--json: JSON lines); SIGHUP reloads
       the configuration (unchanged VMs and scenarios are left alone, a
       removed VM's running diagnostics are cut short and its bundle still
       written; a file that fails check is refused and the running
       configuration kept, the error naming the key path). --metrics-listen
       serves Prometheus metrics on http://ADDR/metrics (per VM and per
       scenario; memory gauges when the "azure" tuple is configured).
check  validates the configuration: every error names its key path.
diag   runs the diagnostics on one VM now and writes one bundle
       (--only sysrq:t,registers,qmp,...; default: all the VM allows).
demo   boots the bundled test guest (make guest) with a console shell,
       monitors it with a console probe, hangs its userspace and shows the
       incident bundle.
status prints each http sink's delivery spool: queued, retrying (last
       error), delivered and dropped counts.

Exit status: 0 ok, 1 error, 2 usage.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, hup <-chan os.Signal) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr, hup)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "diag":
		return cmdDiag(ctx, args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "diagmon: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("diagmon "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string, stderr io.Writer) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "diagmon %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false
	}
	return true
}

// load reads and checks the configuration; problems are printed.
func load(path string, stderr io.Writer) (*monitor.Plan, error) {
	c, err := monitor.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	p, err := monitor.Check(c, monitor.CheckOptions{})
	var ce *monitor.ConfigError
	if errors.As(err, &ce) {
		ce.File = path
	}
	return p, err
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	cfg := fs.String("config", "", "configuration file (JSON)")
	if !parse(fs, args, stderr) {
		return exitUsage
	}
	if *cfg == "" {
		fmt.Fprintln(stderr, "diagmon check: --config is required")
		return exitUsage
	}
	p, err := load(*cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "diagmon check: %v\n", err)
		return exitError
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	bindings := 0
	for _, s := range p.Scenarios {
		for _, v := range p.Config.VMs {
			if s.Binds(v) {
				bindings++
			}
		}
	}
	fmt.Fprintf(stdout, "%s: ok: %d VMs, %d scenarios, %d bindings, %d sinks\n", *cfg, len(p.Config.VMs), len(p.Scenarios), bindings, len(p.Config.Sinks))
	if az := p.Azure; az.Enabled() {
		fmt.Fprintf(stdout, "azure metrics: account %s, table endpoint %s, sample every %s, transfer every %s\n",
			az.Diagnostics.StorageAccount, az.Diagnostics.TableEndpoint(), az.Diagnostics.Metrics.Sample(), az.Diagnostics.Metrics.Transfer())
	}
	return exitOK
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer, hup <-chan os.Signal) int {
	fs := newFlags("run", stderr)
	cfg := fs.String("config", "", "configuration file (JSON)")
	asJSON := fs.Bool("json", false, "print JSON lines")
	workdir := fs.String("workdir", "", "where bundles are assembled (default: a temporary directory)")
	listen := fs.String("metrics-listen", "", "serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464)")
	if !parse(fs, args, stderr) {
		return exitUsage
	}
	if *cfg == "" {
		fmt.Fprintln(stderr, "diagmon run: --config is required")
		return exitUsage
	}
	p, err := load(*cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "diagmon run: %v\n", err)
		return exitError
	}
	var ln net.Listener
	opts := monitor.Options{Workdir: *workdir}
	if *listen != "" {
		if ln, err = net.Listen("tcp", *listen); err != nil {
			fmt.Fprintf(stderr, "diagmon run: --metrics-listen: %v\n", err)
			return exitError
		}
		defer ln.Close()
		opts.Exporter = metrics.NewExporter(nil)
	}
	m, err := monitor.New(ctx, p, opts)
	if err != nil {
		fmt.Fprintf(stderr, "diagmon run: %v\n", err)
		return exitError
	}
	defer m.Close()
	if ln != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.MetricsHandler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		fmt.Fprintf(stderr, "diagmon run: metrics on http://%s/metrics\n", ln.Addr())
	}
	pr := printer{w: stdout, json: *asJSON}
	for {
		select {
		case <-ctx.Done():
			go func() {
				for e := range m.Events() { // keep draining while Close waits for bundles
					pr.print(e)
				}
			}()
			return exitOK
		case <-hup:
			np, err := load(*cfg, stderr)
			if err == nil {
				err = m.Apply(np)
			}
			if err != nil {
				pr.print(monitor.Event{Time: time.Now(), Type: monitor.EventError, Detail: "reload refused, keeping the running configuration: " + err.Error()})
				continue
			}
			pr.print(monitor.Event{Time: time.Now(), Type: "reload", Detail: fmt.Sprintf("%d VMs, %d scenarios", len(np.Config.VMs), len(np.Scenarios))})
		case e := <-m.Events():
			pr.print(e)
		}
	}
}

type printer struct {
	w    io.Writer
	json bool
}

// print writes one event line. Detail is escaped by the monitor; it is
// escaped again here for the terminal (control characters).
func (p printer) print(e monitor.Event) {
	if p.json {
		b, _ := json.Marshal(e)
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-8s", e.Time.Format("15:04:05.000"), e.Type)
	if e.VM != "" {
		fmt.Fprintf(&b, " vm=%s", e.VM)
	}
	if e.Scenario != "" {
		fmt.Fprintf(&b, " scenario=%s", e.Scenario)
	}
	if e.State != "" {
		fmt.Fprintf(&b, " %s", e.State)
	}
	if e.Incident != "" {
		fmt.Fprintf(&b, " incident=%s", e.Incident)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, " path=%s", e.Path)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", hostreader.EscapeLog(e.Detail))
	}
	fmt.Fprintln(p.w, b.String())
}

func cmdDiag(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("diag", stderr)
	cfg := fs.String("config", "", "configuration file (JSON)")
	vm := fs.String("vm", "", "VM name")
	only := fs.String("only", "", "comma-separated diagnostics (default: all the VM allows)")
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	if !parse(fs, args, stderr) {
		return exitUsage
	}
	if *cfg == "" || *vm == "" {
		fmt.Fprintln(stderr, "diagmon diag: --config and --vm are required")
		return exitUsage
	}
	var specs []monitor.DiagSpec
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			specs = append(specs, monitor.ParseDiagSpec(strings.TrimSpace(s)))
		}
	}
	p, err := load(*cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "diagmon diag: %v\n", err)
		return exitError
	}
	// Only this VM, no scenarios: diag must not raise incidents of its own.
	var found bool
	for _, v := range p.Config.VMs {
		if v.Name == *vm {
			p.Config.VMs = []monitor.VMConfig{v}
			found = true
			break
		}
	}
	if !found {
		fmt.Fprintf(stderr, "diagmon diag: no VM named %q in %s\n", *vm, *cfg)
		return exitUsage
	}
	p.Scenarios, p.Warnings = nil, nil
	m, err := monitor.New(ctx, p, monitor.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "diagmon diag: %v\n", err)
		return exitError
	}
	defer m.Close()
	go func() {
		for range m.Events() {
		}
	}()
	res, err := m.Diagnose(ctx, *vm, specs)
	if res == nil {
		fmt.Fprintf(stderr, "diagmon diag: %v\n", err)
		if strings.Contains(fmt.Sprint(err), "only[") {
			return exitUsage
		}
		return exitError
	}
	if *asJSON {
		b, _ := json.MarshalIndent(res.Manifest, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprintf(stdout, "bundle %s -> %s\n", res.ID, strings.Join(res.Locations, ", "))
		render.Artifacts(stdout, "  ", res.Manifest.Artifacts)
	}
	if err != nil {
		fmt.Fprintf(stderr, "diagmon diag: %v\n", err)
		return exitError
	}
	return exitOK
}
