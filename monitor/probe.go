package monitor

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/metrics"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/region"
)

// ProbeError is a probe's failure. Kind is the probe kind.
type ProbeError struct {
	Kind string
	Msg  string
	Err  error
}

func (e *ProbeError) Error() string {
	s := e.Kind + " probe: " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ProbeError) Unwrap() error { return e.Err }

func probeErr(kind string, err error, format string, a ...any) error {
	return &ProbeError{Kind: kind, Msg: fmt.Sprintf(format, a...), Err: err}
}

// probeState is what a probe remembers between runs of one binding.
type probeState struct {
	diskCounter, diskStamp uint64
	diskSeen               bool
	balloon                *balloonProbe
}

// balloonProbe is the balloon probe's memory: the device's QOM path, once
// found and polling enabled, and the stall tracker.
type balloonProbe struct {
	path    string
	tracker metrics.BalloonStallTracker
}

// balloonMaxAge is a balloon probe's max_age (checked by Check).
func balloonMaxAge(pc ProbeConfig) time.Duration {
	if d, err := time.ParseDuration(pc.MaxAge); err == nil && d > 0 {
		return d
	}
	return DefaultBalloonMaxAge
}

// balloonPoll is the polling interval the balloon probe sets: max_age/5,
// between 1 s and 3 s (the metrics pipeline polls every sample
// interval/5, 3 s at LAD's 15 s; the faster of the two is kept so neither
// sees stale statistics).
func balloonPoll(maxAge time.Duration) time.Duration {
	return min(3*time.Second, max(time.Second, (maxAge/5).Truncate(time.Second)))
}

// probeBalloon finds the VM's virtio-balloon device (once), has QEMU poll
// its statistics every max_age/5, and fails when last-update has not
// advanced for max_age. The polling interval is QEMU's (one per device),
// shared with the metrics pipeline.
func probeBalloon(ctx context.Context, v *vmRuntime, pc ProbeConfig, st *probeState) (string, error) {
	q := v.qmp()
	if q == nil {
		return "", probeErr(ProbeBalloon, nil, "no QMP connection to %s", v.cfg.QMP)
	}
	maxAge := balloonMaxAge(pc)
	if st.balloon == nil {
		path, found, err := metrics.FindBalloon(ctx, q)
		if err != nil {
			return "", probeErr(ProbeBalloon, err, "looking for the balloon device")
		}
		if !found {
			return "", probeErr(ProbeBalloon, nil, "the VM has no virtio-balloon device (add -device virtio-balloon-pci)")
		}
		if err := metrics.EnableBalloonStats(ctx, q, path, balloonPoll(maxAge)); err != nil {
			return "", probeErr(ProbeBalloon, err, "enabling statistics polling")
		}
		st.balloon = &balloonProbe{path: path, tracker: metrics.BalloonStallTracker{MaxAge: maxAge}}
	}
	st.balloon.tracker.MaxAge = maxAge
	d, err := st.balloon.tracker.Probe(ctx, q, st.balloon.path, time.Now())
	if err != nil {
		return "", probeErr(ProbeBalloon, err, "%s", st.balloon.path)
	}
	return d, nil
}

// runProbe runs one probe of scenario s on VM v. ctx carries the
// scenario's timeout. It returns a one-line detail (escaped) on success.
//
// Exec probes get the timeout themselves (timeout > 0: their ctx has none,
// which saves a timer context per run); the others get it in ctx.
func runProbe(ctx context.Context, timeout time.Duration, v *vmRuntime, s *Scenario, st *probeState) (string, error) {
	pc := s.Config.Probe
	switch pc.Kind {
	case ProbeRegion:
		return probeRegion(v)
	case ProbeSlot:
		return probeSlot(v, pc)
	case ProbeConsole:
		return probeConsole(ctx, v, pc.Send, s.Expect)
	case ProbeTCP:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", pc.Address)
		if err != nil {
			return "", probeErr(ProbeTCP, err, "connect %s", pc.Address)
		}
		c.Close()
		return "connected to " + pc.Address, nil
	case ProbeHTTP:
		return probeHTTP(ctx, pc)
	case ProbeDisk:
		return probeDisk(pc, st)
	case ProbeQMP:
		q := v.qmp()
		if q == nil {
			return "", probeErr(ProbeQMP, nil, "no QMP connection to %s", v.cfg.QMP)
		}
		stt, err := qemuhook.QueryStatus(ctx, q)
		if err != nil {
			return "", probeErr(ProbeQMP, err, "query-status")
		}
		if stt.Status != "running" {
			return "", probeErr(ProbeQMP, nil, "status %q, want running", stt.Status)
		}
		return "running", nil
	case ProbeBalloon:
		return probeBalloon(ctx, v, pc, st)
	case ProbeExec: // the scheduler runs exec probes itself (startExec); this is for direct calls
		out, _, err := runCommand(ctx, timeout, pc.Command, nil, execOutputMax)
		return execResult(pc, out, err)
	}
	return "", probeErr(pc.Kind, nil, "unknown probe kind")
}

// execOutputMax is how much of an exec probe's output is kept (its last
// line goes into the failure).
const execOutputMax = 4096

// execResult is an exec probe's outcome from its command's output and
// error.
func execResult(pc ProbeConfig, out []byte, err error) (string, error) {
	if err != nil {
		return "", probeErr(ProbeExec, err, "%s (output %s)", pc.Command[0], hostreader.EscapeLog(string(lastLine(out))))
	}
	return "exit 0", nil
}

// currentRegionVerdict returns the VM's latest region verdict; none yet
// (file missing, QEMU not attached yet) is a failure.
func currentRegionVerdict(v *vmRuntime) (hostreader.Verdict, error) {
	if rv, ok := v.regionVerdict(); ok {
		return rv, nil
	}
	return hostreader.Verdict{}, fmt.Errorf("no region verdict yet for %s", v.cfg.Region)
}

func probeRegion(v *vmRuntime) (string, error) {
	rv, err := currentRegionVerdict(v)
	if err != nil {
		return "", probeErr(ProbeRegion, err, "region")
	}
	switch rv.State {
	case hostreader.StateStale, hostreader.StatePanicked, hostreader.StateAbsent, hostreader.StateCorrupt:
		return "", probeErr(ProbeRegion, nil, "%s: %s", rv.State, rv.Reason)
	}
	return fmt.Sprintf("%s (ticks %d, boots %d)", rv.State, rv.Snapshot.Ticks, rv.Snapshot.Boots), nil
}

func probeSlot(v *vmRuntime, pc ProbeConfig) (string, error) {
	rv, err := currentRegionVerdict(v)
	if err != nil {
		return "", probeErr(ProbeSlot, err, "region")
	}
	idx := -1
	if pc.Index != nil {
		idx = *pc.Index
	} else {
		var want [region.SlotTagLen]byte
		copy(want[:], pc.Tag)
		for i, sw := range rv.Snapshot.Slots {
			if sw.Tag == want && sw.Used() {
				idx = i
				break
			}
		}
		if idx < 0 {
			return "", probeErr(ProbeSlot, nil, "no slot tagged %q", pc.Tag)
		}
	}
	ss := rv.Slots[idx]
	switch ss.State {
	case hostreader.SlotStale:
		return "", probeErr(ProbeSlot, nil, "slot %d stale (beat %d, last moved %s ago, period %s)",
			idx, rv.Snapshot.Slots[idx].Beat, ss.Age.Round(time.Millisecond), ss.Period)
	case hostreader.SlotUnused:
		return "", probeErr(ProbeSlot, nil, "slot %d unused", idx)
	}
	return fmt.Sprintf("slot %d %s (beat %d)", idx, ss.State, rv.Snapshot.Slots[idx].Beat), nil
}

// lineKill is the terminal's kill-line character (^U, VKILL in canonical
// mode): it erases a partially typed line.
const lineKill = "\x15"

// probeConsole types line into the VM's serial console and waits until
// the output that follows matches expect. The console is shared: the
// probe marks the stream position before typing and looks only at what
// follows. The line goes out in one write with its newline; if the write
// is cut short (timeout, error) a kill-line (^U) follows so no half-typed
// input stays behind.
func probeConsole(ctx context.Context, v *vmRuntime, line string, expect *regexp.Regexp) (string, error) {
	con := v.console()
	if con == nil {
		return "", probeErr(ProbeConsole, nil, "no console connection to %s", v.cfg.Serial)
	}
	v.conMu.Lock()
	defer v.conMu.Unlock()
	mark := con.Mark()
	if err := writeLine(ctx, con, line); err != nil {
		return "", probeErr(ProbeConsole, err, "typing %q", line)
	}
	out, err := waitMatch(ctx, con, mark, expect)
	if err != nil {
		return "", probeErr(ProbeConsole, err, "%q not matched after %q (output %s)", expect.String(), line,
			hostreader.EscapeLog(string(lastLine(out))))
	}
	return hostreader.EscapeLog(string(out)), nil
}

// writeLine writes line+"\n" in one write bounded by ctx; on a short write
// it sends a kill-line.
func writeLine(ctx context.Context, con *qemuhook.Console, line string) error {
	type res struct {
		n   int
		err error
	}
	buf := []byte(line + "\n")
	ch := make(chan res, 1)
	go func() {
		n, err := con.Write(buf)
		ch <- res{n, err}
	}()
	select {
	case r := <-ch:
		if r.n < len(buf) {
			go con.Write([]byte(lineKill)) //nolint:errcheck // best effort after a failed write
			if r.err == nil {
				r.err = io.ErrShortWrite
			}
			return r.err
		}
		return nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.n < len(buf) {
				con.Write([]byte(lineKill)) //nolint:errcheck // best effort
			}
		}()
		return ctx.Err()
	}
}

// waitMatch polls the console output after mark until expect matches.
func waitMatch(ctx context.Context, con *qemuhook.Console, mark int64, expect *regexp.Regexp) ([]byte, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		out, _ := con.Since(mark)
		if loc := expect.FindIndex(out); loc != nil {
			end := bytes.IndexByte(out[loc[1]:], '\n')
			if end < 0 {
				end = len(out) - loc[1]
			}
			start := bytes.LastIndexByte(out[:loc[0]], '\n') + 1
			return bytes.TrimRight(out[start:loc[1]+end], "\r"), nil
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-con.Done():
			return out, qemuhook.ErrConsoleClosed
		case <-t.C:
		}
	}
}

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\r\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 200 {
		b = b[len(b)-200:]
	}
	return b
}

func probeHTTP(ctx context.Context, pc ProbeConfig) (string, error) {
	want := pc.Status
	if want == 0 {
		want = http.StatusOK
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pc.URL, nil)
	if err != nil {
		return "", probeErr(ProbeHTTP, err, "request")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", probeErr(ProbeHTTP, err, "GET %s", pc.URL)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // drained for reuse only
	resp.Body.Close()
	if resp.StatusCode != want {
		return "", probeErr(ProbeHTTP, nil, "GET %s: status %d, want %d", pc.URL, resp.StatusCode, want)
	}
	return fmt.Sprintf("status %d", resp.StatusCode), nil
}

// DiskRecordSize is the size of the disk probe's record: a little-endian
// uint64 counter followed by a little-endian uint64 timestamp, both written
// by the guest at the configured offset of a raw disk image.
const DiskRecordSize = 16

// probeDisk reads the disk record and fails when neither word moved since
// the previous run. The first run only takes the baseline.
func probeDisk(pc ProbeConfig, st *probeState) (string, error) {
	f, err := os.Open(pc.Path)
	if err != nil {
		return "", probeErr(ProbeDisk, err, "open")
	}
	defer f.Close()
	var b [DiskRecordSize]byte
	if _, err := f.ReadAt(b[:], pc.Offset); err != nil {
		return "", probeErr(ProbeDisk, err, "read %d bytes at offset %d", DiskRecordSize, pc.Offset)
	}
	counter, stamp := binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
	prevC, prevS, seen := st.diskCounter, st.diskStamp, st.diskSeen
	st.diskCounter, st.diskStamp, st.diskSeen = counter, stamp, true
	if !seen {
		return fmt.Sprintf("baseline counter %d stamp %d", counter, stamp), nil
	}
	if counter == prevC && stamp == prevS {
		return "", probeErr(ProbeDisk, nil, "counter %d and stamp %d did not advance", counter, stamp)
	}
	return fmt.Sprintf("counter %d stamp %d", counter, stamp), nil
}
