// Package demo is `diagvm demo` (and `make demo`): it builds the bundled
// test guest, boots it under QEMU with the channel wired and shows the
// verdicts and the decoded panic. It lives apart from qemuhook so the
// library does not pull in the test guest, a go build call and u-root's
// cpio.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/acpidiag/acpidiag/internal/render"
	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/ssdt"
)

// Options tunes Run.
type Options struct {
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

// Error says why the demo did not show what it should.
type Error struct{ Msg string }

func (e *Error) Error() string { return "demo: " + e.Msg }

// Run builds the bundled test guest (testguest.Build; the kernel comes
// from `make guest`), boots it under QEMU (q35, SeaBIOS, TCG) with the
// channel, pvpanic and ERST wired, prints the verdicts as they come (the
// guest ticking alive, the panic reported by pvpanic, the decoded panic
// line from the ERST store, QEMU's exit) and a summary with the kernel's
// own panic log. It returns the summary, and an *Error if the guest
// was never seen alive or no panic record was decoded.
func Run(ctx context.Context, w io.Writer, opts Options) (qemuhook.Summary, error) {
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
			render.Elapsed(w, start, format, a...)
		}
	}
	k, err := testguest.Kernel()
	if err != nil {
		return qemuhook.Summary{}, fmt.Errorf("demo: %w", err)
	}
	say("building the test guest initramfs (internal/testguest) ...")
	ird, err := testguest.Build(ctx, "")
	if err != nil {
		return qemuhook.Summary{}, fmt.Errorf("demo: building the test guest: %w", err)
	}
	dir := opts.Workdir
	if dir == "" {
		dir, err = os.MkdirTemp("", "acpidiag-demo")
		if err != nil {
			return qemuhook.Summary{}, fmt.Errorf("demo: %w", err)
		}
		if !opts.Keep {
			defer os.RemoveAll(dir)
		}
	}
	rc := ssdt.DefaultConfig()
	ch, err := qemuhook.NewChannel(dir, rc, qemuhook.MachineQ35)
	if err != nil {
		return qemuhook.Summary{}, fmt.Errorf("demo: %w", err)
	}
	cfg := qemuhook.Config{
		Machine: qemuhook.MachineQ35, Firmware: qemuhook.FirmwareSeaBIOS, MemoryMB: 256, Workdir: dir,
		Kernel: k.Vmlinuz, Initrd: ird.Path,
		Append:    testguest.BootArgs(testguest.ModePanic, opts.PanicAfter),
		Channel:   ch,
		ERSTPath:  filepath.Join(dir, "erst"),
		PVPanic:   true,
		QMPSocket: filepath.Join(dir, "qmp.sock"), SerialSocket: filepath.Join(dir, "serial.sock"),
	}
	say("booting kernel %s under QEMU (q35, SeaBIOS, TCG); the guest panics %s after its /init starts", k.Version, opts.PanicAfter)
	say("workdir %s (region file %s, ERST store %s)", dir, ch.BackingPath, cfg.ERSTPath)
	s, err := qemuhook.Launch(ctx, cfg, qemuhook.SupervisorOptions{ConsoleTee: opts.Console})
	if err != nil {
		return qemuhook.Summary{}, fmt.Errorf("demo: %w", err)
	}
	defer s.Close()
	sum, err := render.Follow(ctx, s, w, render.FollowOptions{JSON: opts.JSON, Start: start})
	if err != nil {
		return sum, err
	}
	if ctx.Err() != nil {
		return sum, fmt.Errorf("demo: %w", ctx.Err())
	}
	switch {
	case sum.Boots == 0 || sum.Ticks == 0:
		return sum, &Error{"the guest never ticked: the region stayed empty"}
	case sum.Panic == nil:
		return sum, &Error{"no panic was reported"}
	case sum.Panic.Source != "erst":
		return sum, &Error{"pvpanic reported the panic but no ERST record was decoded"}
	}
	say("done in %s: alive ticks, the pvpanic event and the kernel's own panic log from ERST", time.Since(start).Round(100*time.Millisecond))
	return sum, nil
}
