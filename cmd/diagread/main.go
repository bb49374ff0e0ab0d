// Command diagread reads the evidence acpidiag leaves on the host: the
// health of a diagnostic region (one verdict, or every change while
// watching) and the kernel panic logs in an ACPI ERST backing file.
//
//	diagread [--json] [--k N] [--wait D] [--fail-unless-alive] REGIONFILE
//	diagread watch [--json] [--interval D] [--stamp] [--k N] REGIONFILE...
//	diagread erst [--json] [--summary] BACKINGFILE
//	diagread ping [--timeout D] [--json] REGIONFILE
//
// All the work is done by package hostreader; docs/cli.md documents the
// output (JSON field names) and the exit codes: 0 ok, 1 verdict not alive
// with --fail-unless-alive, 2 bad usage or bad input.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
)

// Exit codes.
const (
	exitOK       = 0
	exitNotAlive = 1
	exitBadInput = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const mainUsage = `usage:
  diagread [--json] [--k N] [--wait D] [--fail-unless-alive] REGIONFILE
  diagread watch [--json] [--interval D] [--stamp] [--k N] REGIONFILE...
  diagread erst [--json] [--summary] BACKINGFILE
  diagread ping [--timeout D] [--json] REGIONFILE

diagread REGIONFILE prints the health verdict of one diagnostic region
(ivshmem backing file, or a RAM backing file with --offset). Freshness comes
from the echo of the host stamp when a host is stamping the region;
otherwise diagread re-reads the region until its ticks move (alive), K
periods pass without a tick (stale) or --wait expires (unknown).

Exit status: 0 ok, 1 not alive (with --fail-unless-alive), 2 bad usage or input.
`

// run dispatches the subcommands and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "watch":
			return runWatch(ctx, args[1:], stdout, stderr)
		case "erst":
			return runErst(args[1:], stdout, stderr)
		case "ping":
			return runPing(ctx, args[1:], stdout, stderr)
		case "help":
			fmt.Fprint(stdout, mainUsage)
			return exitOK
		}
	}
	return runRead(ctx, args, stdout, stderr)
}

// parseInterleaved parses flags that may come before or after the
// positional arguments and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var pos []string
	for fs.NArg() > 0 {
		pos = append(pos, fs.Arg(0))
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return nil, err
		}
	}
	return pos, nil
}

// int64Flag accepts decimal or 0x-prefixed hexadecimal (guest-physical
// addresses are usually written in hex).
type int64Flag struct{ v *int64 }

func (f int64Flag) String() string {
	if f.v == nil {
		return "0"
	}
	return strconv.FormatInt(*f.v, 10)
}

func (f int64Flag) Set(s string) error {
	v, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return fmt.Errorf("not a number: %q", s)
	}
	if v < 0 {
		return fmt.Errorf("negative: %d", v)
	}
	*f.v = v
	return nil
}

// regionFileFlags locate a region in its file (read and ping).
type regionFileFlags struct{ offset, size int64 }

func (f *regionFileFlags) register(fs *flag.FlagSet) {
	fs.Var(int64Flag{&f.offset}, "offset", "byte offset of the region in the file (fixed placement: its guest-physical address)")
	fs.Var(int64Flag{&f.size}, "size", "bytes of the file to map from --offset (0: to the end)")
}

func (f *regionFileFlags) open(path string, writable bool) (*hostreader.Region, error) {
	return hostreader.OpenRegion(path, hostreader.OpenOptions{Offset: f.offset, Size: f.size, Writable: writable})
}

// newFlagSet returns a subcommand's flag set; its usage prints usage, then
// the flags, to stderr.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// openForVerdict checks the verdict flags, then the subcommand's own flag
// check (extra, nil when fine), then opens the region file. On an error it
// prints "prog: error" to stderr and returns ok false (exit 2).
func openForVerdict(prog string, rf *regionFileFlags, vf *verdictFlags, path string, writable bool, extra func() error, stderr io.Writer) (r *hostreader.Region, cfg hostreader.VerdictConfig, ok bool) {
	cfg, err := vf.config()
	if err == nil {
		err = extra()
	}
	if err == nil {
		r, err = rf.open(path, writable)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return nil, cfg, false
	}
	return r, cfg, true
}

// oneFile parses flags interleaved with exactly one REGIONFILE; when ok is
// false the command ends with code.
func oneFile(fs *flag.FlagSet, args []string, stderr io.Writer, prog string) (path string, code int, ok bool) {
	files, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", exitOK, false
		}
		return "", exitBadInput, false
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "%s: need exactly one REGIONFILE, got %d\n", prog, len(files))
		fs.Usage()
		return "", exitBadInput, false
	}
	return files[0], exitOK, true
}

// verdictFlags are the verdict options shared by read and watch.
type verdictFlags struct {
	k             int
	stampInterval time.Duration
}

func (vf *verdictFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&vf.k, "k", hostreader.DefaultK, "stale after K periods without a tick (1..1000)")
	fs.DurationVar(&vf.stampInterval, "stamp-interval", hostreader.DefaultStampInterval, "interval at which the host stamps the region (tolerance on the echo)")
}

func (vf *verdictFlags) config() (hostreader.VerdictConfig, error) {
	if vf.k < 1 || vf.k > 1000 {
		return hostreader.VerdictConfig{}, fmt.Errorf("--k %d out of range 1..1000", vf.k)
	}
	if vf.stampInterval <= 0 {
		return hostreader.VerdictConfig{}, fmt.Errorf("--stamp-interval %v must be positive", vf.stampInterval)
	}
	return hostreader.VerdictConfig{K: vf.k, StampInterval: vf.stampInterval}, nil
}

// readJSON is the --json output of a one-shot read (docs/cli.md).
type readJSON struct {
	Region  string             `json:"region"`
	Verdict hostreader.Verdict `json:"verdict"`
	Error   string             `json:"error,omitempty"`
}

func runRead(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("diagread", mainUsage, stderr)
	asJSON := fs.Bool("json", false, "print JSON (fields documented in docs/cli.md)")
	failUnlessAlive := fs.Bool("fail-unless-alive", false, "exit 1 unless the verdict is alive")
	wait := fs.Duration("wait", 10*time.Second, "without a usable host stamp echo, re-read the region for up to this long (0: one snapshot)")
	var rf regionFileFlags
	rf.register(fs)
	var vf verdictFlags
	vf.register(fs)
	path, code, ok := oneFile(fs, args, stderr, "diagread")
	if !ok {
		return code
	}
	r, cfg, ok := openForVerdict("diagread", &rf, &vf, path, false, func() error {
		if *wait < 0 {
			return fmt.Errorf("--wait %v is negative", *wait)
		}
		return nil
	}, stderr)
	if !ok {
		return exitBadInput
	}
	defer r.Close()
	v, err := hostreader.Check(ctx, r, cfg, *wait)
	code = exitOK
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "diagread: %v\n", err)
		code = exitBadInput
	}
	if *asJSON {
		out := readJSON{Region: path, Verdict: v}
		if err != nil {
			out.Error = err.Error()
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "diagread: %v\n", err)
			return exitBadInput
		}
	} else {
		fmt.Fprintf(stdout, "region:      %s\n", path)
		if err := v.WriteText(stdout); err != nil {
			fmt.Fprintf(stderr, "diagread: %v\n", err)
			return exitBadInput
		}
	}
	if code == exitOK && *failUnlessAlive && v.State != hostreader.StateAlive {
		code = exitNotAlive
	}
	return code
}
