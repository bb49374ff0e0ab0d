// Command ssdtgen emits acpidiag's diagnostic SSDT, prints it as ASL, decodes
// any AML table, and prints the QEMU arguments that wire the matching region.
//
// It is a thin layer over ssdt.Build, acpi.DescribeTable and
// qemuhook.Channel.Args; run "ssdtgen --help".
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/acpidiag/acpidiag/acpi"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/region"
	"github.com/acpidiag/acpidiag/ssdt"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usageText = `ssdtgen: the acpidiag diagnostic SSDT.

Modes:
  ssdtgen [table flags] -o FILE
      Write the SSDT (give it to QEMU with -acpitable file=FILE).
  ssdtgen --asl [table flags]
      Print the SSDT those flags produce as ASL, without writing a file.
  ssdtgen decode FILE...
      Decode any ACPI AML table (DSDT, SSDT; raw .dat or .aml) and print it as ASL.
  ssdtgen qemu-args [table flags] --backing PATH [--ssdt FILE]
      Print the QEMU arguments (SSDT, region memory backend, ivshmem device)
      and, for a fixed region, the guest kernel option memmap=SIZE$ADDR.

Examples:
  ssdtgen -o diag.aml
  ssdtgen --region ivshmem:0x11 --size 1M --tick 500ms -o diag.aml
  ssdtgen --region fixed:0x10000000 --asl
  ssdtgen decode /sys/firmware/acpi/tables/DSDT
  ssdtgen qemu-args --backing /dev/shm/vm1.diag --ssdt diag.aml

Exit status: 0 success; 1 a file could not be read, decoded or written
(decode: any FILE failed); 2 usage error (unknown flag, bad flag value,
missing or extra argument).

Table flags (the same --region, --size, --machine and --memory rules as
diagvm run; a placement one command refuses, every command refuses):
`

// tableFlags are the flags that select the SSDT configuration.
type tableFlags struct {
	place                        region.Flags
	oemID, tableID, zone, device string
	tick                         time.Duration
	target                       region.Target // set by config
}

func (t *tableFlags) register(fs *flag.FlagSet) {
	d := ssdt.DefaultConfig()
	t.place.Register(fs)
	fs.DurationVar(&t.tick, "tick", d.Tick, "period the guest polls the tick at (_TZP), 100ms..1h in steps of 100ms")
	fs.StringVar(&t.oemID, "oem-id", d.OEMID, "OEM ID of the table header (1-6 characters)")
	fs.StringVar(&t.tableID, "table-id", d.TableID, "OEM table ID of the table header (1-8 characters)")
	fs.StringVar(&t.zone, "zone", d.ZoneName, `ThermalZone name under \_TZ (4 characters)`)
	fs.StringVar(&t.device, "device", d.DeviceName, `ivshmem Device name under \_SB.PCI0 (4 characters)`)
}

// config turns the flags into a validated ssdt.Config.
func (t *tableFlags) config() (ssdt.Config, error) {
	c := ssdt.DefaultConfig()
	spec, target, err := t.place.Parse()
	if err != nil {
		return c, err
	}
	t.target = target
	c.Placement, c.Slot, c.Address, c.Size = spec.Placement, spec.Slot, spec.Address, spec.Size
	c.Tick, c.OEMID, c.TableID, c.ZoneName, c.DeviceName = t.tick, t.oemID, t.tableID, t.zone, t.device
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w%s", err, flagHint(err))
	}
	return c, nil
}

// flagHint names the command-line flag behind a Config field.
func flagHint(err error) string {
	var ce *ssdt.ConfigError
	if !errors.As(err, &ce) {
		return ""
	}
	// Placement and size were checked by region.Flags.Parse, which names
	// its flags itself.
	flagFor := map[string]string{"Tick": "--tick", "OEMID": "--oem-id", "TableID": "--table-id",
		"ZoneName": "--zone", "DeviceName": "--device"}
	if f, ok := flagFor[ce.Field]; ok {
		return " (flag " + f + ")"
	}
	return ""
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	return fs
}

// run is the whole command; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "decode":
			return runDecode(args[1:], stdout, stderr)
		case "qemu-args":
			return runQEMUArgs(args[1:], stdout, stderr)
		case "help":
			args = []string{"--help"}
		}
	}
	return runBuild(args, stdout, stderr)
}

// Exit codes (documented in usageText and docs/cli.md).
const (
	exitOK    = 0
	exitError = 1 // a file could not be read, decoded or written
	exitUsage = 2 // any usage error: unknown flag, bad flag value, missing or extra argument
)

func fail(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "ssdtgen: "+format+"\n", a...)
	return exitError
}

// usage reports a usage error (exit status 2).
func usage(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "ssdtgen: "+format+"\n", a...)
	return exitUsage
}

func runBuild(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("ssdtgen", stderr)
	var tf tableFlags
	tf.register(fs)
	out := fs.String("o", "", "write the table to this file (- for standard output)")
	asl := fs.Bool("asl", false, "print the table as ASL instead of writing it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		return usage(stderr, "unexpected argument %q (modes: decode, qemu-args; see --help)", fs.Arg(0))
	}
	if *out == "" && !*asl {
		return usage(stderr, "nothing to do: give -o FILE to write the table or --asl to print it (see --help)")
	}
	cfg, err := tf.config()
	if err != nil {
		return usage(stderr, "%v", err)
	}
	table, err := ssdt.Build(cfg)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if *asl {
		if err := acpi.DescribeTable(stdout, table, acpi.DescribeOptions{}); err != nil {
			return fail(stderr, "%v", err)
		}
	}
	switch *out {
	case "":
	case "-":
		if _, err := stdout.Write(table); err != nil {
			return fail(stderr, "%v", err)
		}
	default:
		if err := os.WriteFile(*out, table, 0o644); err != nil {
			return fail(stderr, "%v", err)
		}
	}
	return 0
}

func runQEMUArgs(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("ssdtgen qemu-args", stderr)
	var tf tableFlags
	tf.register(fs)
	backing := fs.String("backing", "", "host file backing the region (ivshmem: the region itself; fixed: the whole guest RAM)")
	ssdtFile := fs.String("ssdt", "diag.aml", "path of the SSDT file QEMU loads (written by ssdtgen -o)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		return usage(stderr, "qemu-args: unexpected argument %q", fs.Arg(0))
	}
	if *backing == "" {
		return usage(stderr, "qemu-args: --backing PATH is required (e.g. /dev/shm/vm1.diag)")
	}
	cfg, err := tf.config()
	if err != nil {
		return usage(stderr, "%v", err)
	}
	ch := qemuhook.Channel{SSDTPath: *ssdtFile, Region: cfg, BackingPath: *backing, Machine: qemuhook.Machine(tf.target.Machine), MemoryMB: tf.target.MemoryMB}
	qargs, kargs, err := ch.Args()
	if err != nil {
		return usage(stderr, "%v", err) // the flags name an impossible wiring
	}
	fmt.Fprintln(stdout, qemuhook.ShellJoin(qargs))
	if len(kargs) > 0 {
		fmt.Fprintln(stdout, "# guest kernel command line: "+qemuhook.ShellJoin(kargs))
	}
	return 0
}
