package monitor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/acpidiag/acpidiag/qmp"
)

// The console loglevel around SysRq captures. SysRq 8 raises it so a
// dump reaches the console; afterwards it is set back with SysRq 0-9. The
// host cannot read the guest's current level (that needs an agent in the
// guest), so "back" is, in this order: limits.restore_loglevel when it is
// configured; else the level the guest booted with, when QEMU was started
// with -append and that kernel command line sets it (loglevel=N, quiet,
// debug); else DefaultRestoreLogLevel (4, a quiet boot's level). A level
// changed inside the guest after boot (dmesg -n, /proc/sys/kernel/printk)
// is not known and not restored. Every bundle with a SysRq capture records
// the level restored and where it came from (manifest "loglevel").

// ManifestLogLevel is what a bundle's SysRq captures did to the guest's
// console loglevel.
type ManifestLogLevel struct {
	// Raised is the level set for the captures (8).
	Raised int `json:"raised"`
	// Restored is the level set afterwards (SysRq 0-9).
	Restored int `json:"restored"`
	// From says where Restored came from: "limits.restore_loglevel",
	// "qemu -append loglevel=N" (or quiet, debug), or "default".
	From string `json:"from"`
	// Error is set when the level could not be set back.
	Error string `json:"error,omitempty"`
}

// BootLogLevel returns the console loglevel a Linux guest booted with,
// from QEMU's command line (argv): the last of loglevel=N, quiet (4) and
// debug (10) in the -append kernel command line, before any "--" (what
// follows goes to init), as the kernel applies them. word is the word
// that set it. ok is false when there is no -append or it sets none of
// them: the guest kernel's built-in default applies, which the host cannot
// know.
func BootLogLevel(argv []string) (level int, word string, ok bool) {
	var line string
	found := false
	for i, a := range argv {
		switch {
		case (a == "-append" || a == "--append") && i+1 < len(argv):
			line, found = argv[i+1], true // QEMU takes the last -append
		case strings.HasPrefix(a, "-append=") || strings.HasPrefix(a, "--append="):
			_, line, _ = strings.Cut(a, "=")
			found = true
		}
	}
	if !found {
		return 0, "", false
	}
	for _, w := range strings.Fields(line) {
		if w == "--" {
			break
		}
		switch {
		case w == "quiet":
			level, word, ok = 4, w, true
		case w == "debug":
			level, word, ok = 10, w, true
		case strings.HasPrefix(w, "loglevel="):
			if n, err := strconv.Atoi(strings.TrimPrefix(w, "loglevel=")); err == nil && n >= 0 {
				level, word, ok = n, w, true
			}
		}
	}
	return level, word, ok
}

// procBootLogLevel reads /proc/PID/cmdline and applies BootLogLevel.
func procBootLogLevel(proc string, pid int) (level int, word string, ok bool) {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return 0, "", false
	}
	return BootLogLevel(strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"))
}

// restoreLevel chooses the level SysRq captures are followed by (see the
// comment at the top of this file) and says where it came from.
func restoreLevel(ctx context.Context, l Limits, q *qmp.Client, proc string) (int, string) {
	if l.RestoreLogLevel != nil {
		return *l.RestoreLogLevel, "limits.restore_loglevel"
	}
	if q != nil {
		if pid, err := qemuPID(ctx, q, proc); err == nil && pid > 0 {
			if n, w, ok := procBootLogLevel(proc, pid); ok {
				return min(n, 9), "qemu -append " + w // SysRq 9 is the highest; 8 and up print every level
			}
		}
	}
	return DefaultRestoreLogLevel, "default"
}

// qemuPID is QEMU's process id: the thread group of its first vCPU thread
// (query-cpus-fast), in the proc file system proc.
func qemuPID(ctx context.Context, q *qmp.Client, proc string) (int, error) {
	var cpus []struct {
		ThreadID int `json:"thread-id"`
	}
	if err := q.Execute(ctx, "query-cpus-fast", nil, &cpus); err != nil {
		return 0, err
	}
	if len(cpus) == 0 {
		return 0, fmt.Errorf("query-cpus-fast: no vCPU")
	}
	return tgidOf(proc, cpus[0].ThreadID)
}
