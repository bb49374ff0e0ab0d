// Package testguest is acpidiag's bundled test guest: a Debian Linux kernel
// (fetched and cached by scripts/fetch-kernel.sh, found by Kernel) and an
// initramfs (built by Build) whose /init is the small Go program in
// internal/testguest/init. The guest loads the pvpanic modules, writes an
// application heartbeat into the diagnostic region through the ivshmem BAR,
// and then stays alive, panics, livelocks every CPU, reboots, powers off or
// hangs only its userspace, as its kernel command line (BootArgs) says.
//
// End-to-end tests and `diagvm demo` boot it under QEMU. It lives under
// internal/ rather than fixtures/ because the demo, a non-test program, needs
// it. docs/testguest.md describes the guest's options and console lines.
package testguest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Guest modes, the values of the acpidiag.mode kernel option.
const (
	// ModeAlive keeps the guest alive with its application heartbeat.
	ModeAlive = "alive"
	// ModePanic panics the kernel (echo c > /proc/sysrq-trigger) after the delay.
	ModePanic = "panic"
	// ModeOops loads the oops-on-load module (KernelFiles.OopsModule, at
	// /modules/extra/oops.ko in the initramfs): a real NULL-pointer oops. A
	// stock Debian kernel has no userspace oops trigger, so without the
	// module the guest says so and stays alive. Add "oops=panic" to the
	// command line to turn the oops into a panic.
	ModeOops = "oops"
	// ModeLivelock takes every CPU with an unthrottled SCHED_FIFO 99 busy
	// loop (sched_rt_runtime_us=-1): kernel work, and so the AML tick, stops.
	ModeLivelock = "livelock"
	// ModeReboot restarts the guest (reboot(2), LINUX_REBOOT_CMD_RESTART).
	// With QEMU's -no-reboot, QEMU exits instead.
	ModeReboot = "reboot"
	// ModePoweroff powers the guest off cleanly (LINUX_REBOOT_CMD_POWER_OFF).
	ModePoweroff = "poweroff"
	// ModeUhang hangs only userspace: the application heartbeat stops and
	// normal-priority busy loops run on every CPU; the kernel, and so the AML
	// tick, keeps running.
	ModeUhang = "uhang"
	// ModeSpin measures the tick's guest CPU cost from inside the guest: a
	// CPU-bound loop with the thermal zone's polling switched on and off in
	// turn, then timed reads of the zone's temp (runs _TMP) against its type
	// (see init/spin.go; used by qemuhook's TestE2ETickCPUCost).
	ModeSpin = "spin"
	// ModeOOM exhausts the guest's memory: a child process (oom_score_adj
	// 1000) allocates and touches memory until the kernel's OOM killer
	// kills it ("Out of memory: Killed process"); the guest lives on.
	ModeOOM = "oom"
	// ModeDState blocks a task in the kernel in D state for good (a
	// process whose vfork child never execs: its thread waits in
	// wait_for_vfork_done); SysRq w shows it. The guest lives on. The
	// kernel's hung-task detector ignores this wait (it is killable, not
	// TASK_UNINTERRUPTIBLE): for its report use ModeHungTask. This mode
	// needs no test module.
	ModeDState = "dstate"
	// ModeHungTask blocks a task in TASK_UNINTERRUPTIBLE for
	// acpidiag.duration (Duration; default 5m): a child process named
	// "acpidiag-hang" loads the test module (KernelFiles.OopsModule) with
	// mode=hang, whose init sleeps uninterruptibly. The guest sets
	// kernel.hung_task_timeout_secs=2 and console loglevel 7, so the
	// kernel prints "INFO: task acpidiag-hang:PID blocked for more than 2
	// seconds." with the task's stack (in acpidiag_hang) on the console;
	// SysRq w lists it too. PID 1, its shell and the tick go on. Without
	// the module (or with one built from an older source) the guest says
	// so and stays alive.
	ModeHungTask = "hungtask"
	// ModeSoftLockup spins a CPU with preemption disabled for
	// acpidiag.duration (default 20s): a child process named
	// "acpidiag-spin" loads the test module with mode=softlockup. The
	// guest sets kernel.watchdog_thresh=1 and console loglevel 7, so after
	// 2 s the kernel prints "watchdog: BUG: soft lockup - CPU#N stuck for
	// Ns! [acpidiag-spin:PID]" with the registers (RIP in the module's
	// delay loop) and the trace. On a 1-vCPU guest everything else, the
	// AML tick included, stops meanwhile; afterwards the guest goes on.
	ModeSoftLockup = "softlockup"
	// ModeRCUStall holds a grace period back for acpidiag.duration
	// (default 20s): a child process named "acpidiag-rcu" loads the test
	// module with mode=rcustall, whose init takes rcu_read_lock, asks for
	// a grace period and busy-waits yielding the CPU. The guest sets
	// rcupdate.rcu_cpu_stall_timeout=3 and console loglevel 7, so after
	// 3 s the kernel prints "rcu: INFO: rcu_preempt detected stalls on
	// CPUs/tasks:" naming the task (P<pid>) with its stack (in
	// acpidiag_rcustall). The rest of the guest, the AML tick included,
	// goes on. (A hard lockup, the other cause of RCU stalls, cannot be
	// made real here: its detector needs a PMU NMI that TCG lacks.)
	ModeRCUStall = "rcustall"
	// ModeHardLockup spins a CPU with interrupts disabled for
	// acpidiag.duration (default 20s): a child process named
	// "acpidiag-irqoff" loads the test module with mode=hardlockup. The
	// kernel's hard lockup detector needs a PMU NMI that QEMU's TCG does
	// not provide, so the guest says nothing meanwhile: on a 1-vCPU guest
	// everything stops, SysRq gets no answer, and the host sees the vCPU
	// busy with its registers in kernel mode and IF clear. Afterwards
	// the guest goes on (and may report the soft lockup and RCU stall
	// late).
	ModeHardLockup = "hardlockup"
)

// Duration returns a BootArgs extra word setting how long ModeHungTask,
// ModeSoftLockup, ModeRCUStall and ModeHardLockup last (rounded up to
// whole seconds, at least 1 s).
func Duration(d time.Duration) string { return "acpidiag.duration=" + d.String() }

// Modes lists every guest mode.
var Modes = []string{ModeAlive, ModePanic, ModeOops, ModeLivelock, ModeReboot, ModePoweroff, ModeUhang, ModeSpin, ModeOOM, ModeDState,
	ModeHungTask, ModeSoftLockup, ModeRCUStall, ModeHardLockup}

// NoPVPanic is a BootArgs extra word: the guest does not load its pvpanic
// modules, so a panic raises no GUEST_PANICKED and leaves only the
// kernel's ERST record and its reset (a guest without the driver).
const NoPVPanic = "acpidiag.pvpanic=0"

// LastBoot returns a BootArgs extra word limiting the mode to the boots
// 1..n of the region's boot count; later boots stay alive. With ModeReboot
// and n = 2 the guest boots three times; with ModePanic and n = 1 it
// panics, reboots (when QEMU allows it) and stays alive.
func LastBoot(n int) string { return fmt.Sprintf("acpidiag.last_boot=%d", n) }

// AppTag is the tag the guest writes into its application slot by default.
const AppTag = "testapp"

// DefaultAppPeriod is the guest's default application heartbeat period.
const DefaultAppPeriod = 500 * time.Millisecond

// ErrNoKernel is wrapped by the errors Kernel returns when the guest kernel
// is not cached; tests skip on it (and fail under CI).
var ErrNoKernel = errors.New("guest kernel not cached (run `make guest` or scripts/fetch-kernel.sh)")

// KernelFiles are the cached guest kernel and its pvpanic modules.
type KernelFiles struct {
	// Vmlinuz is the path of the kernel image (QEMU -kernel).
	Vmlinuz string
	// Modules are the paths of the pvpanic modules, pvpanic.ko first.
	Modules []string
	// Version is the kernel release, e.g. "6.1.0-56-amd64".
	Version string
	// OopsModule is the path of the test module built from
	// internal/testguest/oopsmod (mode=oops on load by default, or hang or
	// softlockup, rcustall, hardlockup) for ModeOops and the modes after it, or ""
	// when fetch-kernel.sh could not build it (no make/gcc-12).
	OopsModule string
}

// ManifestError reports a malformed kernel cache manifest.
type ManifestError struct {
	Path string
	Line int // 1-based; 0 when the error is about the whole file
	Msg  string
}

func (e *ManifestError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("testguest: kernel manifest %s line %d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("testguest: kernel manifest %s: %s", e.Path, e.Msg)
}

// CacheDir returns the cache directory shared with scripts/fetch-kernel.sh:
// $ACPIDIAG_CACHE, else $HOME/.cache/acpidiag.
func CacheDir() (string, error) {
	if d := os.Getenv("ACPIDIAG_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("testguest: no cache directory: set ACPIDIAG_CACHE or HOME: %w", err)
	}
	return filepath.Join(home, ".cache", "acpidiag"), nil
}

// Kernel finds the guest kernel cached by scripts/fetch-kernel.sh in
// CacheDir()/kernel. A missing cache gives an error wrapping ErrNoKernel.
func Kernel() (KernelFiles, error) {
	dir, err := CacheDir()
	if err != nil {
		return KernelFiles{}, fmt.Errorf("%w: %w", ErrNoKernel, err)
	}
	return KernelIn(filepath.Join(dir, "kernel"))
}

// KernelIn reads the kernel cache in dir (the directory holding the
// manifest written by scripts/fetch-kernel.sh) and checks that every file it
// names exists.
func KernelIn(dir string) (KernelFiles, error) {
	path := filepath.Join(dir, "manifest")
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return KernelFiles{}, fmt.Errorf("testguest: %w: %s is missing", ErrNoKernel, path)
		}
		return KernelFiles{}, fmt.Errorf("testguest: reading kernel manifest: %w", err)
	}
	defer f.Close()
	var k KernelFiles
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, val, ok := strings.Cut(text, "=")
		if !ok || val == "" {
			return KernelFiles{}, &ManifestError{path, line, fmt.Sprintf("want key=value, got %q", text)}
		}
		if key == "vmlinuz" || key == "module" || key == "oops_module" {
			if filepath.IsAbs(val) || strings.Contains(val, "..") {
				return KernelFiles{}, &ManifestError{path, line, fmt.Sprintf("%s path %q must be relative to the cache and stay inside it", key, val)}
			}
			val = filepath.Join(dir, val)
			if _, err := os.Stat(val); err != nil {
				return KernelFiles{}, fmt.Errorf("testguest: %w: manifest %s line %d names a missing file: %w", ErrNoKernel, path, line, err)
			}
		}
		switch key {
		case "version":
			k.Version = val
		case "vmlinuz":
			k.Vmlinuz = val
		case "module":
			k.Modules = append(k.Modules, val)
		case "oops_module":
			k.OopsModule = val
		case "package":
		default:
			return KernelFiles{}, &ManifestError{path, line, fmt.Sprintf("unknown key %q", key)}
		}
	}
	if err := sc.Err(); err != nil {
		return KernelFiles{}, fmt.Errorf("testguest: reading kernel manifest %s: %w", path, err)
	}
	switch {
	case k.Vmlinuz == "":
		return KernelFiles{}, &ManifestError{path, 0, "no vmlinuz= line"}
	case len(k.Modules) == 0:
		return KernelFiles{}, &ManifestError{path, 0, "no module= line (the pvpanic modules)"}
	case k.Version == "":
		return KernelFiles{}, &ManifestError{path, 0, "no version= line"}
	}
	return k, nil
}

// BootArgs returns the guest kernel command line for a mode (one of Modes;
// "" leaves the guest's default, alive) acted on after the given delay, with
// extra words appended (e.g. "acpidiag.debug=1", "thermal.tzp=1",
// "pstore.compress=none", "oops=panic").
//
// The base is: console on ttyS0, panic=-1 (reboot at once on panic, so QEMU
// with -no-reboot exits), loglevel=4 (warnings and worse reach the console:
// panics and oopses do, the boot chatter does not). thermal.tzp is not set:
// the SSDT's _TZP decides the tick period.
func BootArgs(mode string, after time.Duration, extra ...string) string {
	words := []string{"console=ttyS0", "panic=-1", "loglevel=4"}
	if mode != "" {
		words = append(words, "acpidiag.mode="+mode)
	}
	if after >= 0 {
		words = append(words, "acpidiag.after="+after.String())
	}
	words = append(words, extra...)
	return strings.Join(words, " ")
}
