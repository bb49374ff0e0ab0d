package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// QMPExecutor runs a QMP command and decodes its "return" into out.
// *qmp.Client implements it.
type QMPExecutor interface {
	Execute(ctx context.Context, name string, args any, out any) error
}

// BalloonQOMPath returns the QOM path of a -device with the given id
// (qemuhook wires the balloon as "acpidiag-balloon").
func BalloonQOMPath(deviceID string) string { return "/machine/peripheral/" + deviceID }

// EnableBalloonStats asks QEMU to poll the guest's balloon statistics
// every interval (qom-set guest-stats-polling-interval; whole seconds, at
// least 1). The guest's virtio_balloon driver answers each poll.
func EnableBalloonStats(ctx context.Context, q QMPExecutor, qomPath string, interval time.Duration) error {
	secs := int64(interval / time.Second)
	if secs < 1 {
		return fmt.Errorf("metrics: balloon polling interval %s: want at least 1s", interval)
	}
	args := map[string]any{"path": qomPath, "property": "guest-stats-polling-interval", "value": secs}
	if err := q.Execute(ctx, "qom-set", args, nil); err != nil {
		return fmt.Errorf("metrics: enabling balloon statistics on %s: %w", qomPath, err)
	}
	return nil
}

// BalloonStats is the balloon device's guest-stats property: the guest's
// own counters in bytes, -1 where the guest does not report one.
type BalloonStats struct {
	// LastUpdate is when the guest last sent statistics (QEMU's host
	// clock); zero when it never did (no driver, or polling just enabled).
	LastUpdate time.Time
	// TotalMemory (stat-total-memory, MemTotal), FreeMemory
	// (stat-free-memory, MemFree), AvailableMemory (stat-available-memory,
	// MemAvailable) and DiskCaches (stat-disk-caches, Cached) in bytes; -1
	// when unsupported.
	TotalMemory, FreeMemory, AvailableMemory, DiskCaches int64
}

// ReadBalloonStats reads guest-stats (qom-get).
func ReadBalloonStats(ctx context.Context, q QMPExecutor, qomPath string) (BalloonStats, error) {
	var raw json.RawMessage
	if err := q.Execute(ctx, "qom-get", map[string]any{"path": qomPath, "property": "guest-stats"}, &raw); err != nil {
		return BalloonStats{}, fmt.Errorf("metrics: reading balloon statistics from %s: %w", qomPath, err)
	}
	return DecodeBalloonStats(raw)
}

// DecodeBalloonStats decodes the guest-stats value. The numbers come from
// the guest: values that are not integers, or do not fit, are errors
// naming the field; -1 (and any negative value) means unsupported.
func DecodeBalloonStats(b []byte) (BalloonStats, error) {
	var v struct {
		Stats      map[string]json.Number `json:"stats"`
		LastUpdate json.Number            `json:"last-update"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return BalloonStats{}, fmt.Errorf("metrics: balloon guest-stats: %w", err)
	}
	num := func(field string, n json.Number) (int64, error) {
		if n == "" {
			return -1, nil
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err == nil {
			if i < 0 {
				return -1, nil
			}
			return i, nil
		}
		// QEMU prints u64 counters; (u64)-1 is "unsupported".
		if u, uerr := strconv.ParseUint(string(n), 10, 64); uerr == nil {
			if u == math.MaxUint64 {
				return -1, nil
			}
			return 0, fmt.Errorf("metrics: balloon guest-stats %s: %d does not fit", field, u)
		}
		return 0, fmt.Errorf("metrics: balloon guest-stats %s: %q is not an integer", field, clip([]byte(n)))
	}
	var s BalloonStats
	var err error
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"stat-total-memory", &s.TotalMemory}, {"stat-free-memory", &s.FreeMemory}, {"stat-available-memory", &s.AvailableMemory}, {"stat-disk-caches", &s.DiskCaches}} {
		if *f.dst, err = num(f.name, v.Stats[f.name]); err != nil {
			return BalloonStats{}, err
		}
	}
	lu, err := num("last-update", v.LastUpdate)
	if err != nil {
		return BalloonStats{}, err
	}
	if lu > 0 {
		s.LastUpdate = time.Unix(lu, 0).UTC()
	}
	return s, nil
}

// Supported reports whether the guest reports enough to sample: a last
// update, a total, and available memory (or free memory and caches).
func (s BalloonStats) Supported() bool {
	return !s.LastUpdate.IsZero() && s.TotalMemory > 0 && (s.AvailableMemory >= 0 || s.FreeMemory >= 0)
}

// Sample converts the statistics into a MemorySample timed at LastUpdate.
// Available memory is stat-available-memory, or, from guests that do not
// report it, free memory plus disk caches.
func (s BalloonStats) Sample() (MemorySample, bool) {
	if !s.Supported() {
		return MemorySample{}, false
	}
	avail := s.AvailableMemory
	if avail < 0 {
		avail = s.FreeMemory + max(s.DiskCaches, 0)
	}
	avail = min(avail, s.TotalMemory)
	return MemorySample{Time: s.LastUpdate, TotalBytes: uint64(s.TotalMemory), AvailableBytes: uint64(avail), Source: SourceBalloon}, true
}

// HostMemory is the host's view of a VM's memory: what the QEMU process
// costs the host, not what the guest uses.
type HostMemory struct {
	// RSSBytes is the QEMU process's resident set (VmRSS).
	RSSBytes uint64
	// CgroupBytes is the memory charged to the process's cgroup
	// (memory.current, cgroup v2), 0 when unavailable; CgroupPath names it.
	CgroupBytes uint64
	CgroupPath  string
}

// ReadHostMemory reads the host view of process pid from /proc and the
// cgroup v2 file system.
func ReadHostMemory(pid int) (HostMemory, error) {
	return readHostMemory("/proc", "/sys/fs/cgroup", pid)
}

func readHostMemory(procRoot, cgroupRoot string, pid int) (HostMemory, error) {
	var h HostMemory
	status := filepath.Join(procRoot, strconv.Itoa(pid), "status")
	b, err := os.ReadFile(status)
	if err != nil {
		return h, fmt.Errorf("metrics: host view of pid %d: %w", pid, err)
	}
	if h.RSSBytes, err = parseVmRSS(b); err != nil {
		return h, fmt.Errorf("metrics: %s: %w", status, err)
	}
	if b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup")); err == nil {
		if p, ok := parseCgroup2Path(b); ok {
			if mb, err := os.ReadFile(filepath.Join(cgroupRoot, p, "memory.current")); err == nil {
				if n, err := strconv.ParseUint(strings.TrimSpace(string(mb)), 10, 64); err == nil {
					h.CgroupBytes, h.CgroupPath = n, p
				}
			}
		}
	}
	return h, nil
}

// parseVmRSS returns the VmRSS line of /proc/PID/status in bytes.
func parseVmRSS(b []byte) (uint64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) != 2 || fs[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q is not \"N kB\"", clip([]byte(rest)))
		}
		kb, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil || kb > math.MaxUint64>>10 {
			return 0, fmt.Errorf("VmRSS %q is not a size in kB", clip([]byte(fs[0])))
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line (a kernel thread, or the process exited)")
}

// parseCgroup2Path returns the cgroup v2 path ("0::/PATH") of
// /proc/PID/cgroup; a path that climbs ("..") is refused.
func parseCgroup2Path(b []byte) (string, bool) {
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(p, "/") && !strings.Contains(p, "..") {
			return p, true
		}
	}
	return "", false
}

// Sample returns the host view as a MemorySample for a VM of totalBytes
// RAM: used is the QEMU process's resident set (capped at the total),
// available the rest. Source is SourceHost.
func (h HostMemory) Sample(t time.Time, totalBytes uint64) MemorySample {
	used := min(h.RSSBytes, totalBytes)
	return MemorySample{Time: t, TotalBytes: totalBytes, AvailableBytes: totalBytes - used, Source: SourceHost}
}

// VMSampler samples one VM: the balloon statistics over QMP when the guest
// reports them, else the host view of the QEMU process, with a warning
// once (the first time a VM falls back).
type VMSampler struct {
	QMP QMPExecutor
	// QOMPath is the balloon device's QOM path ("" for a VM without a
	// balloon device: host view only).
	QOMPath string
	// Pid is the QEMU process (for the host view); TotalBytes the VM's RAM.
	Pid        int
	TotalBytes uint64
	// Warn receives the one-time fallback warning.
	Warn func(string)

	once sync.Once
}

// Sample returns one sample and the balloon statistics it came from (zero
// for the host view).
func (s *VMSampler) Sample(ctx context.Context, now time.Time) (MemorySample, BalloonStats, error) {
	var why string
	if s.QOMPath != "" && s.QMP != nil {
		st, err := ReadBalloonStats(ctx, s.QMP, s.QOMPath)
		if err == nil {
			if smp, ok := st.Sample(); ok {
				return smp, st, nil
			}
			why = "the guest reports no balloon statistics (is its virtio_balloon driver loaded?)"
		} else {
			why = err.Error()
		}
	} else {
		why = "no balloon device"
	}
	if s.Pid <= 0 {
		return MemorySample{}, BalloonStats{}, fmt.Errorf("metrics: no sample: %s, and no QEMU pid for the host view", why)
	}
	h, err := ReadHostMemory(s.Pid)
	if err != nil {
		return MemorySample{}, BalloonStats{}, err
	}
	s.once.Do(func() {
		if s.Warn != nil {
			s.Warn(fmt.Sprintf("metrics: using the host's view of memory (QEMU process RSS) for pid %d: %s", s.Pid, why))
		}
	})
	return h.Sample(now, s.TotalBytes), BalloonStats{}, nil
}

// StallResult is one observation of the balloon statistics' freshness.
type StallResult struct {
	// Stalled is true when last-update has not advanced for longer than
	// the tracker's MaxAge.
	Stalled bool
	// LastUpdate is the guest's last update (zero: never).
	LastUpdate time.Time
	// Since is when (host time) the tracker last saw last-update change
	// (or first observed the VM).
	Since time.Time
	// Reason says why it is stalled, for the monitor's incident text.
	Reason string
}

// BalloonStallTracker detects a guest whose balloon last-update stopped
// advancing: the driver answers QEMU's polls from the guest kernel, so a
// last-update that freezes while polling is on means the guest kernel is
// not servicing the device (hung, or the driver went away). The monitor
// feeds it each ReadBalloonStats result as a probe. MaxAge should be a few
// polling intervals. Not safe for concurrent use.
type BalloonStallTracker struct {
	MaxAge time.Duration

	seen      bool
	last      time.Time
	changedAt time.Time
}

// Observe records stats read at host time now and says whether
// last-update is stalled.
func (t *BalloonStallTracker) Observe(s BalloonStats, now time.Time) StallResult {
	if !t.seen || !s.LastUpdate.Equal(t.last) {
		t.seen, t.last, t.changedAt = true, s.LastUpdate, now
	}
	r := StallResult{LastUpdate: s.LastUpdate, Since: t.changedAt}
	if age := now.Sub(t.changedAt); age > t.MaxAge {
		r.Stalled = true
		if s.LastUpdate.IsZero() {
			r.Reason = fmt.Sprintf("balloon statistics never updated in %s (no virtio_balloon driver, or the guest kernel is not running)", age.Round(time.Second))
		} else {
			r.Reason = fmt.Sprintf("balloon last-update stuck at %s for %s (guest kernel not servicing the device)", s.LastUpdate.Format(time.RFC3339), age.Round(time.Second))
		}
	}
	return r
}

// StallError is the failure of the balloon probe: last-update stopped
// advancing.
type StallError struct{ Result StallResult }

func (e *StallError) Error() string { return "balloon: " + e.Result.Reason }

// Probe is the "balloon last-update stopped advancing" check as a monitor
// probe: it reads the device's statistics over QMP, observes them at host
// time now, and fails with a *StallError when last-update has not advanced
// for longer than MaxAge. On success the detail is one line for the
// incident log. Enable polling first (EnableBalloonStats) with an interval
// well below MaxAge.
func (t *BalloonStallTracker) Probe(ctx context.Context, q QMPExecutor, qomPath string, now time.Time) (string, error) {
	st, err := ReadBalloonStats(ctx, q, qomPath)
	if err != nil {
		return "", err
	}
	r := t.Observe(st, now)
	if r.Stalled {
		return "", &StallError{Result: r}
	}
	if st.LastUpdate.IsZero() {
		return "balloon statistics not yet reported", nil
	}
	return fmt.Sprintf("balloon last-update %s", st.LastUpdate.Format(time.RFC3339)), nil
}

// FindBalloon looks for a virtio-balloon device in a running QEMU (QMP
// qom-list of /machine/peripheral, devices with an id, and
// /machine/peripheral-anon, devices without) and returns its QOM path.
// found is false for a VM without one: sample it with the host view.
func FindBalloon(ctx context.Context, q QMPExecutor) (path string, found bool, err error) {
	for _, dir := range []string{"/machine/peripheral", "/machine/peripheral-anon"} {
		var props []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		}
		if err := q.Execute(ctx, "qom-list", map[string]any{"path": dir}, &props); err != nil {
			return "", false, fmt.Errorf("metrics: looking for a balloon device in %s: %w", dir, err)
		}
		for _, p := range props {
			if strings.HasPrefix(p.Type, "child<virtio-balloon") {
				return dir + "/" + p.Name, true, nil
			}
		}
	}
	return "", false, nil
}
