package qemuhook

import (
	"github.com/acpidiag/acpidiag/qmp"

	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SysRqPath says how a SysRq key reaches the guest.
type SysRqPath int

// SysRq paths.
const (
	// SysRqAuto (the default) tries the keyboard and falls back to the
	// console when the keyboard path fails or the guest does not answer
	// it within SysRqOptions.FallbackAfter (no PS/2 keyboard, no keyboard
	// driver in the guest).
	SysRqAuto SysRqPath = iota
	// SysRqKeyboard sends alt+sysrq+KEY with QMP send-key (the i8042 PS/2
	// keyboard).
	SysRqKeyboard
	// SysRqConsole sends a serial BREAK on the guest's console (QMP
	// chardev-send-break) followed by the key on the same serial line: the
	// kernel's "SysRq via the console" (the console must be on that
	// port, e.g. console=ttyS0).
	SysRqConsole
)

func (p SysRqPath) String() string {
	switch p {
	case SysRqAuto:
		return "auto"
	case SysRqKeyboard:
		return "keyboard"
	case SysRqConsole:
		return "console"
	}
	return fmt.Sprintf("SysRqPath(%d)", int(p))
}

// SerialChardevID is the QEMU chardev id of the serial console that
// Config.Args wires (the BREAK of SysRqConsole goes to it by default).
const SerialChardevID = idSerial

// SysRqOptions tunes SysRq.
type SysRqOptions struct {
	// NoRaiseLogLevel skips sending SysRq-8 first. By default SysRq sends
	// alt+sysrq+8 (console loglevel 8) so the dump reaches the console; a
	// low loglevel shows only the header line (PLATFORM.md).
	NoRaiseLogLevel bool
	// AllowAny permits keys outside SafeSysRqKeys (c crashes the guest,
	// b reboots it, ...).
	AllowAny bool
	// Quiet is how long the console must stay silent after the output
	// started for the dump to be considered complete (default 500 ms).
	Quiet time.Duration
	// Timeout bounds the wait for the first output byte and the whole
	// capture when ctx has no deadline (default 10 s).
	Timeout time.Duration
	// Path chooses how the key reaches the guest (default SysRqAuto:
	// keyboard, falling back to the console).
	Path SysRqPath
	// FallbackAfter is how long SysRqAuto waits for the guest to answer
	// on the keyboard path before it tries the console (default 3 s).
	FallbackAfter time.Duration
	// Chardev is the QEMU chardev id of the guest's serial console, where
	// SysRqConsole sends the BREAK (default SerialChardevID; set it when
	// attached to a VM whose serial chardev has another id).
	Chardev string
}

// SysRqResult is what SysRqVia captured.
type SysRqResult struct {
	// Output is the console output that followed the key.
	Output []byte
	// Path is the path that delivered the key (SysRqKeyboard or
	// SysRqConsole).
	Path SysRqPath
	// KeyboardErr says why SysRqAuto fell back to the console (nil if it
	// did not).
	KeyboardErr error
}

// SafeSysRqKeys are the SysRq keys SysRq sends without
// SysRqOptions.AllowAny: t (tasks), w (blocked tasks), l (backtrace of all
// CPUs), m (memory), p (registers), q (timers), z (ftrace buffer) and the
// loglevels 0-9. None of them changes the guest's state beyond the
// loglevel.
const SafeSysRqKeys = "twlmpqz0123456789"

// errNoAnswer marks a path on which the guest did not answer in time.
var errNoAnswer = errors.New("no answer from the guest")

// SysRq sends SysRq key to the guest and returns the console output that
// follows, captured from con (the guest's serial console, which must be
// the kernel's console=). The key goes by opts.Path (default: QMP
// send-key alt+sysrq+key, falling back to a serial BREAK and the key on
// the console). The guest must allow SysRq (kernel.sysrq=1; Debian's
// default 438 lacks the dump bit). Unless opts.NoRaiseLogLevel, SysRq 8 is
// sent first.
func SysRq(ctx context.Context, q *qmp.Client, con *Console, key byte, opts SysRqOptions) ([]byte, error) {
	r, err := SysRqVia(ctx, q, con, key, opts)
	return r.Output, err
}

// SysRqVia is SysRq that also says which path delivered the key and, after
// a fallback, why the keyboard path failed.
func SysRqVia(ctx context.Context, q *qmp.Client, con *Console, key byte, opts SysRqOptions) (SysRqResult, error) {
	if !(key >= 'a' && key <= 'z' || key >= '0' && key <= '9') {
		return SysRqResult{}, fmt.Errorf("qemuhook: sysrq: key %q is not a SysRq key (a-z, 0-9)", key)
	}
	if !opts.AllowAny && !strings.ContainsRune(SafeSysRqKeys, rune(key)) {
		return SysRqResult{}, fmt.Errorf("qemuhook: sysrq: key %q changes the guest's state; set SysRqOptions.AllowAny to send it", key)
	}
	if con == nil {
		return SysRqResult{}, errors.New("qemuhook: sysrq: no console to capture the output from (Config.SerialSocket)")
	}
	if opts.Quiet <= 0 {
		opts.Quiet = 500 * time.Millisecond
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.FallbackAfter <= 0 {
		opts.FallbackAfter = 3 * time.Second
	}
	if opts.Chardev == "" {
		opts.Chardev = SerialChardevID
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	keyboard := func(ctx context.Context, k byte) error { return SendSysRqKey(ctx, q, k) }
	console := func(ctx context.Context, k byte) error { return SendSysRqBreak(ctx, q, con, opts.Chardev, k) }
	switch opts.Path {
	case SysRqKeyboard:
		out, err := sysrqOn(ctx, con, key, opts, keyboard, 0)
		return SysRqResult{Output: out, Path: SysRqKeyboard}, err
	case SysRqConsole:
		out, err := sysrqOn(ctx, con, key, opts, console, 0)
		return SysRqResult{Output: out, Path: SysRqConsole}, err
	case SysRqAuto:
	default:
		return SysRqResult{}, fmt.Errorf("qemuhook: sysrq: unknown path %v", opts.Path)
	}
	out, kerr := sysrqOn(ctx, con, key, opts, keyboard, opts.FallbackAfter)
	if kerr == nil {
		return SysRqResult{Output: out, Path: SysRqKeyboard}, nil
	}
	if ctx.Err() != nil {
		return SysRqResult{Output: out, Path: SysRqKeyboard}, kerr
	}
	out, err := sysrqOn(ctx, con, key, opts, console, 0)
	if err != nil {
		err = fmt.Errorf("%w (the keyboard path failed first: %w)", err, kerr)
	}
	return SysRqResult{Output: out, Path: SysRqConsole, KeyboardErr: kerr}, err
}

// sysrqOn sends the key (after SysRq 8 unless opts.NoRaiseLogLevel) with
// send and captures the output. With answer > 0, a guest that shows
// nothing within answer of a key is an error wrapping errNoAnswer.
func sysrqOn(ctx context.Context, con *Console, key byte, opts SysRqOptions, send func(context.Context, byte) error, answer time.Duration) ([]byte, error) {
	bounded := func() (context.Context, context.CancelFunc) {
		if answer > 0 {
			return context.WithTimeout(ctx, answer)
		}
		return ctx, func() {}
	}
	if !opts.NoRaiseLogLevel && key != '8' {
		mark := con.Mark()
		if err := send(ctx, '8'); err != nil {
			return nil, err
		}
		// "sysrq: Changing Loglevel" / "Loglevel set to 8"
		wctx, cancel := bounded()
		_, err := con.WaitFor(wctx, mark, "Loglevel set to 8")
		cancel()
		if err != nil {
			if answer > 0 && ctx.Err() == nil {
				err = fmt.Errorf("%w within %v: %w", errNoAnswer, answer, err)
			}
			return nil, fmt.Errorf("qemuhook: sysrq: raising the console loglevel: %w (is kernel.sysrq enabled and the console on this serial port?)", err)
		}
	}
	mark := con.Mark()
	if err := send(ctx, key); err != nil {
		return nil, err
	}
	if answer > 0 && opts.NoRaiseLogLevel {
		wctx, cancel := context.WithTimeout(ctx, answer)
		err := con.waitOutput(wctx, mark)
		cancel()
		if err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("qemuhook: sysrq %c: %w within %v: %w", key, errNoAnswer, answer, err)
		}
	}
	out, err := con.WaitQuiet(ctx, mark, opts.Quiet)
	if err != nil {
		return out, fmt.Errorf("qemuhook: sysrq %c: %w", key, err)
	}
	return out, nil
}

// SendSysRqKey sends alt+sysrq+key with QMP send-key, without waiting for
// any output.
func SendSysRqKey(ctx context.Context, q *qmp.Client, key byte) error {
	type kv struct {
		Type string `json:"type"`
		Data string `json:"data"`
	}
	args := map[string]any{"keys": []kv{{"qcode", "alt"}, {"qcode", "sysrq"}, {"qcode", string(rune(key))}}}
	if err := q.Execute(ctx, "send-key", args, nil); err != nil {
		return fmt.Errorf("qemuhook: sysrq %c: %w", key, err)
	}
	return nil
}

// breakToKey is how long SendSysRqBreak waits between the BREAK and the
// key, so the guest's serial driver has taken the break (it then treats
// the next character within 5 s as a SysRq key) before the key arrives.
const breakToKey = 100 * time.Millisecond

// SendSysRqBreak sends a serial BREAK on chardev (QMP chardev-send-break;
// SerialChardevID for a VM wired by Config.Args) and then key on the
// serial console con, without waiting for any output: the kernel's SysRq
// through the console.
func SendSysRqBreak(ctx context.Context, q *qmp.Client, con *Console, chardev string, key byte) error {
	if con == nil {
		return errors.New("qemuhook: sysrq: no console to send the key on")
	}
	if err := q.Execute(ctx, "chardev-send-break", map[string]any{"id": chardev}, nil); err != nil {
		return fmt.Errorf("qemuhook: sysrq %c: serial break on %q: %w", key, chardev, err)
	}
	select {
	case <-time.After(breakToKey):
	case <-ctx.Done():
		return fmt.Errorf("qemuhook: sysrq %c: %w", key, ctx.Err())
	}
	if _, err := con.Write([]byte{key}); err != nil {
		return fmt.Errorf("qemuhook: sysrq %c: writing the key to the console: %w", key, err)
	}
	return nil
}

// InjectNMI injects a non-maskable interrupt into every vCPU (QMP
// inject-nmi). With guest unknown_nmi_panic=1 it panics even a livelocked
// guest.
func InjectNMI(ctx context.Context, q *qmp.Client) error {
	if err := q.Execute(ctx, "inject-nmi", nil, nil); err != nil {
		return fmt.Errorf("qemuhook: inject-nmi: %w", err)
	}
	return nil
}

// Status is QMP query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"` // "running", "paused", "prelaunch", "guest-panicked", "shutdown", ...
}

// QueryStatus returns the VM's run state.
func QueryStatus(ctx context.Context, q *qmp.Client) (Status, error) {
	var s Status
	if err := q.Execute(ctx, "query-status", nil, &s); err != nil {
		return s, fmt.Errorf("qemuhook: query-status: %w", err)
	}
	return s, nil
}

// CPURegisters is the register dump of one vCPU.
type CPURegisters struct {
	// Index is the vCPU index (the N of "CPU#N").
	Index int `json:"index"`
	// Text is QEMU's dump of the vCPU (HMP info registers format).
	Text string `json:"text"`
	// IP is the instruction pointer (RIP in 64-bit mode, EIP otherwise),
	// when the dump holds one.
	IP uint64 `json:"ip,omitempty"`
	// HasIP says whether IP was found.
	HasIP bool `json:"has_ip"`
}

// RegistersError reports HMP "info registers" output that cannot be split
// into vCPUs. Offset is the byte offset in the output.
type RegistersError struct {
	Offset int
	Msg    string
}

func (e *RegistersError) Error() string {
	return fmt.Sprintf("qemuhook: info registers output at byte %d: %s", e.Offset, e.Msg)
}

// Registers returns the registers of every vCPU (HMP "info registers -a"
// through human-monitor-command). It works while the guest is livelocked.
func Registers(ctx context.Context, q *qmp.Client) ([]CPURegisters, error) {
	out, err := q.HMP(ctx, "info registers -a")
	if err != nil {
		return nil, fmt.Errorf("qemuhook: info registers: %w", err)
	}
	return ParseRegisters(out)
}

// maxCPUs bounds ParseRegisters (QEMU's x86 maximum is 1024 on q35 with
// kernel-irqchip; 4096 leaves room).
const maxCPUs = 4096

// ParseRegisters splits the output of HMP "info registers -a" into vCPUs
// ("CPU#N" header lines, QEMU 7.2 format) and extracts the instruction pointer. Every vCPU
// index must be present once.
func ParseRegisters(out string) ([]CPURegisters, error) {
	var regs []CPURegisters
	seen := map[int]bool{}
	off, textStart := 0, 0
	finish := func(end int) {
		if len(regs) > 0 {
			regs[len(regs)-1].Text = out[textStart:end]
		}
	}
	for off < len(out) {
		line := out[off:]
		if i := strings.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1]
		}
		t := strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(t, "CPU#"):
			rest := strings.TrimPrefix(t, "CPU#")
			end := 0
			for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
				end++
			}
			n, err := strconv.Atoi(rest[:end])
			if err != nil || end > 5 || n >= maxCPUs {
				return nil, &RegistersError{Offset: off, Msg: fmt.Sprintf("bad vCPU header %.40q", t)}
			}
			if seen[n] {
				return nil, &RegistersError{Offset: off, Msg: fmt.Sprintf("vCPU %d appears twice", n)}
			}
			seen[n] = true
			finish(off)
			regs = append(regs, CPURegisters{Index: n})
			textStart = off + len(line)
		case len(regs) == 0:
			if strings.TrimSpace(t) != "" {
				return nil, &RegistersError{Offset: off, Msg: fmt.Sprintf("text before the first CPU# header: %.40q", t)}
			}
		default:
			r := &regs[len(regs)-1]
			if !r.HasIP {
				for _, name := range []string{"RIP=", "EIP="} {
					i := strings.Index(t, name)
					if i < 0 {
						continue
					}
					h := t[i+4:]
					if j := strings.IndexByte(h, ' '); j >= 0 {
						h = h[:j]
					}
					if v, err := strconv.ParseUint(h, 16, 64); err == nil {
						r.IP, r.HasIP = v, true
						break
					}
				}
			}
		}
		off += len(line)
	}
	if len(regs) == 0 {
		return nil, &RegistersError{Offset: 0, Msg: "no CPU# header"}
	}
	finish(len(out))
	return regs, nil
}

// MaxReadMemory is the largest range ReadMemory returns.
const MaxReadMemory = 64 << 20

// ReadMemory returns size bytes of guest-physical memory from addr (QMP
// pmemsave into a temporary file that is removed afterwards). size is at
// most MaxReadMemory. QEMU writes the file, so QEMU and the caller must
// share a file system (they do for a local VM).
func ReadMemory(ctx context.Context, q *qmp.Client, addr, size uint64) ([]byte, error) {
	if size == 0 || size > MaxReadMemory {
		return nil, fmt.Errorf("qemuhook: read memory: size %d out of range 1..%d", size, MaxReadMemory)
	}
	if addr+size < addr {
		return nil, fmt.Errorf("qemuhook: read memory: range %#x+%#x wraps", addr, size)
	}
	dir, err := os.MkdirTemp("", "acpidiag-pmem")
	if err != nil {
		return nil, fmt.Errorf("qemuhook: read memory: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "mem")
	args := map[string]any{"val": addr, "size": size, "filename": path}
	if err := q.Execute(ctx, "pmemsave", args, nil); err != nil {
		return nil, fmt.Errorf("qemuhook: read memory %#x+%#x: %w", addr, size, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("qemuhook: read memory: %w", err)
	}
	if uint64(len(b)) != size {
		return nil, fmt.Errorf("qemuhook: read memory %#x+%#x: pmemsave wrote %d bytes", addr, size, len(b))
	}
	return b, nil
}

// DumpFormat is the dump-guest-memory format.
type DumpFormat string

// Dump formats (QEMU 7.2).
const (
	DumpELF         DumpFormat = "elf"
	DumpKdumpZlib   DumpFormat = "kdump-zlib"
	DumpKdumpSnappy DumpFormat = "kdump-snappy"
)

// DumpGuestMemory writes the whole guest memory to path (QMP
// dump-guest-memory, detached, polled with query-dump until done, so QMP
// stays usable meanwhile). format "" means ELF. The VM is paused by QEMU
// during the dump.
func DumpGuestMemory(ctx context.Context, q *qmp.Client, path string, format DumpFormat) error {
	if format == "" {
		format = DumpELF
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("qemuhook: dump-guest-memory: %w", err)
	}
	args := map[string]any{"paging": false, "protocol": "file:" + abs, "detach": true, "format": string(format)}
	if err := q.Execute(ctx, "dump-guest-memory", args, nil); err != nil {
		return fmt.Errorf("qemuhook: dump-guest-memory: %w", err)
	}
	for {
		var st struct {
			Status    string `json:"status"`
			Completed int64  `json:"completed"`
			Total     int64  `json:"total"`
		}
		if err := q.Execute(ctx, "query-dump", nil, &st); err != nil {
			return fmt.Errorf("qemuhook: query-dump: %w", err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed":
			return fmt.Errorf("qemuhook: dump-guest-memory to %s failed", abs)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("qemuhook: dump-guest-memory: %d/%d bytes: %w", st.Completed, st.Total, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
