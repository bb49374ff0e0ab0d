package qemuhook

import (
	"github.com/acpidiag/acpidiag/qmp"

	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultQEMU is the QEMU binary Start uses when none is given.
const DefaultQEMU = "qemu-system-x86_64"

// Process is a QEMU process started by Start.
type Process struct {
	// Args is the full argument list QEMU was started with (without the
	// program name).
	Args []string
	// Config is the configuration it was started from.
	Config Config

	cmd    *exec.Cmd
	stderr *tailBuffer
	done   chan struct{}
	state  *os.ProcessState
	err    error
}

// ExitError describes how a QEMU process ended.
type ExitError struct {
	// State is the process state (exit status or signal).
	State *os.ProcessState
	// Stderr holds the last lines QEMU wrote to standard error.
	Stderr []string
	// Cause names the likely cause when it can be told from the host:
	// for a SIGBUS, the file-backed guest memory that was truncated,
	// removed or left without disk space (see Process.ExitCause).
	Cause string
}

func (e *ExitError) Error() string {
	s := "qemu " + e.State.String()
	if e.Cause != "" {
		s += ": " + e.Cause
	}
	if len(e.Stderr) > 0 {
		s += ": " + strings.Join(e.Stderr, " | ")
	}
	return s
}

// StartOptions tunes Start.
type StartOptions struct {
	// Binary is the QEMU program (default DefaultQEMU, looked up in PATH).
	Binary string
	// NoWait makes Start return at once instead of waiting until the
	// configured QMP and serial sockets exist.
	NoWait bool
	// SocketTimeout bounds the wait for the sockets (default 10 s).
	SocketTimeout time.Duration
	// StderrLines is how many of QEMU's last stderr lines are kept
	// (default 20).
	StderrLines int
	// KeepOnParentDeath lets QEMU outlive this process when it dies
	// abruptly (SIGKILL, a crash), so that Attach can pick the VM up. By
	// default QEMU gets the parent-death signal SIGKILL (Linux
	// PR_SET_PDEATHSIG) and dies with this process instead of running on
	// orphaned. The signal follows the OS thread that started QEMU: do not
	// call Start from a goroutine locked to a thread (runtime.LockOSThread)
	// that exits before QEMU should.
	KeepOnParentDeath bool
}

// Start validates cfg, prepares its files (Config.Prepare), removes stale
// sockets at the configured paths and starts QEMU. Unless opts.NoWait, it
// returns once the QMP and serial sockets accept connections, or with an
// error (including QEMU's stderr) if QEMU exited first. Cancelling ctx
// kills QEMU.
func Start(ctx context.Context, cfg Config, opts StartOptions) (*Process, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	args, err := cfg.Args()
	if err != nil {
		return nil, err
	}
	if err := cfg.Prepare(); err != nil {
		return nil, err
	}
	for _, s := range []string{cfg.QMPSocket, cfg.SerialSocket} {
		if s != "" {
			if err := removeStaleSocket(s); err != nil {
				return nil, err
			}
		}
	}
	bin := opts.Binary
	if bin == "" {
		bin = DefaultQEMU
	}
	lines := opts.StderrLines
	if lines <= 0 {
		lines = 20
	}
	p := &Process{Args: args, Config: cfg, stderr: newTailBuffer(lines), done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	p.cmd.Cancel = func() error { return p.cmd.Process.Kill() }
	p.cmd.WaitDelay = 5 * time.Second
	// Own process group, so a terminal's Ctrl-C reaches us, not QEMU
	// directly: we decide how QEMU ends.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !opts.KeepOnParentDeath {
		p.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemuhook: starting %s: %w", bin, err)
	}
	go func() {
		err := p.cmd.Wait()
		p.state = p.cmd.ProcessState
		p.err = err
		close(p.done)
	}()
	if opts.NoWait {
		return p, nil
	}
	to := opts.SocketTimeout
	if to <= 0 {
		to = 10 * time.Second
	}
	deadline := time.Now().Add(to)
	for _, s := range []string{cfg.QMPSocket, cfg.SerialSocket} {
		if s == "" {
			continue
		}
		for {
			if _, err := os.Stat(s); err == nil {
				break
			}
			select {
			case <-p.done:
				return nil, fmt.Errorf("qemuhook: qemu exited before creating %s: %w", s, p.ExitError())
			case <-ctx.Done():
				p.Kill()
				return nil, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				p.Kill()
				return nil, fmt.Errorf("qemuhook: qemu did not create %s within %v", s, to)
			}
		}
	}
	if cfg.QMPSocket != "" {
		// The sockets exist before QEMU creates its devices; QMP greets only
		// once the machine is built and the main loop runs. Wait for that,
		// so a QEMU that refuses its devices is reported here.
		qctx, cancel := context.WithDeadline(ctx, deadline)
		go func() {
			select {
			case <-p.done:
				cancel()
			case <-qctx.Done():
			}
		}()
		var q *qmp.Client
		var err error
		for {
			q, err = qmp.Dial(qctx, cfg.QMPSocket, qmp.Options{DialTimeout: time.Until(deadline)})
			// Between bind and listen the socket exists but refuses.
			if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || qctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err != nil {
			// A QEMU that fails during startup closes the socket just
			// before it exits: give the exit a moment to be seen.
			select {
			case <-p.done:
			case <-time.After(2 * time.Second):
			}
			if p.Exited() {
				return nil, fmt.Errorf("qemuhook: qemu exited during startup: %w", p.ExitError())
			}
			p.Kill()
			return nil, fmt.Errorf("qemuhook: qemu started but QMP did not answer: %w", err)
		}
		q.Close()
	}
	return p, nil
}

// removeStaleSocket removes a leftover unix socket; any other kind of file
// at the path is an error.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("qemuhook: %s exists and is not a socket", path)
	}
	return os.Remove(path)
}

// Pid returns QEMU's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when QEMU has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether QEMU has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for QEMU to exit (or ctx) and returns nil for exit status 0,
// else an *ExitError.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.ExitError()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ExitError returns nil while QEMU runs or after it exited with status 0,
// else an *ExitError with the exit state and the last stderr lines.
func (p *Process) ExitError() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	if p.state != nil && p.state.Success() {
		return nil
	}
	if p.state == nil {
		return fmt.Errorf("qemuhook: qemu: %w", p.err)
	}
	return &ExitError{State: p.state, Stderr: p.Stderr(), Cause: p.ExitCause()}
}

// ExitCause names the likely cause of QEMU's end when the host can tell
// it, "" otherwise (or while QEMU runs). For a death by SIGBUS, which is
// an access to a file-backed guest memory that failed, it says which of
// Config.BackingFiles was truncated or removed, or sits on a full disk.
func (p *Process) ExitCause() string {
	if !p.Exited() || p.state == nil {
		return ""
	}
	if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGBUS {
		return sigbusCause(p.Config.BackingFiles())
	}
	return ""
}

// State returns the exit state once QEMU has exited, else nil.
func (p *Process) State() *os.ProcessState {
	if !p.Exited() {
		return nil
	}
	return p.state
}

// Stderr returns the last lines QEMU wrote to stderr/stdout.
func (p *Process) Stderr() []string { return p.stderr.Lines() }

// Kill kills QEMU (SIGKILL) and waits for it to be reaped.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tailBuffer keeps the last n lines written to it.
type tailBuffer struct {
	mu    sync.Mutex
	n     int
	lines []string
	part  []byte
}

func newTailBuffer(n int) *tailBuffer { return &tailBuffer{n: n} }

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, b...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		t.add(string(bytes.TrimRight(t.part[:i], "\r")))
		t.part = t.part[i+1:]
	}
	if len(t.part) > 4096 {
		t.add(string(t.part))
		t.part = t.part[:0]
	}
	return len(b), nil
}

func (t *tailBuffer) add(s string) {
	t.lines = append(t.lines, s)
	if len(t.lines) > t.n {
		t.lines = append(t.lines[:0], t.lines[len(t.lines)-t.n:]...)
	}
}

func (t *tailBuffer) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.lines...)
	if len(t.part) > 0 {
		out = append(out, string(t.part))
	}
	return out
}
