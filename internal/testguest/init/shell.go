package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// shellHung is set when userspace "hangs" (mode uhang, or the shell's
// hang command): the shell stops answering.
var shellHung atomic.Bool

// shellLine answers one console line the way a minimal shell would. It
// returns the text to print (with a trailing prompt) and whether the line
// asks the guest to hang its userspace.
func shellLine(line string, now time.Time, uptime, loadavg string) (out string, hang bool) {
	cmd := strings.TrimSpace(line)
	// A line killed with ^U (VKILL) never reaches a canonical-mode reader;
	// a stray ^U in the line is dropped with what precedes it.
	if i := strings.LastIndexByte(cmd, 0x15); i >= 0 {
		cmd = strings.TrimSpace(cmd[i+1:])
	}
	switch {
	case cmd == "":
		return "# ", false
	case cmd == "uptime":
		up := 0.0
		if f := strings.Fields(uptime); len(f) > 0 {
			up, _ = strconv.ParseFloat(f[0], 64)
		}
		la := strings.Fields(loadavg)
		for len(la) < 3 {
			la = append(la, "?")
		}
		return fmt.Sprintf(" %s up %d min,  load average: %s, %s, %s\n# ",
			now.UTC().Format("15:04:05"), int(up)/60, la[0], la[1], la[2]), false
	case cmd == "hang":
		return prefix + "hanging userspace now (shell stops answering, busy loops at normal priority)\n", true
	case strings.HasPrefix(cmd, "echo "):
		return strings.TrimPrefix(cmd, "echo ") + "\n# ", false
	case strings.HasPrefix(cmd, "cat /proc/"):
		// Read-only /proc files, e.g. /proc/sys/kernel/printk (the console
		// loglevel the monitor restores after SysRq captures).
		b, err := os.ReadFile(strings.TrimPrefix(cmd, "cat "))
		if err != nil {
			return "cat: " + err.Error() + "\n# ", false
		}
		return string(b) + "# ", false
	}
	return "sh: " + strconv.Quote(cmd) + ": not found\n# ", false
}

// runShell answers console lines on stdin (the kernel's /dev/console, i.e.
// the serial port with console=ttyS0) until userspace hangs. It is the
// "shell on the console" the monitor's console probe talks to
// (acpidiag.shell=1).
func runShell(hb *heartbeat) {
	consolef("shell: answering console lines (uptime, echo, cat /proc/..., hang)")
	in := bufio.NewReader(os.Stdin)
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			logf("shell: console read: %v; shell stopped", err)
			return
		}
		if shellHung.Load() {
			select {} // hung: never answers again
		}
		up, _ := os.ReadFile("/proc/uptime")
		la, _ := os.ReadFile("/proc/loadavg")
		out, hang := shellLine(line, time.Now(), string(up), string(la))
		os.Stdout.WriteString(out)
		if hang {
			hangUserspace(hb)
			select {}
		}
	}
}

// hangUserspace is what mode uhang does: the application heartbeat stops,
// busy loops take every CPU at normal priority, the shell stops answering;
// the kernel keeps running (and ticking).
func hangUserspace(hb *heartbeat) {
	shellHung.Store(true)
	if hb != nil {
		hb.stop()
	}
	logf("userspace hung now: application heartbeat stopped, busy loops at normal priority on every CPU; the kernel keeps running")
	spawnSpinners("normal")
}
