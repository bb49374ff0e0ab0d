package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/acpidiag/acpidiag/diagbeat"
	"github.com/acpidiag/acpidiag/region"
)

// Spin mode: measure what the diagnostic tick (the OS polling the ACPI
// thermal zone's _TMP) costs the guest CPU, from inside the guest, for the
// end-to-end suite's numbers (qemuhook/e2e_cost_test.go).
//
// PID 1 counts iterations of a CPU-bound loop in fixed windows of guest
// time, with the ACPI thermal zones' polling switched on and off in turn
// (/sys/class/thermal/thermal_zoneN/mode), so both halves see the same
// host load. Then it times reads of the zone's temp file (each one runs
// _TMP) against reads of its type file (no AML), each the fastest single
// read of spinReads (the host can only make a read slower by descheduling
// the vCPU; a whole batch of reads is rarely left alone on a loaded host,
// one read of about a millisecond often is). Console lines:
//
//	acpidiag-guest: spin: round=N tick=on|off iterations=I ns=T ticks=K
//	acpidiag-guest: spin: read temp_ns=A type_ns=B calls=C
//	acpidiag-guest: spin: done
//
// ticks is how far the region's tick count moved in the window (read
// through the BAR; -1 without it): it proves the switch worked.

const (
	spinRounds = 24
	spinWindow = 500 * time.Millisecond
	spinReads  = 1000
)

func spinCost(bar *diagbeat.Region) {
	zones := acpiThermalZones()
	if len(zones) == 0 {
		logf("spin: no ACPI thermal zone (type acpitz) under /sys/class/thermal; nothing to measure")
		return
	}
	runtime.LockOSThread()
	ticks := func() int64 {
		if bar == nil {
			return -1
		}
		return int64(bar.Word(region.Ticks))
	}
	for r := 0; r < spinRounds; r++ {
		on := r%2 == 0
		setZones(zones, on)
		t0 := ticks()
		n, el := spinFor(spinWindow)
		dt := ticks() - t0
		if bar == nil {
			dt = -1
		}
		state := "off"
		if on {
			state = "on"
		}
		consolef("spin: round=%d tick=%s iterations=%d ns=%d ticks=%d", r, state, n, el.Nanoseconds(), dt)
	}
	setZones(zones, false)
	temp := readCost(filepath.Join(zones[0], "temp"))
	typ := readCost(filepath.Join(zones[0], "type"))
	setZones(zones, true)
	consolef("spin: read temp_ns=%d type_ns=%d calls=%d", temp.Nanoseconds(), typ.Nanoseconds(), spinReads)
	consolef("spin: done")
}

// acpiThermalZones returns the sysfs directories of the ACPI thermal zones.
func acpiThermalZones() []string {
	dirs, _ := filepath.Glob("/sys/class/thermal/thermal_zone*")
	var out []string
	for _, d := range dirs {
		if readTrim(filepath.Join(d, "type")) == "acpitz" {
			out = append(out, d)
		}
	}
	return out
}

func setZones(zones []string, on bool) {
	mode := "disabled\n"
	if on {
		mode = "enabled\n"
	}
	for _, z := range zones {
		if err := os.WriteFile(filepath.Join(z, "mode"), []byte(mode), 0); err != nil {
			logf("spin: %s mode %s: %v", z, strings.TrimSpace(mode), err)
		}
	}
}

// spinFor runs the CPU-bound loop for d of guest time and returns the
// iterations done and the time taken.
func spinFor(d time.Duration) (uint64, time.Duration) {
	start := time.Now()
	var n uint64
	x := sink | 1
	for {
		for i := 0; i < 1<<14; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		n += 1 << 14
		if el := time.Since(start); el >= d {
			if x == 0 {
				sink = x
			}
			return n, el
		}
	}
}

// readCost returns the fastest of spinReads single reads of path (open,
// read, close).
func readCost(path string) time.Duration {
	best := time.Duration(-1)
	buf := make([]byte, 64)
	for i := 0; i < spinReads; i++ {
		start := time.Now()
		f, err := os.Open(path)
		if err != nil {
			logf("spin: %v", err)
			return -1
		}
		_, _ = f.Read(buf)
		f.Close()
		if el := time.Since(start); best < 0 || el < best {
			best = el
		}
	}
	return best
}
