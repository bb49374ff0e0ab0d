package main

// diagread watch: follow regions with a hostreader.Watcher and print one
// line per verdict change until SIGINT/SIGTERM.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
)

const watchUsage = `usage: diagread watch [--json] [--interval D] [--stamp] [--k N] REGIONFILE...

Follow one or more regions and print one line per verdict change (the first
line of each region is its initial verdict), until SIGINT or SIGTERM.
--stamp writes the host time into each region at every interval, so that
the guest's echo proves freshness from a single read (the file is then
opened read-write; only the host-owned words are written).

A file that cannot be watched (missing, not a regular file, shorter than
the region header) is reported at once, on stderr and as a line of its own
("unusable", or a JSON object with "error"), and the others are watched.
A region whose header is invalid (bad magic, a region_size it cannot have)
is watched: its verdict is corrupt, naming the field.

Exit status: 0 stopped by SIGINT or SIGTERM, 2 bad usage (an unknown flag,
a bad flag value, no file) or no file could be watched.
`

// watchJSON is one --json line of diagread watch (docs/cli.md).
type watchJSON struct {
	Time    time.Time          `json:"time"`
	Region  string             `json:"region"`
	Prev    hostreader.State   `json:"prev"`
	Verdict hostreader.Verdict `json:"verdict"`
}

// watchErrorJSON is the --json line of a file that cannot be watched.
type watchErrorJSON struct {
	Time   time.Time `json:"time"`
	Region string    `json:"region"`
	Error  string    `json:"error"`
}

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("watch", watchUsage, stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per line (fields documented in docs/cli.md)")
	interval := fs.Duration("interval", time.Second, "poll (and stamp) interval")
	stamp := fs.Bool("stamp", false, "write the host time into the regions at every interval")
	var vf verdictFlags
	vf.register(fs)
	files, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitBadInput
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "diagread watch: need at least one REGIONFILE")
		fs.Usage()
		return exitBadInput
	}
	cfg, err := vf.config()
	if err == nil && *interval <= 0 {
		err = fmt.Errorf("--interval %v must be positive", *interval)
	}
	if err != nil {
		fmt.Fprintf(stderr, "diagread watch: %v\n", err)
		return exitBadInput
	}
	if *stamp && !flagSet(fs, "stamp-interval") {
		cfg.StampInterval = *interval
	}
	w := hostreader.NewWatcher(ctx, hostreader.WatchOptions{Interval: *interval, Stamp: *stamp, Verdict: cfg})
	defer w.Close()
	enc := json.NewEncoder(stdout)
	watched := 0
	for _, f := range files {
		err := w.Add(f, f)
		if err == nil {
			watched++
			continue
		}
		// One unusable file (missing, a named pipe, too short) does not
		// stop the others: it is reported, on stderr and in the stream.
		fmt.Fprintf(stderr, "diagread watch: %s: unusable, not watched: %v\n", f, err)
		now := time.Now().UTC()
		if *asJSON {
			err = enc.Encode(watchErrorJSON{Time: now, Region: f, Error: err.Error()})
		} else {
			_, err = fmt.Fprintf(stdout, "%s %s: unusable, not watched: %v\n", now.Format(time.RFC3339Nano), f, err)
		}
		if err != nil {
			fmt.Fprintf(stderr, "diagread watch: %v\n", err)
			return exitBadInput
		}
	}
	if watched == 0 {
		fmt.Fprintln(stderr, "diagread watch: no usable REGIONFILE")
		return exitBadInput
	}
	for c := range w.Changes() {
		if *asJSON {
			err = enc.Encode(watchJSON{Time: c.Verdict.At.UTC(), Region: c.Name, Prev: c.Prev, Verdict: c.Verdict})
		} else {
			_, err = fmt.Fprintf(stdout, "%s %s: %s (was %s)\n", c.Verdict.At.UTC().Format(time.RFC3339Nano), c.Name, c.Verdict, c.Prev)
		}
		if err != nil {
			fmt.Fprintf(stderr, "diagread watch: %v\n", err)
			return exitBadInput
		}
	}
	return exitOK
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
