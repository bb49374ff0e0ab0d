// Command diagbeat runs inside a guest and beats an acpidiag application
// heartbeat slot, so the host can tell the application is alive, not only
// the kernel:
//
//	diagbeat --slot 2 --tag web --every 5s -- curl -fs http://localhost/health
//
// Without a command it beats every period; with one it runs the command
// every period and beats only when it exits 0. It finds the region itself
// (the ivshmem device by its PCI ids and resource2, or a fixed placement
// through /dev/mem) and is built static (CGO_ENABLED=0) so it runs in any
// guest. All the work is done by package diagbeat; docs/diagbeat.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/acpidiag/acpidiag/diagbeat"
	"github.com/acpidiag/acpidiag/region"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the region cannot be found or used
	exitUsage = 2
)

const usage = `usage: diagbeat --slot N --tag NAME [--every D] [--region SPEC] [--size N] [--wait D] [--keep] [-- CHECK...]

Beats acpidiag application heartbeat slot N (0..7) under the name NAME
(1..8 printable ASCII characters) every period D. With a CHECK command it
runs the command every period (bounded by the period) and beats only when
the command exits 0: the host sees the slot go stale when the check keeps
failing, even while the kernel's tick is alive. Stops on SIGINT/SIGTERM and
then clears the slot (--keep leaves it, so the host sees it go stale).

--region is where the host placed the region: ivshmem (any ivshmem device,
the default), ivshmem:SLOT (the device at that PCI slot), or fixed:ADDR
(through /dev/mem; --size is then the region's size).

Exit status: 0 stopped by a signal, 1 region not found or unusable, 2 usage.

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diagbeat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	slot := fs.Int("slot", -1, "application slot to beat, 0..7 (required)")
	tag := fs.String("tag", "", "name of the application in the slot, 1..8 printable ASCII (required)")
	every := fs.Duration("every", 5*time.Second, "beat (and check) period, promised to the host")
	spec := fs.String("region", "", "where the region is: ivshmem, ivshmem:SLOT or fixed:ADDR (default: any ivshmem device)")
	size := fs.String("size", "64K", "region size (fixed placement)")
	wait := fs.Duration("wait", time.Minute, "wait this long for the region to appear and be initialised")
	keep := fs.Bool("keep", false, "leave the slot claimed on exit (the host then sees it go stale)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "diagbeat: "+format+"\n", a...)
		return exitUsage
	}
	if *slot < 0 || *slot >= region.NumSlots {
		return usageErr("--slot %d: want 0..%d", *slot, region.NumSlots-1)
	}
	if err := diagbeat.ValidTag(*tag); err != nil {
		return usageErr("--tag: %v", err)
	}
	if *every < time.Millisecond || *every > time.Duration(1<<31)*time.Millisecond {
		return usageErr("--every %v: want 1ms..%v", *every, time.Duration(1<<31)*time.Millisecond)
	}
	if *wait < 0 {
		return usageErr("--wait %v is negative", *wait)
	}
	place := region.Spec{Placement: region.Ivshmem}
	if *spec != "" {
		var err error
		if place.Placement, place.Slot, place.Address, err = region.ParseSpec(*spec); err != nil {
			return usageErr("--region: %v", err)
		}
	}
	if place.Placement == region.Fixed {
		var err error
		if place.Size, err = region.ParseSize(*size); err != nil {
			return usageErr("--size: %v", err)
		}
		if err := place.Validate(); err != nil {
			return usageErr("--region %s --size %s: %v", *spec, *size, err)
		}
	}
	r, err := diagbeat.Open(ctx, place, *wait)
	if err != nil {
		fmt.Fprintf(stderr, "diagbeat: %v\n", err)
		return exitError
	}
	defer r.Close()
	s, err := r.Slot(*slot)
	if err != nil {
		return usageErr("%v", err)
	}
	opts := diagbeat.RunOptions{Tag: *tag, Every: *every, KeepOnExit: *keep}
	what := "beating"
	if argv := fs.Args(); len(argv) > 0 {
		opts.Check = diagbeat.CommandCheck(argv, os.Stderr)
		what = fmt.Sprintf("checking %q and beating on success", argv)
	}
	opts.Report = func(beats uint32, err error) {
		if err != nil {
			fmt.Fprintf(stderr, "diagbeat: slot %d %q: check failed (%v): not beating (beat %d)\n", *slot, *tag, err, beats)
			return
		}
		fmt.Fprintf(stderr, "diagbeat: slot %d %q: healthy, beating (beat %d)\n", *slot, *tag, beats)
	}
	fmt.Fprintf(stdout, "diagbeat: %s: slot %d tag %q, %s every %s\n", r.Source, *slot, *tag, what, *every)
	if err := diagbeat.Run(ctx, s, opts); err != nil {
		fmt.Fprintf(stderr, "diagbeat: %v\n", err)
		return exitError
	}
	return exitOK
}
