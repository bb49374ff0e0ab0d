// Package render holds the text and JSON renderers of the CLIs (diagread,
// diagvm, diagmon): verdicts, ERST reports, run summaries and the
// supervisor's verdict stream. Guest text is escaped once, here: in text
// with hostreader.EscapeLine/EscapeLog, in JSON by the JSON encoding.
package render

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/qemuhook"
)

// FollowOptions tunes Follow.
type FollowOptions struct {
	// JSON prints one JSON object per line (verdicts, progress and the
	// summary) instead of text.
	JSON bool
	// Progress is how often a progress line is printed while the guest has
	// not been seen alive yet (default 2 s; negative: never).
	Progress time.Duration
	// Start is the time elapsed times are measured from (default: now).
	Start time.Time
}

// Follow prints every verdict of s to w as it arrives (a progress line
// every opts.Progress until the region is first seen alive), and when the
// stream ends prints the summary (WriteSummary) and returns it. If ctx
// ends first, s is closed and the summary so far is printed.
func Follow(ctx context.Context, s *qemuhook.Supervisor, w io.Writer, opts FollowOptions) (qemuhook.Summary, error) {
	if opts.Start.IsZero() {
		opts.Start = time.Now()
	}
	if opts.Progress == 0 {
		opts.Progress = 2 * time.Second
	}
	var tick <-chan time.Time
	if opts.Progress > 0 {
		t := time.NewTicker(opts.Progress)
		defer t.Stop()
		tick = t.C
	}
	enc := json.NewEncoder(w)
	state := qemuhook.State("starting")
	var werr error
	write := func(f func() error) {
		if werr == nil {
			werr = f()
		}
	}
loop:
	for {
		select {
		case <-ctx.Done():
			s.Close()
			break loop
		case v, ok := <-s.Verdicts():
			if !ok {
				break loop
			}
			if v.Source == qemuhook.SourceRegion && v.State == qemuhook.RegionState(hostreader.StateAlive) {
				tick = nil
			}
			if v.Source == qemuhook.SourceRegion {
				state = v.State
			}
			write(func() error {
				if opts.JSON {
					return enc.Encode(struct {
						Type      string           `json:"type"`
						ElapsedMs int64            `json:"elapsed_ms"`
						Verdict   qemuhook.Verdict `json:"verdict"`
					}{"verdict", time.Since(opts.Start).Milliseconds(), v})
				}
				return Elapsed(w, opts.Start, "%s", v)
			})
		case <-tick:
			write(func() error {
				el := time.Since(opts.Start)
				if opts.JSON {
					return enc.Encode(struct {
						Type      string         `json:"type"`
						ElapsedMs int64          `json:"elapsed_ms"`
						Region    qemuhook.State `json:"region"`
					}{"progress", el.Milliseconds(), state})
				}
				return Elapsed(w, opts.Start, "booting... (region %s, waiting for the first tick)", state)
			})
		}
	}
	<-s.Done()
	sum := s.Summary()
	write(func() error { return WriteSummary(w, sum, opts.JSON) })
	if werr != nil {
		return sum, fmt.Errorf("render: writing output: %w", werr)
	}
	return sum, nil
}

// Elapsed writes one line prefixed with the seconds since start, as
// "[  12.3s] ..." (the CLIs' progress and verdict lines, the demos).
func Elapsed(w io.Writer, start time.Time, format string, a ...any) error {
	_, err := fmt.Fprintf(w, "[%6.1fs] "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
	return err
}

// WriteSummary prints a run's summary: the last verdict, ticks and boots,
// how QEMU ended, and the panic evidence with the decoded kernel log's
// essential lines. With asJSON it writes one JSON object
// {"type":"summary",...}. Guest text is escaped once: in text with
// hostreader.EscapeLine, in JSON by the JSON encoding.
func WriteSummary(w io.Writer, sum qemuhook.Summary, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(struct {
			Type string `json:"type"`
			qemuhook.Summary
		}{"summary", sum})
	}
	var b strings.Builder
	b.WriteString("summary:\n")
	esc := hostreader.EscapeLine
	fmt.Fprintf(&b, "  last verdict: %s [%s] %s\n", sum.Last.State, sum.Last.Source, esc(sum.Last.Reason))
	if sum.Region != nil {
		fmt.Fprintf(&b, "  region:       %s\n", sum.Region.State)
	}
	fmt.Fprintf(&b, "  ticks:        %d\n  boots:        %d\n  verdicts:     %d\n", sum.Ticks, sum.Boots, sum.Verdicts)
	if sum.DroppedEvents > 0 {
		fmt.Fprintf(&b, "  dropped QMP events: %d\n", sum.DroppedEvents)
	}
	if sum.Exit != nil {
		how := fmt.Sprintf("exit code %d", sum.Exit.Code)
		if sum.Exit.Signal != "" {
			how = "signal " + sum.Exit.Signal
		}
		exp := "expected"
		if !sum.Exit.Expected {
			exp = "UNEXPECTED"
		}
		fmt.Fprintf(&b, "  qemu:         %s (%s)\n", how, exp)
		if sum.Exit.Cause != "" {
			fmt.Fprintf(&b, "    cause: %s\n", sum.Exit.Cause)
		}
		if !sum.Exit.Expected {
			for _, l := range sum.Exit.Stderr {
				fmt.Fprintf(&b, "    stderr: %s\n", esc(l))
			}
		}
	}
	if p := sum.Panic; p != nil {
		fmt.Fprintf(&b, "  panic:        from %s", p.Source)
		if p.PVPanic {
			b.WriteString(" (announced by pvpanic)")
		}
		if p.Reason != "" {
			fmt.Fprintf(&b, " (%s#%d, ERST records %v)", esc(p.Reason), p.Count, hexIDs(p.RecordIDs))
		}
		b.WriteString("\n")
		if p.PanicLine != "" {
			fmt.Fprintf(&b, "    %s\n", esc(p.PanicLine))
		}
		for _, l := range p.OopsLines {
			fmt.Fprintf(&b, "    %s\n", esc(l))
		}
		if lines := crashContext(p.Text, 25); len(lines) > 0 {
			b.WriteString("  kernel log from ERST (the crash):\n")
			for _, l := range lines {
				fmt.Fprintf(&b, "    %s\n", esc(l))
			}
		}
	} else {
		b.WriteString("  panic:        none\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func hexIDs(ids []uint64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%#x", id)
	}
	return out
}

// crashContext returns the start of the last crash in a kernel log, at
// most n lines with the "<level>" prefixes removed: from the last line
// hostreader.CrashLines names (a panic, BUG, Oops, GPF, ... line), or the
// line just before it that triggered it (e.g. "sysrq: Trigger a crash"),
// or the last n lines when there is none.
func crashContext(text string, n int) []string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	start := len(lines) - n
	if crash := hostreader.CrashLines(text); len(crash) > 0 {
		last := crash[len(crash)-1]
		for i := len(lines) - 1; i >= 0; i-- {
			if hostreader.StripLogPrefix(lines[i]) == last {
				start = i
				break
			}
		}
		// The lines just before often say what triggered it.
		for j := start - 1; j >= 0 && j >= start-5; j-- {
			l := hostreader.StripLogPrefix(lines[j])
			if strings.HasPrefix(l, "sysrq: Trigger a crash") || len(hostreader.CrashLines(l)) > 0 {
				start = j
			}
		}
	}
	start = max(start, 0)
	end := min(start+n, len(lines))
	out := make([]string, 0, end-start)
	for _, l := range lines[start:end] {
		// Drop the "<level>" syslog prefix, keep the timestamp.
		if len(l) > 2 && l[0] == '<' {
			if k := strings.IndexByte(l[:min(len(l), 5)], '>'); k > 0 {
				l = l[k+1:]
			}
		}
		out = append(out, l)
	}
	return out
}
