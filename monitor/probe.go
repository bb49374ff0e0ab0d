package monitor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/qemuhook"
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
}

// runProbe runs one probe of scenario s on VM v. ctx carries the
// scenario's timeout. It returns a one-line detail (escaped) on success.
func runProbe(ctx context.Context, v *vmRuntime, s *Scenario, st *probeState) (string, error) {
	pc := s.Config.Probe
	switch pc.Kind {
	case ProbeRegion:
		return probeRegion(ctx, v)
	case ProbeSlot:
		return probeSlot(ctx, v, pc)
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
	case ProbeExec:
		out, _, err := runCommand(ctx, pc.Command, nil, 4096)
		if err != nil {
			return "", probeErr(ProbeExec, err, "%s (output %s)", pc.Command[0], hostreader.EscapeLog(string(lastLine(out))))
		}
		return "exit 0", nil
	}
	return "", probeErr(pc.Kind, nil, "unknown probe kind")
}

// waitRegionVerdict waits (bounded by ctx) for the VM's first region verdict.
func waitRegionVerdict(ctx context.Context, v *vmRuntime) (hostreader.Verdict, error) {
	for {
		if rv, ok := v.regionVerdict(); ok {
			return rv, nil
		}
		select {
		case <-ctx.Done():
			return hostreader.Verdict{}, fmt.Errorf("no region verdict yet for %s: %w", v.cfg.Region, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func probeRegion(ctx context.Context, v *vmRuntime) (string, error) {
	rv, err := waitRegionVerdict(ctx, v)
	if err != nil {
		return "", probeErr(ProbeRegion, err, "region")
	}
	switch rv.State {
	case hostreader.StateStale, hostreader.StatePanicked, hostreader.StateAbsent, hostreader.StateCorrupt:
		return "", probeErr(ProbeRegion, nil, "%s: %s", rv.State, rv.Reason)
	}
	return fmt.Sprintf("%s (ticks %d, boots %d)", rv.State, rv.Snapshot.Ticks, rv.Snapshot.Boots), nil
}

func probeSlot(ctx context.Context, v *vmRuntime, pc ProbeConfig) (string, error) {
	rv, err := waitRegionVerdict(ctx, v)
	if err != nil {
		return "", probeErr(ProbeSlot, err, "region")
	}
	idx := -1
	if pc.Index != nil {
		idx = *pc.Index
	} else {
		for i, sw := range rv.Snapshot.Slots {
			if sw.Used() && hostreader.EscapeTag(sw.Tag[:]) == pc.Tag {
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

// runCommand runs argv in its own process group; when ctx ends the whole
// group is killed (SIGKILL), so children of the command die with it. It
// returns up to max bytes of combined output (the rest is dropped and
// counted: total is the whole output's size).
func runCommand(ctx context.Context, argv []string, env []string, max int) (out []byte, total int64, err error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if env != nil {
		cmd.Env = env
	}
	buf := &capBuffer{max: max}
	cmd.Stdout, cmd.Stderr = buf, buf
	err = cmd.Run()
	out, total = buf.b, int64(len(buf.b))+buf.dropped
	// Kill stragglers of the group even when the leader exited in time.
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		return out, total, fmt.Errorf("%w (process group killed)", ctx.Err())
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, total, fmt.Errorf("exit status %d", ee.ExitCode())
		}
		return out, total, err
	}
	return out, total, nil
}

// capBuffer keeps the first max bytes written and counts the rest.
type capBuffer struct {
	b       []byte
	max     int
	dropped int64
}

func (c *capBuffer) Write(p []byte) (int, error) {
	room := c.max - len(c.b)
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		c.b = append(c.b, p[:room]...)
	}
	c.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}
