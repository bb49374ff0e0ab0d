// Command diagvm launches QEMU with acpidiag's diagnostic channel wired,
// supervises it over QMP and prints health verdicts as they change; it can
// also attach to a running VM, and `diagvm demo` boots the bundled test
// guest, shows it alive, makes it panic and prints the decoded panic.
//
// It is a thin layer over qemuhook (NewChannel, Config, Launch, Attach),
// internal/render (Follow, WriteSummary) and internal/demo (Run); run
// "diagvm --help".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/demo"
	"github.com/acpidiag/acpidiag/internal/render"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/region"
	"github.com/acpidiag/acpidiag/ssdt"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK         = 0
	exitError      = 1
	exitUsage      = 2
	exitPanicked   = 3 // the guest panicked
	exitQEMUDied   = 4 // QEMU ended unexpectedly (signal, error status)
	exitNoEvidence = 5 // demo: the expected evidence was not seen
)

const usageText = `diagvm: run or watch a VM with acpidiag's agent-less health channel.

Modes:
  diagvm run --kernel K [--initrd I] [--append ARGS] [--machine pc|q35]
             [--firmware seabios|ovmf] [--smp N] [--memory MB] [--tick D]
             [--region ivshmem|ivshmem:SLOT|fixed:ADDR] [--size N] [--json]
             [--workdir DIR] [--console] [--no-reboot] [--keep-qemu] [--dry-run]
             [--balloon] [-- extra qemu args]
      Build the diagnostic SSDT into the workdir, boot QEMU with the region,
      pvpanic and ERST wired, print each verdict as it happens and a summary
      when QEMU exits (the summary reads the region at the end). The VM keeps
      running across guest reboots (also the reboot after a panic:
      "panicked", "reset", "rebooted", then "alive" with the next boot
      count); --no-reboot makes a guest reboot end QEMU (QEMU's -no-reboot).
      Ctrl-C or SIGTERM stops the VM. The region and ERST files are
      preallocated first: a disk too full for them fails here, before the
      guest runs. QEMU dies with diagvm, also when diagvm is killed
      (parent-death signal), unless --keep-qemu. --dry-run checks the flags
      (the same placement rules as ssdtgen), writes the SSDT and prints the
      QEMU command line without starting anything.
  diagvm attach --qmp SOCKET --region FILE [--region-offset N] [--erst FILE]
                [--serial SOCKET] [--reconnect] [--json]
      Supervise a VM started elsewhere (with the arguments of
      "ssdtgen qemu-args"); ends when its QMP connection closes. With
      --reconnect it reports the loss ("disconnected"), keeps watching the
      region and re-dials the QMP socket (backoff 100ms..2s) until a QEMU
      answers on it again ("reconnected"); it then ends only on Ctrl-C or
      SIGTERM.
  diagvm demo [--panic-after D] [--json] [--console] [--keep]
      Build and boot the bundled test guest (needs "make deps guest"), show
      it alive, make it panic, print the panic decoded from ERST.

Exit status: 0 clean (or --help); 1 error (QEMU could not be started, a
file could not be written, ...); 2 usage error (unknown mode or flag, bad
flag value, missing or extra argument); 3 the guest panicked; 4 QEMU ended
unexpectedly; 5 (demo) the expected evidence was not seen.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "attach":
		return cmdAttach(ctx, args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	}
	fmt.Fprintf(stderr, "diagvm: unknown mode %q (run, attach, demo; see --help)\n", args[0])
	return exitUsage
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText+"\nFlags of "+name+":\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses a mode's flags: --help exits 0, any other flag error
// (unknown flag, bad value) is a usage error (exit 2).
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

// checkK refuses a --k outside hostreader's range.
func checkK(k int) error {
	if k < 1 || k > 1000 {
		return fmt.Errorf("--k %d out of range 1..1000", k)
	}
	return nil
}

func fail(stderr io.Writer, code int, format string, a ...any) int {
	fmt.Fprintf(stderr, "diagvm: "+format+"\n", a...)
	return code
}

// exitCode maps a run's summary to the exit status.
func exitCode(sum qemuhook.Summary) int {
	switch {
	case sum.Panic != nil:
		return exitPanicked
	case sum.Exit != nil && !sum.Exit.Expected:
		return exitQEMUDied
	case sum.Exit != nil && sum.Exit.Code != 0:
		return exitQEMUDied
	}
	return exitOK
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("diagvm run", stderr)
	kernel := fs.String("kernel", "", "guest kernel (QEMU -kernel), required")
	initrd := fs.String("initrd", "", "initramfs (QEMU -initrd)")
	appendArgs := fs.String("append", "", "guest kernel command line (console=ttyS0 and panic=-1 are added when absent)")
	firmware := fs.String("firmware", string(qemuhook.FirmwareSeaBIOS), "firmware: seabios or ovmf")
	smp := fs.Int("smp", 1, "vCPUs")
	tick := fs.Duration("tick", ssdt.DefaultTick, "tick period the SSDT asks the guest for (_TZP), 100ms steps")
	var place region.Flags
	place.Register(fs)
	dryRun := fs.Bool("dry-run", false, "check the flags, write the SSDT and print the QEMU command line, but start nothing")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	workdir := fs.String("workdir", "", "directory for the SSDT, region, ERST store and sockets (default: a new temporary directory, kept)")
	console := fs.Bool("console", false, "copy the guest's serial console to stderr")
	noReboot := fs.Bool("no-reboot", false, "a guest reboot (or the reboot after a panic) ends QEMU instead of booting the guest again")
	k := fs.Int("k", hostreader.DefaultK, "stale after K periods without a tick")
	keepQEMU := fs.Bool("keep-qemu", false, "let QEMU run on if diagvm is killed (SIGKILL, crash), for \"diagvm attach\" to pick up; by default QEMU dies with diagvm")
	balloon := fs.Bool("balloon", false, "add a virtio-balloon-pci device (id acpidiag-balloon): the guest's stock virtio_balloon driver then reports its memory statistics (docs/metrics.md)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	extra := fs.Args()
	if *kernel == "" {
		return fail(stderr, exitUsage, "run: --kernel is required")
	}
	if err := checkK(*k); err != nil {
		return fail(stderr, exitUsage, "run: %v", err)
	}
	rc := ssdt.DefaultConfig()
	spec, target, err := place.Parse()
	if err != nil {
		return fail(stderr, exitUsage, "run: %v", err)
	}
	machine, memory := &target.Machine, &target.MemoryMB
	rc.Placement, rc.Slot, rc.Address, rc.Size, rc.Tick = spec.Placement, spec.Slot, spec.Address, spec.Size, *tick
	if err := rc.Validate(); err != nil {
		return fail(stderr, exitUsage, "run: %v", err)
	}
	dir := *workdir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "diagvm"); err != nil {
			return fail(stderr, exitError, "run: %v", err)
		}
	}
	ch, err := qemuhook.NewChannel(dir, rc, qemuhook.Machine(*machine))
	if err != nil {
		return fail(stderr, exitError, "run: %v", err)
	}
	cfg := qemuhook.Config{
		Machine: qemuhook.Machine(*machine), Firmware: qemuhook.Firmware(*firmware), SMP: *smp, MemoryMB: *memory,
		Kernel: *kernel, Initrd: *initrd, Append: *appendArgs,
		Channel: ch, ERSTPath: filepath.Join(dir, "erst"), PVPanic: true, AllowReboot: !*noReboot, Balloon: *balloon,
		QMPSocket: filepath.Join(dir, "qmp.sock"), SerialSocket: filepath.Join(dir, "serial.sock"),
		Workdir: dir, Extra: extra,
	}
	if err := cfg.Validate(); err != nil {
		return fail(stderr, exitUsage, "run: %v", err)
	}
	if *dryRun {
		qargs, err := cfg.Args()
		if err != nil {
			return fail(stderr, exitUsage, "run: %v", err)
		}
		fmt.Fprintln(stdout, qemuhook.ShellJoin(append([]string{qemuhook.DefaultQEMU}, qargs...)))
		return exitOK
	}
	opts := qemuhook.SupervisorOptions{Watch: hostreader.WatchOptions{Verdict: hostreader.VerdictConfig{K: *k}}}
	opts.Start.KeepOnParentDeath = *keepQEMU
	if *console {
		opts.ConsoleTee = stderr
	}
	start := time.Now()
	if !*asJSON {
		fmt.Fprintf(stdout, "diagvm: booting %s (%s, %s), workdir %s\n", *kernel, cfg.Machine, cfg.Firmware, dir)
	}
	s, err := qemuhook.Launch(ctx, cfg, opts)
	if err != nil {
		return fail(stderr, exitError, "run: %v", err)
	}
	defer s.Close()
	sum, err := render.Follow(ctx, s, stdout, render.FollowOptions{JSON: *asJSON, Start: start})
	if err != nil {
		return fail(stderr, exitError, "run: %v", err)
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "region file %s and ERST store %s are kept\n", ch.BackingPath, cfg.ERSTPath)
	}
	return exitCode(sum)
}

func cmdAttach(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("diagvm attach", stderr)
	qmpSock := fs.String("qmp", "", "the VM's QMP unix socket, required")
	regionPath := fs.String("region", "", "the region backing file, required")
	offset := fs.String("region-offset", "0", "offset of the region in the file (fixed placement: its guest-physical address)")
	erst := fs.String("erst", "", "the ERST backing file (optional)")
	serial := fs.String("serial", "", "the serial unix socket (optional; QEMU serves one client)")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	reconnect := fs.Bool("reconnect", false, "when QMP drops, keep watching the region and re-dial the QMP socket until a QEMU answers again (ends only on a signal)")
	k := fs.Int("k", hostreader.DefaultK, "stale after K periods without a tick")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return fail(stderr, exitUsage, "attach: unexpected argument %q", fs.Arg(0))
	}
	if *qmpSock == "" || *regionPath == "" {
		return fail(stderr, exitUsage, "attach: --qmp and --region are required")
	}
	if err := checkK(*k); err != nil {
		return fail(stderr, exitUsage, "attach: %v", err)
	}
	off, err := strconv.ParseInt(*offset, 0, 64)
	if err != nil || off < 0 {
		return fail(stderr, exitUsage, "attach: --region-offset %q is not a non-negative number", *offset)
	}
	ac := qemuhook.AttachConfig{QMPSocket: *qmpSock, RegionPath: *regionPath, RegionOffset: off, ERSTPath: *erst, SerialSocket: *serial, Reconnect: *reconnect}
	if off > 0 {
		ac.RegionSize = int64(ssdt.DefaultSize)
	}
	s, err := qemuhook.Attach(ctx, ac, qemuhook.SupervisorOptions{Watch: hostreader.WatchOptions{Verdict: hostreader.VerdictConfig{K: *k}}})
	if errors.Is(err, hostreader.ErrNotRegular) {
		return fail(stderr, exitUsage, "attach: %v", err) // a FIFO or a device given as a file
	}
	if err != nil {
		return fail(stderr, exitError, "attach: %v", err)
	}
	defer s.Close()
	sum, err := render.Follow(ctx, s, stdout, render.FollowOptions{JSON: *asJSON, Progress: -1})
	if err != nil {
		return fail(stderr, exitError, "attach: %v", err)
	}
	return exitCode(sum)
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("diagvm demo", stderr)
	after := fs.Duration("panic-after", 15*time.Second, "when the guest panics, counted from its /init")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	console := fs.Bool("console", false, "copy the guest's serial console to stderr")
	keep := fs.Bool("keep", false, "keep the temporary workdir (region file, ERST store)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return fail(stderr, exitUsage, "demo: unexpected argument %q", fs.Arg(0))
	}
	if *after <= 0 {
		return fail(stderr, exitUsage, "demo: --panic-after %v must be positive", *after)
	}
	opts := demo.Options{PanicAfter: *after, JSON: *asJSON, Keep: *keep}
	if *console {
		opts.Console = stderr
	}
	_, err := demo.Run(ctx, stdout, opts)
	var de *demo.Error
	switch {
	case errors.As(err, &de):
		return fail(stderr, exitNoEvidence, "%v", err)
	case err != nil:
		return fail(stderr, exitError, "%v", err)
	}
	return exitOK
}
