package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Modes hungtask and softlockup: the test module (internal/testguest/oopsmod,
// /modules/extra/oops.ko) is loaded with mode=hang or mode=softlockup by a
// child process named for the job, so the kernel's own detectors report
// it: "INFO: task acpidiag-hang:PID blocked for more than 2 seconds." and
// "watchdog: BUG: soft lockup - CPU#0 stuck for 2s! [acpidiag-spin:PID]".
// PID 1 goes on (its console shell keeps answering when the guest has a
// CPU for it).

// kmodArg is argv[1] of the child that loads the test module as a named
// task: /init kmodArg PATH COMM PARAMS.
const kmodArg = "--acpidiag-kmod"

const (
	// hungComm and spinComm are the loading tasks' names (comm, at most
	// 15 bytes): the "who" of the kernel's reports.
	hungComm = "acpidiag-hang"
	spinComm = "acpidiag-spin"
	rcuComm  = "acpidiag-rcu"
	irqComm  = "acpidiag-irqoff"
	// hungTaskTimeout is kernel.hung_task_timeout_secs in mode hungtask
	// (Debian's default is 120): the detector checks every 2 s and
	// reports a task in D state for more than 2 s.
	hungTaskTimeout = "2"
	// hungTaskWarnings is kernel.hung_task_warnings in mode hungtask
	// (default 10): three reports, 2 s apart, then the detector is quiet.
	hungTaskWarnings = "3"
	// watchdogThresh is kernel.watchdog_thresh in mode softlockup: a CPU
	// that does not schedule for 2 * 1 s is reported.
	watchdogThresh = "1"
	// rcuStallTimeout is rcupdate.rcu_cpu_stall_timeout in mode rcustall
	// (default 21 s, at least 3): a grace period held up for 3 s is
	// reported.
	rcuStallTimeout = "3"
	// consoleLogLevel is the console loglevel both modes set: the reports'
	// stacks are printed at KERN_INFO (hung task) and the default level
	// (soft lockup registers and trace), which loglevel=4 hides.
	consoleLogLevel = "7"
	// defaultHang and defaultSpin are how long the modes last without
	// acpidiag.duration.
	defaultHang = 5 * time.Minute
	defaultSpin = 20 * time.Second
)

// modParamMarker is in the .modinfo of a test module that has the mode
// parameter; an older oops.ko (oops only) would ignore mode=hang and oops.
// The parameter's description that follows it names the modes the module
// knows.
var modParamMarker = []byte("parm=mode:")

// testModule returns the path of the test module in dir (the guest's
// /modules/extra) when it knows the module mode param, or an error saying
// why the mode cannot run.
func testModule(dir, param string) (string, error) {
	names, _ := filepath.Glob(filepath.Join(dir, "oops*.ko*"))
	if len(names) == 0 {
		return "", fmt.Errorf("no test module in %s (scripts/fetch-kernel.sh builds it with make and gcc-12)", dir)
	}
	b, err := os.ReadFile(names[0])
	if err != nil {
		return "", err
	}
	i := bytes.Index(b, modParamMarker)
	if i < 0 {
		return "", fmt.Errorf("%s has no mode parameter (built from an older internal/testguest/oopsmod: run scripts/fetch-kernel.sh)", filepath.Base(names[0]))
	}
	desc, _, _ := bytes.Cut(b[i+len(modParamMarker):], []byte{0})
	if !bytes.Contains(desc, []byte(param)) {
		return "", fmt.Errorf("%s has no mode=%s (its modes: %q; built from an older internal/testguest/oopsmod: run scripts/fetch-kernel.sh)",
			filepath.Base(names[0]), param, desc)
	}
	return names[0], nil
}

// kmodSpec is how a guest mode uses the test module.
type kmodSpec struct {
	param   string        // the module's mode= parameter
	comm    string        // the loading task's name
	def     time.Duration // how long without acpidiag.duration
	sysctls [][2]string   // set first: path, value
}

// kmodModes: hungtask blocks a task in D state (TASK_UNINTERRUPTIBLE), the
// hung-task detector reports it; softlockup spins a CPU with preemption
// disabled, the soft lockup detector reports it; rcustall holds an RCU
// read lock across a grace period it asked for, RCU's stall detector
// reports it ("rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:");
// hardlockup spins with interrupts disabled, and nothing in the guest can
// report it meanwhile (no PMU NMI under TCG): the host's view must.
var kmodModes = map[string]kmodSpec{
	"hungtask": {"hang", hungComm, defaultHang, [][2]string{
		{"/proc/sys/kernel/printk", consoleLogLevel},
		{"/proc/sys/kernel/hung_task_warnings", hungTaskWarnings},
		{"/proc/sys/kernel/hung_task_timeout_secs", hungTaskTimeout},
	}},
	"softlockup": {"softlockup", spinComm, defaultSpin, [][2]string{
		{"/proc/sys/kernel/printk", consoleLogLevel},
		{"/proc/sys/kernel/watchdog_thresh", watchdogThresh},
	}},
	"rcustall": {"rcustall", rcuComm, defaultSpin, [][2]string{
		{"/proc/sys/kernel/printk", consoleLogLevel},
		{"/sys/module/rcupdate/parameters/rcu_cpu_stall_timeout", rcuStallTimeout},
	}},
	"hardlockup": {"hardlockup", irqComm, defaultSpin, [][2]string{
		{"/proc/sys/kernel/printk", consoleLogLevel},
	}},
}

// kmodMode runs a guest mode of kmodModes for d (0: its default): after
// setting its sysctls, a child named for the job loads the test module
// with the mode's parameter.
func kmodMode(mode string, d time.Duration) {
	spec := kmodModes[mode]
	if d <= 0 {
		d = spec.def
	}
	path, err := testModule("/modules/extra", spec.param)
	if err != nil {
		logf("%s mode: %v; staying alive", mode, err)
		return
	}
	for _, s := range spec.sysctls {
		if err := os.WriteFile(s[0], []byte(s[1]+"\n"), 0); err != nil {
			logf("%s mode: cannot set %s=%s: %v", mode, s[0], s[1], err)
		}
	}
	secs := int((d + time.Second - 1) / time.Second)
	params := fmt.Sprintf("mode=%s seconds=%d", spec.param, secs)
	cmd, err := startChild(kmodArg, path, spec.comm, params)
	if err != nil {
		logf("%s mode: %v", mode, err)
		return
	}
	logf("%s now: task %s pid %d loads %s %s", mode, spec.comm, cmd.Process.Pid, filepath.Base(path), params)
	go func() { logf("%s over: task %s ended (%v)", mode, spec.comm, cmd.Wait()) }()
}

// kmodChild names its thread comm and loads the module with params; the
// module's init returns ECANCELED when its job is done.
func kmodChild(path, comm, params string) {
	runtime.LockOSThread()
	name := append([]byte(comm), 0)
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stdout, "%s%s: PR_SET_NAME: %v\n", prefix, comm, err)
	}
	if err := finitModule(path, params); err != nil && !errors.Is(err, unix.ECANCELED) {
		fmt.Fprintf(os.Stdout, "%s%s: loading %s %s: %v\n", prefix, comm, path, params, err)
		os.Exit(1)
	}
}
