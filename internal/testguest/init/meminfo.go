package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// meminfoKeys are the /proc/meminfo lines the meminfo console line
// carries: what the virtio_balloon driver reports as stat-total-memory,
// stat-free-memory, stat-available-memory and stat-disk-caches.
var meminfoKeys = []string{"MemTotal", "MemFree", "MemAvailable", "Cached"}

// meminfoLine reads /proc/meminfo and formats
// "meminfo MemTotal=N MemFree=N MemAvailable=N Cached=N" (kB, as the file).
func meminfoLine(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) >= 1 {
			vals[k] = fs[0]
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("meminfo")
	for _, k := range meminfoKeys {
		v, ok := vals[k]
		if !ok {
			return "", fmt.Errorf("%s: no %s line", path, k)
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	return b.String(), nil
}

// meminfoLoop prints the meminfo line every period, so the host can check
// the balloon statistics against the guest's own numbers.
func meminfoLoop(period time.Duration) {
	for {
		line, err := meminfoLine("/proc/meminfo")
		if err != nil {
			consolef("meminfo: %v", err)
		} else {
			consolef("%s", line)
		}
		time.Sleep(period)
	}
}

// reportBalloon says whether the virtio_balloon driver is bound to a
// device.
func reportBalloon() {
	devs, _ := filepath.Glob("/sys/bus/virtio/drivers/virtio_balloon/virtio*")
	if len(devs) == 0 {
		if _, err := os.Stat("/sys/bus/virtio/drivers/virtio_balloon"); err != nil {
			logf("virtio_balloon: driver not loaded")
		} else {
			logf("virtio_balloon: no device bound")
		}
		return
	}
	names := make([]string, len(devs))
	for i, d := range devs {
		names[i] = filepath.Base(d)
	}
	logf("virtio_balloon bound: %s", strings.Join(names, ", "))
}
