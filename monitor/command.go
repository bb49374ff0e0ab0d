package monitor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Host commands (exec probes, script diagnostics) run in their own
// process group with their combined stdout+stderr in an anonymous memory
// file (memfd) that is read after the command exits: a background child
// keeping stdout open does not hold anyone, and no goroutine copies
// output. When the command ends, is cancelled or times out, its whole
// group is killed (SIGKILL), so children of the command die with it, and
// so do stragglers left when the command itself exits. Stragglers are
// killed while the command is still an unreaped zombie, so its pid, which
// is the group id, cannot have been reused by an unrelated process group.
//
// Exec probes do not use runCommand: the scheduler starts them with
// startCommand and reaps them on its own ticks (schedule.go), so a
// command costs the monitor no goroutine hand-off and no wake-up of its
// own. The system calls on that path that cannot block are raw (they do
// not enter the Go scheduler's syscall state, which wakes its sysmon
// thread).

// command is a started host command.
type command struct {
	pid int // also the process group id
	out int // the memfd holding stdout+stderr
	mu  sync.Mutex
	// reaped is set (under mu) once the pid may be reused: no kill after it.
	reaped bool
}

// startCommand starts argv (looked up in PATH when it has no slash) in a
// new process group, stdin /dev/null, stdout and stderr a new memfd. env
// nil means the monitor's environment.
func startCommand(argv []string, env []string) (*command, error) {
	path := argv[0]
	if !strings.Contains(path, "/") {
		var err error
		if path, err = exec.LookPath(path); err != nil {
			return nil, err
		}
	}
	if env == nil {
		env = os.Environ()
	}
	name := [...]byte{'a', 'c', 'p', 'i', 'd', 'i', 'a', 'g', '-', 'e', 'x', 'e', 'c', 0}
	mfd, _, e := syscall.RawSyscall(unix.SYS_MEMFD_CREATE, uintptr(unsafe.Pointer(&name[0])), unix.MFD_CLOEXEC, 0)
	if e != 0 {
		return nil, fmt.Errorf("memfd: %w", e)
	}
	devNull := [...]byte{'/', 'd', 'e', 'v', '/', 'n', 'u', 'l', 'l', 0}
	atFDCWD := unix.AT_FDCWD
	null, _, e := syscall.RawSyscall6(syscall.SYS_OPENAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(&devNull[0])),
		syscall.O_RDONLY|syscall.O_CLOEXEC, 0, 0, 0)
	if e != 0 {
		rawClose(int(mfd))
		return nil, &os.PathError{Op: "open", Path: os.DevNull, Err: e}
	}
	pid, _, err := syscall.StartProcess(path, argv, &syscall.ProcAttr{Env: env,
		Files: []uintptr{null, mfd, mfd},
		Sys:   &syscall.SysProcAttr{Setpgid: true}})
	rawClose(int(null))
	if err != nil {
		rawClose(int(mfd))
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	return &command{pid: pid, out: int(mfd)}, nil
}

// kill sends SIGKILL to the command's process group unless the command
// has been reaped.
func (c *command) kill() {
	c.mu.Lock()
	if !c.reaped {
		syscall.Kill(-c.pid, syscall.SIGKILL) //nolint:errcheck // the group may be gone
	}
	c.mu.Unlock()
}

// exited reports whether the command has exited (it is not reaped). block
// waits for it (the thread blocks in waitid); otherwise it never blocks.
func (c *command) exited(block bool) (bool, error) {
	var info siginfoChild
	for {
		var e syscall.Errno
		if block {
			_, _, e = syscall.Syscall6(syscall.SYS_WAITID, unix.P_PID, uintptr(c.pid), uintptr(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOWAIT, 0, 0)
		} else {
			_, _, e = syscall.RawSyscall6(syscall.SYS_WAITID, unix.P_PID, uintptr(c.pid), uintptr(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, 0, 0)
		}
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return false, fmt.Errorf("waitid pid %d: %w", c.pid, e)
		}
		return info.Pid != 0, nil
	}
}

// finish, once the command has exited, kills what is left of its process
// group, reaps it, and returns how it ended and up to max bytes of its
// output (total is the whole size). It closes the memfd.
func (c *command) finish(max int) (st exitInfo, out []byte, total int64, err error) {
	c.mu.Lock()
	syscall.Kill(-c.pid, syscall.SIGKILL) //nolint:errcheck // stragglers; ESRCH when none
	c.reaped = true
	c.mu.Unlock()
	var info siginfoChild
	_, _, e := syscall.RawSyscall6(syscall.SYS_WAITID, unix.P_PID, uintptr(c.pid), uintptr(unsafe.Pointer(&info)), unix.WEXITED|unix.WNOHANG, 0, 0)
	if e != 0 {
		err = fmt.Errorf("reaping pid %d: %w", c.pid, e)
	}
	out, total = readOutput(c.out, max)
	rawClose(c.out)
	return exitInfo{code: info.Code, status: info.Status}, out, total, err
}

// abandon kills the command's group and reaps it, waiting for it to
// exit (SIGKILL: promptly).
func (c *command) abandon() {
	c.kill()
	c.exited(true) //nolint:errcheck // reaped below either way
	c.finish(0)    //nolint:errcheck // nobody wants the result
}

// runCommand runs argv (see startCommand) and waits for it; when ctx ends
// or timeout (if > 0) passes, the command's process group is killed. It
// returns up to max bytes of the combined stdout+stderr (total is the
// whole size). The waiting goroutine blocks its thread in waitid: this is
// for script diagnostics and other rare commands; the frequent exec probes
// go through the scheduler (schedule.go).
func runCommand(ctx context.Context, timeout time.Duration, argv []string, env []string, max int) (out []byte, total int64, err error) {
	c, err := startCommand(argv, env)
	if err != nil {
		return nil, 0, err
	}
	stop := context.AfterFunc(ctx, c.kill)
	var t *time.Timer
	timedOut := false
	if timeout > 0 {
		t = time.AfterFunc(timeout, func() {
			c.mu.Lock()
			timedOut = !c.reaped
			c.mu.Unlock()
			c.kill()
		})
	}
	_, werr := c.exited(true)
	stop()
	if t != nil {
		t.Stop()
	}
	st, out, total, ferr := c.finish(max)
	if werr == nil {
		werr = ferr
	}
	c.mu.Lock()
	to := timedOut
	c.mu.Unlock()
	return out, total, commandErr(ctx.Err(), to, timeout, werr, st)
}

// commandErr is a command's outcome as an error (nil: exit status 0).
// cancelled is the context's error; timedOut says the timeout killed it;
// err is a failure to wait for or reap it.
func commandErr(cancelled error, timedOut bool, timeout time.Duration, err error, st exitInfo) error {
	switch {
	case cancelled != nil:
		return fmt.Errorf("%w (process group killed)", cancelled)
	case timedOut:
		return fmt.Errorf("%w after %s (process group killed)", context.DeadlineExceeded, timeout)
	case err != nil:
		return err
	}
	return st.err()
}

// siginfoChild is the SIGCHLD layout of siginfo_t that waitid fills.
type siginfoChild struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      int32
	Pid    int32
	UID    uint32
	Status int32
	_      [128 - 28]byte
}

// exitInfo is how a child ended: waitid's si_code and si_status.
type exitInfo struct {
	code, status int32
}

// Values of si_code for SIGCHLD.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

func (e exitInfo) err() error {
	switch e.code {
	case cldExited:
		if e.status == 0 {
			return nil
		}
		return fmt.Errorf("exit status %d", e.status)
	case cldKilled, cldDumped:
		return fmt.Errorf("killed by signal %s", syscall.Signal(e.status))
	}
	return fmt.Errorf("ended with si_code %d status %d", e.code, e.status)
}

// readOutput returns up to max bytes of the memfd and its whole size.
func readOutput(fd, max int) ([]byte, int64) {
	var st syscall.Stat_t
	if _, _, e := syscall.RawSyscall(syscall.SYS_FSTAT, uintptr(fd), uintptr(unsafe.Pointer(&st)), 0); e != 0 || st.Size == 0 || max <= 0 {
		return nil, st.Size
	}
	n := min(int64(max), st.Size)
	out := make([]byte, n)
	k, _, e := syscall.RawSyscall6(syscall.SYS_PREAD64, uintptr(fd), uintptr(unsafe.Pointer(&out[0])), uintptr(n), 0, 0, 0)
	if e != 0 {
		k = 0
	}
	return out[:k], st.Size
}

// rawClose closes a descriptor of a memfd, /dev/null or a pipe, which
// never blocks.
func rawClose(fd int) {
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0) //nolint:errcheck // nothing to do about it
}
