// Command init is the /init (PID 1) of acpidiag's bundled test guest: a tiny
// Linux userspace that loads the pvpanic modules, writes an application
// heartbeat into the diagnostic region through the ivshmem BAR, and then
// behaves as the kernel command line asks (stay alive, panic, livelock every
// CPU, reboot, hang only userspace, ...).
//
// It is built static (CGO_ENABLED=0) by testguest.Build and packed into an
// initramfs with the pvpanic modules under /modules. Options are read from
// /proc/cmdline (options with a dot are never passed to init by the kernel);
// docs/testguest.md lists them. Every console line starts with
// "acpidiag-guest: ". PID 1 must never exit (the kernel panics when it does),
// so after its behaviour it sleeps forever.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acpidiag/acpidiag/diagbeat"
	"github.com/acpidiag/acpidiag/region"
)

const prefix = "acpidiag-guest: "

// spinArg is argv[1] of the child processes that busy-loop on one CPU
// (livelock and uhang modes): /init spinArg CPU rt|normal.
const spinArg = "--acpidiag-spin"

// oopsArg is argv[1] of the child that loads the oops module: /init oopsArg PATH.
const oopsArg = "--acpidiag-oops"

// checkArg is argv[1] of the health check diagbeat runs: /init checkArg
// FILE exits 0 while FILE exists.
const checkArg = "--acpidiag-check"

// healthFile is what the web check of startDiagbeat looks at.
const healthFile = "/tmp/healthy"

// consolef prints a status line on the console only.
func consolef(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "%s%s\n", prefix, fmt.Sprintf(format, args...))
}

// logf prints a status line on the console and into the kernel log.
func logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stdout, "%s%s\n", prefix, msg)
	// Also into the kernel log (notice level: not echoed to a quiet console),
	// so a panic record in ERST shows what the guest was doing.
	if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		fmt.Fprintf(f, "<5>%s%s\n", prefix, msg)
		f.Close()
	}
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == spinArg {
		spinChild(os.Args[2], os.Args[3])
		return
	}
	if len(os.Args) == 2 && os.Args[1] == dstateArg {
		dstateChild()
		return
	}
	if len(os.Args) == 5 && os.Args[1] == kmodArg {
		kmodChild(os.Args[2], os.Args[3], os.Args[4])
		return
	}
	if len(os.Args) == 2 && os.Args[1] == oomArg {
		oomChild()
		return
	}
	if len(os.Args) == 3 && os.Args[1] == oopsArg {
		if err := finitModule(os.Args[2], ""); err != nil {
			fmt.Fprintf(os.Stdout, "%soops module %s: %v\n", prefix, os.Args[2], err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) == 3 && os.Args[1] == checkArg {
		if _, err := os.Stat(os.Args[2]); err != nil {
			os.Exit(1)
		}
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintf(os.Stderr, "%sthis program is the test guest's /init and must run as PID 1 (pid %d)\n", prefix, os.Getpid())
		os.Exit(2)
	}
	run()
	// PID 1 must never return.
	for {
		time.Sleep(time.Hour)
	}
}

// options are the acpidiag.* kernel command-line options.
type options struct {
	mode        string
	after       time.Duration
	app         bool
	appPeriod   time.Duration
	appSlot     int
	appTag      string
	debug       bool
	debugPeriod time.Duration
	// diagbeat runs /bin/diagbeat on slots 2 and 3 (startDiagbeat).
	diagbeat       bool
	diagbeatPeriod time.Duration
	healthyFor     time.Duration
	diagbeatRegion string // --region for diagbeat ("" = ivshmem)
	// meminfo, when non-zero, prints /proc/meminfo's totals on the console
	// at this period (acpidiag.meminfo=DURATION; meminfo.go).
	meminfo time.Duration
	// pvpanic loads the pvpanic modules (acpidiag.pvpanic, default on);
	// off, the guest panics like one without the driver: no
	// GUEST_PANICKED, only the kernel's ERST record and its reset.
	pvpanic bool
	// lastBoot limits the mode to the boots 1..lastBoot of the region's
	// boot count (acpidiag.last_boot, 0: every boot); later boots stay
	// alive. mode=reboot last_boot=2 is a reboot loop of three boots,
	// mode=panic last_boot=1 a panic, a reboot and a healthy second boot.
	lastBoot int
	// shell answers console lines (acpidiag.shell, shell.go).
	shell bool
	// duration is how long the test-module modes last
	// (acpidiag.duration; 0: the mode's default, kmod.go).
	duration time.Duration
}

var modes = []string{"alive", "panic", "oops", "livelock", "reboot", "poweroff", "uhang", "spin", "oom", "dstate", "hungtask", "softlockup", "rcustall", "hardlockup"}

func defaultOptions() options {
	return options{
		mode:           "alive",
		after:          5 * time.Second,
		app:            true,
		appPeriod:      500 * time.Millisecond,
		appSlot:        0,
		appTag:         "testapp",
		debugPeriod:    3 * time.Second,
		pvpanic:        true,
		diagbeatPeriod: time.Second,
	}
}

// parseOptions reads the acpidiag.* words of a kernel command line. A bad
// value is reported in the returned problems and the default kept: PID 1
// cannot give up.
func parseOptions(cmdline string) (options, []string) {
	o := defaultOptions()
	var problems []string
	bad := func(k, v string, err error) {
		problems = append(problems, fmt.Sprintf("bad option %s=%q: %v (keeping default)", k, v, err))
	}
	for _, w := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(w, "=")
		if !strings.HasPrefix(k, "acpidiag.") {
			continue
		}
		switch k {
		case "acpidiag.mode":
			ok := false
			for _, m := range modes {
				ok = ok || m == v
			}
			if !ok {
				bad(k, v, fmt.Errorf("want one of %s", strings.Join(modes, "|")))
				continue
			}
			o.mode = v
		case "acpidiag.duration":
			d, err := time.ParseDuration(v)
			if err == nil && d < time.Second {
				err = errors.New("below 1s")
			}
			if err != nil {
				bad(k, v, err)
				continue
			}
			o.duration = d
		case "acpidiag.after", "acpidiag.app_period", "acpidiag.debug_period", "acpidiag.diagbeat_period", "acpidiag.healthy_for":
			d, err := time.ParseDuration(v)
			if err == nil && d < 0 {
				err = errors.New("negative duration")
			}
			if err == nil && k != "acpidiag.after" && k != "acpidiag.healthy_for" && d < time.Millisecond {
				err = errors.New("period below 1ms")
			}
			if err != nil {
				bad(k, v, err)
				continue
			}
			switch k {
			case "acpidiag.after":
				o.after = d
			case "acpidiag.app_period":
				o.appPeriod = d
			case "acpidiag.diagbeat_period":
				o.diagbeatPeriod = d
			case "acpidiag.healthy_for":
				o.healthyFor = d
			default:
				o.debugPeriod = d
			}
		case "acpidiag.meminfo":
			d, err := time.ParseDuration(v)
			if err == nil && d < 100*time.Millisecond {
				err = errors.New("period below 100ms")
			}
			if err != nil {
				bad(k, v, err)
				continue
			}
			o.meminfo = d
		case "acpidiag.shell":
			b, err := strconv.ParseBool(v)
			if err != nil {
				bad(k, v, err)
				continue
			}
			o.shell = b
		case "acpidiag.app", "acpidiag.debug", "acpidiag.pvpanic", "acpidiag.diagbeat":
			b, err := strconv.ParseBool(v)
			if err != nil {
				bad(k, v, err)
				continue
			}
			switch k {
			case "acpidiag.app":
				o.app = b
			case "acpidiag.debug":
				o.debug = b
			case "acpidiag.diagbeat":
				o.diagbeat = b
			default:
				o.pvpanic = b
			}
		case "acpidiag.last_boot":
			n, err := strconv.Atoi(v)
			if err == nil && n < 0 {
				err = errors.New("negative boot count")
			}
			if err != nil {
				bad(k, v, err)
				continue
			}
			o.lastBoot = n
		case "acpidiag.app_slot":
			n, err := strconv.Atoi(v)
			if err == nil {
				_, err = region.SlotOffset(n)
			}
			if err != nil {
				bad(k, v, err)
				continue
			}
			o.appSlot = n
		case "acpidiag.diagbeat_region":
			if _, _, _, err := region.ParseSpec(v); err != nil {
				bad(k, v, err)
				continue
			}
			o.diagbeatRegion = v
		case "acpidiag.app_tag":
			if len(v) > region.SlotTagLen {
				bad(k, v, fmt.Errorf("longer than %d bytes", region.SlotTagLen))
				continue
			}
			o.appTag = v
		default:
			problems = append(problems, fmt.Sprintf("unknown option %s (ignored)", k))
		}
	}
	return o, problems
}

func run() {
	mounts()
	logf("ready (pid 1, %d CPU(s), kernel %s)", runtime.NumCPU(), kernelRelease())
	if err := os.WriteFile("/proc/sys/kernel/sysrq", []byte("1\n"), 0); err != nil {
		logf("cannot set kernel.sysrq=1: %v", err)
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		logf("cannot read /proc/cmdline: %v (using defaults)", err)
	}
	o, problems := parseOptions(string(cmdline))
	for _, p := range problems {
		logf("%s", p)
	}
	if o.pvpanic {
		loadModules("/modules", nil)
	} else {
		logf("pvpanic modules not loaded (acpidiag.pvpanic=0): a panic leaves only the kernel's ERST record")
		// The other modules (virtio_balloon and its transport) still load.
		loadModules("/modules", func(name string) bool { return strings.HasPrefix(name, "pvpanic") })
	}
	reportPvpanic()
	reportBalloon()
	if o.meminfo > 0 {
		go meminfoLoop(o.meminfo)
	}

	bar, err := diagbeat.OpenIvshmem("", 0)
	if err != nil {
		logf("ivshmem region: %v; carrying on without it", err)
		bar = nil
	} else {
		logf("ivshmem region: %s resource2 mapped (%d bytes)", strings.TrimPrefix(bar.Source, "ivshmem "), bar.Len())
	}
	var hb *heartbeat
	if bar != nil && o.app {
		hb = startHeartbeat(bar, o)
	}
	if bar != nil && o.debug {
		go debugLoop(bar, o)
	}
	if o.diagbeat {
		startDiagbeat(o.diagbeatRegion, o.diagbeatPeriod, o.healthyFor)
	}

	if o.shell {
		go runShell(hb)
	}
	logf("mode %s after %s", o.mode, o.after)
	if o.mode == "alive" {
		return
	}
	time.Sleep(o.after)
	if o.lastBoot > 0 && bar != nil {
		// The AML counted this boot at its first tick (~1 s uptime, before
		// /init runs).
		if boots := bar.Word(region.Boots); boots > uint32(o.lastBoot) {
			logf("boot %d is past acpidiag.last_boot=%d: staying alive instead of mode %s", boots, o.lastBoot, o.mode)
			return
		}
	}
	switch o.mode {
	case "panic":
		logf("panicking now (echo c > /proc/sysrq-trigger)")
		if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0); err != nil {
			logf("panic failed: %v", err)
		}
	case "oops":
		oops()
	case "livelock":
		livelock()
	case "reboot":
		logf("rebooting now")
		unix.Sync()
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
			logf("reboot failed: %v", err)
		}
	case "poweroff":
		logf("powering off now")
		unix.Sync()
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			logf("poweroff failed: %v", err)
		}
	case "uhang":
		hangUserspace(hb) // shell.go: also stops the console shell
	case "spin":
		spinCost(bar) // spin.go: the tick's CPU cost, for the e2e numbers
	case "oom":
		oomMode() // oom.go
	case "dstate":
		dstateMode() // dstate.go
	case "hungtask", "softlockup", "rcustall", "hardlockup":
		kmodMode(o.mode, o.duration) // kmod.go
	}
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func mounts() {
	for _, m := range []struct{ src, dir, fs string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			logf("mkdir %s: %v", m.dir, err)
		}
		if err := unix.Mount(m.src, m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			logf("mount %s on %s: %v", m.fs, m.dir, err)
		}
	}
}

// loadModules loads every *.ko* under dir (except those skip, when set,
// says to skip by file name) with finit_module, retrying until no more
// load: pvpanic-mmio.ko and pvpanic-pci.ko need symbols from pvpanic.ko,
// virtio_balloon.ko from virtio.ko, and the directory order does not say
// so.
func loadModules(dir string, skip func(name string) bool) {
	all, err := filepath.Glob(filepath.Join(dir, "*.ko*"))
	var names []string
	for _, n := range all {
		if skip == nil || !skip(filepath.Base(n)) {
			names = append(names, n)
		}
	}
	if err != nil || len(names) == 0 {
		logf("no kernel modules in %s", dir)
		return
	}
	sort.Strings(names)
	pending := names
	var lastErr = map[string]error{}
	for len(pending) > 0 {
		var next []string
		for _, p := range pending {
			if err := finitModule(p, ""); err != nil {
				lastErr[p] = err
				next = append(next, p)
				continue
			}
			logf("module %s loaded", filepath.Base(p))
		}
		if len(next) == len(pending) {
			for _, p := range next {
				logf("module %s not loaded: %v", filepath.Base(p), lastErr[p])
			}
			break
		}
		pending = next
	}
}

// finitModule loads the module at path with the parameter string params
// ("" for none).
func finitModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(path, ".xz") || strings.HasSuffix(path, ".zst") || strings.HasSuffix(path, ".gz") {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), params, flags)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// reportPvpanic says which pvpanic devices a driver is bound to.
func reportPvpanic() {
	var bound []string
	for _, d := range []string{"/sys/bus/platform/drivers/pvpanic-mmio", "/sys/bus/pci/drivers/pvpanic-pci"} {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.Type()&os.ModeSymlink == 0 || e.Name() == "module" {
				continue
			}
			bound = append(bound, fmt.Sprintf("%s (%s)", e.Name(), filepath.Base(d)))
		}
	}
	if len(bound) == 0 {
		acpi := ""
		if _, err := os.Stat("/sys/bus/acpi/devices/QEMU0001:00"); err == nil {
			acpi = " (ACPI device QEMU0001:00 present but unbound)"
		}
		logf("pvpanic: no device bound%s", acpi)
		return
	}
	logf("pvpanic bound: %s", strings.Join(bound, ", "))
}

type heartbeat struct{ stopped atomic.Bool }

func (h *heartbeat) stop() { h.stopped.Store(true) }

// startHeartbeat claims the application slot (tag and promised period,
// beat 0) and beats it every period, through package diagbeat.
func startHeartbeat(bar *diagbeat.Region, o options) *heartbeat {
	slot, _ := bar.Slot(o.appSlot) // validated by parseOptions
	if err := slot.Claim(o.appTag, o.appPeriod); err != nil {
		logf("heartbeat: %v", err)
		return nil
	}
	h := &heartbeat{}
	logf("heartbeat started: slot %d tag %q every %s", o.appSlot, o.appTag, o.appPeriod)
	go func() {
		t := time.NewTicker(o.appPeriod)
		defer t.Stop()
		for range t.C {
			if h.stopped.Load() {
				logf("heartbeat stopped at beat %d", slot.Beats())
				return
			}
			slot.Beat()
		}
	}()
	return h
}

// debugLoop prints the region header words the guest sees through the BAR.
func debugLoop(bar *diagbeat.Region, o options) {
	slot, _ := bar.Slot(o.appSlot)
	for {
		consolef("region: magic=%#08x version=%d seq=%d ticks=%d boots=%d period=%d timer_lo=%d osi=%#x mbx_ack=%d app_beat=%d",
			bar.Word(region.MagicWord), bar.Word(region.VersionWord), bar.Word(region.Seq), bar.Word(region.Ticks), bar.Word(region.Boots),
			bar.Word(region.Period), bar.Word(region.TimerLo), bar.Word(region.OSI), bar.Word(region.MbxAck), slot.Beats())
		time.Sleep(o.debugPeriod)
	}
}

// startDiagbeat runs the guest's /bin/diagbeat the way an operator would
// (cmd/diagbeat), on the region at where (a --region value, "" for
// ivshmem): slot 2 "web" beating only while its check passes (the
// check: /init checkArg healthFile, true while the file exists), slot 3
// "plain" beating unconditionally, both every period. After healthyFor
// (0: never) the health file is removed: the web check fails and slot 2
// goes stale while the kernel keeps ticking.
func startDiagbeat(where string, period, healthyFor time.Duration) {
	if err := os.WriteFile(healthFile, []byte("ok\n"), 0o644); err != nil {
		logf("diagbeat: %v", err)
		return
	}
	every := period.String()
	var place []string
	if where != "" {
		place = []string{"--region", where}
	}
	for _, args := range [][]string{
		{"--slot", "2", "--tag", "web", "--every", every, "--", "/init", checkArg, healthFile},
		{"--slot", "3", "--tag", "plain", "--every", every},
	} {
		cmd := exec.Command("/bin/diagbeat", append(place, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		if err := cmd.Start(); err != nil {
			logf("diagbeat: %v", err)
			return
		}
		go func() { _ = cmd.Wait() }()
	}
	logf("diagbeat started: slot 2 web (checked), slot 3 plain, every %s", every)
	if healthyFor > 0 {
		go func() {
			time.Sleep(healthyFor)
			if err := os.Remove(healthFile); err != nil {
				logf("diagbeat: %v", err)
				return
			}
			logf("diagbeat: %s removed: the web check fails from now on", healthFile)
		}()
	}
}

// oops makes the kernel oops. A stock Debian kernel offers no userspace
// trigger for a real oops (no lkdtm); when a module named oops*.ko* is in
// /modules/extra (internal/testguest/oopsmod: its init writes through a
// NULL pointer) it is loaded, otherwise the guest says so and stays alive.
// The module is loaded by a child process, which the oops kills: PID 1 and
// the kernel survive (tainted) unless the command line has oops=panic.
func oops() {
	names, _ := filepath.Glob("/modules/extra/oops*.ko*")
	if len(names) == 0 {
		logf("oops mode: no oops module in /modules/extra; staying alive")
		return
	}
	logf("oopsing now (loading %s in a child process)", filepath.Base(names[0]))
	cmd := exec.Command("/init", oopsArg, names[0])
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		logf("oops loader: %v", err)
		return
	}
	// The oops kills only the loading thread; the loader's other (Go
	// runtime) threads live on, so the process never exits by itself. Watch
	// the kernel's taint instead: bit 7 (D) is set once a task died in an oops.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case err := <-exited:
			logf("oops loader exited (%v) without an oops; still running", err)
			return
		case <-deadline:
			logf("no oops 30s after loading the module (kernel taint %s); still running", readTrim("/proc/sys/kernel/tainted"))
			return
		case <-time.After(100 * time.Millisecond):
		}
		taint, err := strconv.ParseUint(readTrim("/proc/sys/kernel/tainted"), 10, 64)
		if err == nil && taint&(1<<7) != 0 {
			_ = cmd.Process.Kill()
			logf("oops done: kernel tainted D (taint %d); loader killed; still running", taint)
			return
		}
	}
}

// livelock takes every CPU with an unthrottled SCHED_FIFO 99 busy loop.
func livelock() {
	if err := os.WriteFile("/proc/sys/kernel/sched_rt_runtime_us", []byte("-1\n"), 0); err != nil {
		logf("cannot set sched_rt_runtime_us=-1: %v", err)
	}
	logf("livelocking every CPU now (SCHED_FIFO 99, sched_rt_runtime_us=-1)")
	spawnSpinners("rt")
}

// spawnSpinners starts one child process per CPU, each pinned to its CPU and
// busy looping. Separate processes keep PID 1's Go runtime out of the loops;
// asyncpreemptoff keeps the Go scheduler from parking a spinning thread.
func spawnSpinners(kind string) {
	var cpus []int
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		for cpu := 0; cpu < len(set)*64; cpu++ {
			if set.IsSet(cpu) {
				cpus = append(cpus, cpu)
			}
		}
	}
	if len(cpus) == 0 {
		for cpu := 0; cpu < runtime.NumCPU(); cpu++ {
			cpus = append(cpus, cpu)
		}
	}
	for _, cpu := range cpus {
		cmd := exec.Command("/init", spinArg, strconv.Itoa(cpu), kind)
		cmd.Env = append(os.Environ(), "GODEBUG=asyncpreemptoff=1", "GOMAXPROCS=1")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			logf("spinner for CPU %d: %v", cpu, err)
			continue
		}
		go cmd.Wait() //nolint:errcheck // reaped only; spinners never exit
	}
}

var sink uint64

// spinChild is the busy loop of one spinner process.
func spinChild(cpuArg, kind string) {
	runtime.LockOSThread()
	cpu, err := strconv.Atoi(cpuArg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%sspinner: bad CPU %q\n", prefix, cpuArg)
		os.Exit(2)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fmt.Fprintf(os.Stdout, "%sspinner CPU %d: sched_setaffinity: %v\n", prefix, cpu, err)
	}
	if kind == "rt" {
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 99}
		if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
			fmt.Fprintf(os.Stdout, "%sspinner CPU %d: SCHED_FIFO 99: %v\n", prefix, cpu, err)
		}
	}
	fmt.Fprintf(os.Stdout, "%sspinning on CPU %d (%s)\n", prefix, cpu, kind)
	x := uint64(cpu)
	for {
		x = x*6364136223846793005 + 1442695040888963407
		if x == 0 {
			sink = x
		}
	}
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
