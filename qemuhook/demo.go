package qemuhook

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/ssdt"
)

// DemoOptions tunes RunDemo.
type DemoOptions struct {
	// PanicAfter is when the guest panics, counted from its /init
	// (default 15 s).
	PanicAfter time.Duration
	// Workdir holds the run's files (SSDT, region, ERST, sockets). Default:
	// a new temporary directory, removed afterwards unless Keep.
	Workdir string
	// Keep keeps a temporary Workdir.
	Keep bool
	// JSON prints verdicts and the summary as JSON lines.
	JSON bool
	// Console, when set, receives the guest's serial console.
	Console io.Writer
	// Timeout bounds the whole demo (default 3 min; it normally takes
	// 25-40 s under TCG).
	Timeout time.Duration
}

// DemoError says why the demo did not show what it should.
type DemoError struct{ Msg string }

func (e *DemoError) Error() string { return "demo: " + e.Msg }

// RunDemo builds the bundled test guest (testguest.Build; the kernel comes
// from `make guest`), boots it under QEMU (q35, SeaBIOS, TCG) with the
// channel, pvpanic and ERST wired, prints the verdicts as they come (the
// guest ticking alive, the panic reported by pvpanic, the decoded panic
// line from the ERST store, QEMU's exit) and a summary with the kernel's
// own panic log. It returns the summary, and a *DemoError if the guest
// was never seen alive or no panic record was decoded.
func RunDemo(ctx context.Context, w io.Writer, opts DemoOptions) (Summary, error) {
	if opts.PanicAfter <= 0 {
		opts.PanicAfter = 15 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	start := time.Now()
	say := func(format string, a ...any) {
		if !opts.JSON {
			fmt.Fprintf(w, "[%6.1fs] "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
		}
	}
	k, err := testguest.Kernel()
	if err != nil {
		return Summary{}, fmt.Errorf("demo: %w", err)
	}
	say("building the test guest initramfs (internal/testguest) ...")
	ird, err := testguest.Build(ctx, "")
	if err != nil {
		return Summary{}, fmt.Errorf("demo: building the test guest: %w", err)
	}
	dir := opts.Workdir
	if dir == "" {
		dir, err = os.MkdirTemp("", "acpidiag-demo")
		if err != nil {
			return Summary{}, fmt.Errorf("demo: %w", err)
		}
		if !opts.Keep {
			defer os.RemoveAll(dir)
		}
	}
	rc := ssdt.DefaultConfig()
	ch, err := NewChannel(dir, rc, MachineQ35)
	if err != nil {
		return Summary{}, fmt.Errorf("demo: %w", err)
	}
	cfg := Config{
		Machine: MachineQ35, Firmware: FirmwareSeaBIOS, MemoryMB: 256, Workdir: dir,
		Kernel: k.Vmlinuz, Initrd: ird.Path,
		Append:    testguest.BootArgs(testguest.ModePanic, opts.PanicAfter),
		Channel:   ch,
		ERSTPath:  filepath.Join(dir, "erst"),
		PVPanic:   true,
		QMPSocket: filepath.Join(dir, "qmp.sock"), SerialSocket: filepath.Join(dir, "serial.sock"),
	}
	say("booting kernel %s under QEMU (q35, SeaBIOS, TCG); the guest panics %s after its /init starts", k.Version, opts.PanicAfter)
	say("workdir %s (region file %s, ERST store %s)", dir, ch.BackingPath, cfg.ERSTPath)
	s, err := Launch(ctx, cfg, SupervisorOptions{ConsoleTee: opts.Console})
	if err != nil {
		return Summary{}, fmt.Errorf("demo: %w", err)
	}
	defer s.Close()
	sum, err := Follow(ctx, s, w, FollowOptions{JSON: opts.JSON, Start: start})
	if err != nil {
		return sum, err
	}
	if ctx.Err() != nil {
		return sum, fmt.Errorf("demo: %w", ctx.Err())
	}
	switch {
	case sum.Boots == 0 || sum.Ticks == 0:
		return sum, &DemoError{"the guest never ticked: the region stayed empty"}
	case sum.Panic == nil:
		return sum, &DemoError{"no panic was reported"}
	case sum.Panic.Source != "erst":
		return sum, &DemoError{"pvpanic reported the panic but no ERST record was decoded"}
	}
	say("done in %s: alive ticks, the pvpanic event and the kernel's own panic log from ERST", time.Since(start).Round(100*time.Millisecond))
	return sum, nil
}
