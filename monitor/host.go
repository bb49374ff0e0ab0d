package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/acpidiag/acpidiag/qmp"
)

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTicks = 100

// HostOptions tune CollectHost.
type HostOptions struct {
	// Paths whose file systems' free space is reported.
	Paths []string
	// Sample is how long vCPU thread CPU time is sampled (default 500 ms).
	Sample time.Duration
	// Proc is the proc file system root (default /proc).
	Proc string
}

// HostReport is the host diagnostic: the host's load and the QEMU
// process and its vCPU threads.
type HostReport struct {
	Time     time.Time           `json:"time"`
	LoadAvg  string              `json:"loadavg,omitempty"`  // /proc/loadavg as read
	Load     *LoadAvg            `json:"load,omitempty"`     // /proc/loadavg decoded
	Pressure map[string]string   `json:"pressure,omitempty"` // /proc/pressure/{cpu,memory,io} as read
	PSI      map[string]PSI      `json:"psi,omitempty"`      // the same, decoded
	Memory   map[string]int64    `json:"memory_kib,omitempty"`
	Disks    map[string]DiskFree `json:"disks,omitempty"`
	QEMU     *ProcInfo           `json:"qemu,omitempty"`
	VCPUs    []VCPUThread        `json:"vcpus,omitempty"`
	Errors   []string            `json:"errors,omitempty"`
}

// DiskFree is a file system's free space.
type DiskFree struct {
	FreeBytes  uint64 `json:"free_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
}

// ProcInfo is one process's state.
type ProcInfo struct {
	PID      int     `json:"pid"`
	Comm     string  `json:"comm"`
	State    string  `json:"state"`
	RSSBytes int64   `json:"rss_bytes"`
	UserSec  float64 `json:"user_s"`
	SysSec   float64 `json:"sys_s"`
	Threads  int     `json:"threads"`
}

// VCPUThread is one vCPU's host thread, mapped through query-cpus-fast.
type VCPUThread struct {
	CPUIndex int     `json:"cpu_index"`
	ThreadID int     `json:"thread_id"`
	State    string  `json:"state"` // R running, S sleeping, D disk sleep, ...
	UserSec  float64 `json:"user_s"`
	SysSec   float64 `json:"sys_s"`
	// CPUPercent is the thread's CPU use over the sample (100 = one
	// full host CPU: a vCPU at 100% is busy — a livelock if the guest
	// does not answer; one near 0 is idle or waiting).
	CPUPercent float64 `json:"cpu_percent"`
	// RunnablePercent is the share of the sample the thread was running
	// or waiting for a host CPU (/proc schedstat: run + run-queue wait).
	// It stays near 100 for a busy vCPU even when the host is
	// oversubscribed and CPUPercent is low; near 0 for an idle one.
	RunnablePercent float64 `json:"runnable_percent"`
	SampleMs        int64   `json:"sample_ms"`
	Error           string  `json:"error,omitempty"`
}

// CollectHost gathers the host's state and, with a QMP session, the QEMU
// process and its vCPU threads. Problems are listed in Errors; whatever
// could be read is returned.
func CollectHost(ctx context.Context, q *qmp.Client, o HostOptions) *HostReport {
	if o.Sample <= 0 {
		o.Sample = 500 * time.Millisecond
	}
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	h := &HostReport{Time: time.Now().UTC(), Pressure: map[string]string{}, Memory: map[string]int64{}, Disks: map[string]DiskFree{}}
	fail := func(format string, a ...any) { h.Errors = append(h.Errors, fmt.Sprintf(format, a...)) }
	if b, err := os.ReadFile(filepath.Join(o.Proc, "loadavg")); err == nil {
		h.LoadAvg = strings.TrimSpace(string(b))
		if l, err := parseLoadAvg(b); err == nil {
			h.Load = &l
		} else {
			fail("%v", err)
		}
	} else {
		fail("loadavg: %v", err)
	}
	for _, k := range []string{"cpu", "memory", "io"} {
		if b, err := os.ReadFile(filepath.Join(o.Proc, "pressure", k)); err == nil {
			h.Pressure[k] = strings.TrimSpace(string(b))
			if p, err := parsePressure(k, b); err == nil {
				if h.PSI == nil {
					h.PSI = map[string]PSI{}
				}
				h.PSI[k] = p
			} else {
				fail("%v", err)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(o.Proc, "meminfo")); err == nil {
		var err error
		if h.Memory, err = parseMeminfo(b); err != nil {
			fail("%v", err)
		}
	} else {
		fail("meminfo: %v", err)
	}
	for _, p := range o.Paths {
		if p == "" {
			continue
		}
		d := filepath.Dir(p)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			d = p
		}
		var fs syscall.Statfs_t
		if err := syscall.Statfs(d, &fs); err == nil {
			h.Disks[d] = DiskFree{FreeBytes: fs.Bavail * uint64(fs.Bsize), TotalBytes: fs.Blocks * uint64(fs.Bsize)}
		}
	}
	if q == nil {
		return h
	}
	var cpus []struct {
		Index    int `json:"cpu-index"`
		ThreadID int `json:"thread-id"`
	}
	if err := q.Execute(ctx, "query-cpus-fast", nil, &cpus); err != nil {
		fail("query-cpus-fast: %v", err)
		return h
	}
	pid := 0
	type sample struct {
		at       time.Time
		ticks    int64
		runnable int64 // ns, -1 without schedstat
	}
	first := make([]sample, len(cpus))
	for i, c := range cpus {
		t := VCPUThread{CPUIndex: c.Index, ThreadID: c.ThreadID}
		if pid == 0 {
			var err error
			if pid, err = tgidOf(o.Proc, c.ThreadID); err != nil && !errors.Is(err, os.ErrNotExist) {
				fail("vCPU thread %d: %v", c.ThreadID, err)
			}
		}
		st, err := readStat(filepath.Join(o.Proc, strconv.Itoa(c.ThreadID), "stat"))
		if err != nil {
			t.Error = err.Error()
		} else {
			first[i] = sample{time.Now(), st.utime + st.stime, readSchedstat(o.Proc, c.ThreadID, fail)}
		}
		h.VCPUs = append(h.VCPUs, t)
	}
	if pid > 0 {
		p, err := procInfo(o.Proc, pid)
		if err != nil {
			fail("qemu process %d: %v", pid, err)
		} else {
			h.QEMU = p
		}
	} else if len(cpus) > 0 {
		fail("qemu process: no /proc entry for vCPU thread %d (QEMU on another host or PID namespace?)", cpus[0].ThreadID)
	}
	select {
	case <-ctx.Done():
		fail("vCPU sample cut short: %v", ctx.Err())
	case <-time.After(o.Sample):
	}
	for i := range h.VCPUs {
		t := &h.VCPUs[i]
		if t.Error != "" {
			continue
		}
		st, err := readStat(filepath.Join(o.Proc, strconv.Itoa(t.ThreadID), "stat"))
		if err != nil {
			t.Error = err.Error()
			continue
		}
		now := time.Now()
		t.State = st.state
		t.UserSec, t.SysSec = float64(st.utime)/clockTicks, float64(st.stime)/clockTicks
		dt := now.Sub(first[i].at)
		t.SampleMs = dt.Milliseconds()
		if dt > 0 {
			t.CPUPercent = float64(st.utime+st.stime-first[i].ticks) / clockTicks / dt.Seconds() * 100
			if r0, r1 := first[i].runnable, readSchedstat(o.Proc, t.ThreadID, fail); r0 >= 0 && r1 >= r0 {
				t.RunnablePercent = float64(r1-r0) / float64(dt.Nanoseconds()) * 100
			}
		}
	}
	return h
}

// readSchedstat returns run + run-queue wait time in ns from
// /proc/TID/schedstat, -1 when unavailable (no schedstat file: a kernel
// without CONFIG_SCHED_INFO) or undecodable (reported through fail).
func readSchedstat(proc string, tid int, fail func(string, ...any)) int64 {
	path := filepath.Join(proc, strconv.Itoa(tid), "schedstat")
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := parseSchedstat(b)
	if err != nil {
		fail("%s: %v", path, err)
		return -1
	}
	return n
}

// readStat reads /proc/PID/stat (or task/TID/stat).
func readStat(path string) (procStat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, err
	}
	st, err := parseStat(b)
	if err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// tgidOf returns the process a thread belongs to (/proc/TID/status).
func tgidOf(proc string, tid int) (int, error) {
	path := filepath.Join(proc, strconv.Itoa(tid), "status")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := parseStatusTgid(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

func procInfo(proc string, pid int) (*ProcInfo, error) {
	st, err := readStat(filepath.Join(proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	return &ProcInfo{PID: pid, Comm: st.comm, State: st.state, RSSBytes: st.rssPages * int64(os.Getpagesize()),
		UserSec: float64(st.utime) / clockTicks, SysSec: float64(st.stime) / clockTicks, Threads: st.threads}, nil
}

// QMPCommands are the queries the qmp diagnostic runs.
var QMPCommands = []string{"query-status", "query-cpus-fast", "query-block", "query-blockstats", "query-chardev", "query-balloon"}

// QMPReport is the qmp diagnostic: each query's raw JSON reply (cut to
// the bound, marked) or its error.
type QMPReport struct {
	Replies   map[string]json.RawMessage `json:"replies"`
	Truncated map[string]string          `json:"truncated,omitempty"` // command -> first bytes (escaped) when the reply was over the bound
	Errors    map[string]string          `json:"errors,omitempty"`
}

// CollectQMP runs QMPCommands; a failing one is recorded and the others
// still run. Each reply is bounded by max bytes.
func CollectQMP(ctx context.Context, q *qmp.Client, max int) (*QMPReport, error) {
	r := &QMPReport{Replies: map[string]json.RawMessage{}, Truncated: map[string]string{}, Errors: map[string]string{}}
	var errs []string
	for _, c := range QMPCommands {
		raw, err := q.ExecuteRaw(ctx, c, nil)
		if err != nil {
			r.Errors[c] = err.Error()
			if c != "query-balloon" { // no balloon device is normal
				errs = append(errs, c+": "+err.Error())
			}
			continue
		}
		if len(raw) > max {
			r.Truncated[c] = strconv.Quote(string(raw[:max]))
			continue
		}
		r.Replies[c] = raw
	}
	if len(errs) > 0 {
		return r, errors.New(strings.Join(errs, "; "))
	}
	return r, nil
}
