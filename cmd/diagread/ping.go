package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
)

// pingJSON is the --json output of diagread ping (docs/cli.md).
type pingJSON struct {
	Region      string             `json:"region"`
	Answered    bool               `json:"answered"`
	Seq         uint32             `json:"seq"`
	RoundTripMs *float64           `json:"round_trip_ms,omitempty"`
	Ticks       *uint32            `json:"ticks,omitempty"`
	Verdict     hostreader.Verdict `json:"verdict"`
	Error       string             `json:"error,omitempty"`
}

// runPing is "diagread ping FILE": a mailbox round trip (hostreader.Ping).
// Exit 0 on an answer, 1 when none came (the verdict says why), 2 on bad
// usage or a region that cannot be opened writable.
func runPing(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("diagread ping", "usage: diagread ping [--timeout D] [--json] [--offset A] [--size N] [--k N] REGIONFILE\n\n"+
		"Posts a ping into the region's mailbox, waits for the guest's AML to answer it\n"+
		"at its next tick, and prints the round trip. Exit 0 answered, 1 no answer\n"+
		"(with the verdict that explains it), 2 bad usage or input.\n\n", stderr)
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	asJSON := fs.Bool("json", false, "print JSON (fields documented in docs/cli.md)")
	var rf regionFileFlags
	rf.register(fs)
	var vf verdictFlags
	vf.register(fs)
	path, code, ok := oneFile(fs, args, stderr, "diagread ping")
	if !ok {
		return code
	}
	r, cfg, ok := openForVerdict("diagread ping", &rf, &vf, path, true, func() error {
		if *timeout <= 0 {
			return fmt.Errorf("--timeout %v must be positive", *timeout)
		}
		return nil
	}, stderr)
	if !ok {
		return exitBadInput
	}
	defer r.Close()
	res, err := hostreader.Ping(ctx, r, cfg, *timeout)
	switch {
	case err == nil:
	case errors.Is(err, hostreader.ErrNoAnswer), errors.Is(err, hostreader.ErrBadAnswer), errors.Is(err, context.Canceled):
		code = exitNotAlive
	default:
		fmt.Fprintf(stderr, "diagread ping: %v\n", err)
		return exitBadInput
	}
	if *asJSON {
		out := pingJSON{Region: path, Answered: res.Answered && err == nil, Seq: res.Seq, Verdict: res.Verdict}
		if res.Answered {
			ms := float64(res.RoundTrip.Microseconds()) / 1000
			out.RoundTripMs, out.Ticks = &ms, &res.Ticks
		}
		if err != nil {
			out.Error = err.Error()
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "diagread ping: %v\n", err)
			return exitBadInput
		}
		return code
	}
	fmt.Fprintf(stdout, "region:      %s\n", path)
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "ping:        answered in %.1f ms (%d tick(s)), seq %d\n",
			float64(res.RoundTrip.Microseconds())/1000, res.Ticks, res.Seq)
	case res.Answered:
		fmt.Fprintf(stdout, "ping:        wrong answer: %v\n", err)
	default:
		fmt.Fprintf(stdout, "ping:        no answer within %s (seq %d)\n", *timeout, res.Seq)
	}
	if err != nil {
		if werr := res.Verdict.WriteText(stdout); werr != nil {
			fmt.Fprintf(stderr, "diagread ping: %v\n", werr)
			return exitBadInput
		}
	}
	return code
}
