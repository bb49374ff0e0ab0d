package monitor

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The host diagnostic's decoders of /proc files. Each takes the file's
// bytes, never panics, and names the file and field it refuses
// (FuzzProc* in procparse_fuzz_test.go).

// ProcError is a /proc file the host diagnostic could not decode: File is
// the file's name (stat, status, loadavg, pressure, meminfo, schedstat),
// Field the field or line, Msg what is wrong.
type ProcError struct {
	File  string
	Field string
	Msg   string
}

func (e *ProcError) Error() string {
	if e.Field == "" {
		return e.File + ": " + e.Msg
	}
	return e.File + " " + e.Field + ": " + e.Msg
}

func procErr(file, field, format string, a ...any) error {
	return &ProcError{File: file, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// quoteField quotes a field for an error message, cut to 40 bytes.
func quoteField(s string) string {
	if len(s) > 40 {
		return strconv.Quote(s[:40]) + "..."
	}
	return strconv.Quote(s)
}

// procStat is the part of /proc/PID/stat (or task/TID/stat) the host
// diagnostic reads.
type procStat struct {
	comm         string
	state        string
	utime, stime int64
	threads      int
	rssPages     int64
}

// statFields names the stat fields the host diagnostic reads, by their
// 1-based number in proc(5).
var statFields = map[int]string{14: "utime", 15: "stime", 20: "num_threads", 24: "rss"}

// parseStat decodes /proc/PID/stat. The comm field may hold spaces and
// parentheses: fields are taken after the last ')'. Counters must be
// non-negative decimal numbers.
func parseStat(b []byte) (procStat, error) {
	var s procStat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return s, procErr("stat", "field 2 (comm)", "no parenthesised command name")
	}
	s.comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15, threads 20, rss 24.
	if len(f) < 22 {
		return s, procErr("stat", "", "%d fields after comm, want at least 22", len(f))
	}
	s.state = f[0]
	var err error
	num := func(field int) int64 {
		v := f[field-3]
		n, e := strconv.ParseInt(v, 10, 64)
		if err == nil {
			if e != nil {
				err = procErr("stat", fmt.Sprintf("field %d (%s)", field, statFields[field]), "%s is not a decimal number", quoteField(v))
			} else if n < 0 {
				err = procErr("stat", fmt.Sprintf("field %d (%s)", field, statFields[field]), "%d is negative", n)
			}
		}
		return n
	}
	s.utime, s.stime = num(14), num(15)
	s.threads = int(num(20))
	s.rssPages = num(24)
	if err == nil && s.utime > math.MaxInt64-s.stime {
		err = procErr("stat", "field 14 (utime)", "utime %d + stime %d overflows", s.utime, s.stime)
	}
	return s, err
}

// parseStatusTgid returns the Tgid line of /proc/TID/status: the process
// a thread belongs to.
func parseStatusTgid(b []byte) (int, error) {
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "Tgid:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return 0, procErr("status", "Tgid", "%s is not a process id", quoteField(v))
		}
		return n, nil
	}
	return 0, procErr("status", "Tgid", "no Tgid line")
}

// parseSchedstat returns run + run-queue wait time in ns from
// /proc/TID/schedstat ("RUN_NS WAIT_NS TIMESLICES").
func parseSchedstat(b []byte) (int64, error) {
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, procErr("schedstat", "", "%d fields, want 3 (run_ns wait_ns timeslices)", len(f))
	}
	var sum int64
	for i, name := range []string{"run_ns", "wait_ns"} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil || n < 0 {
			return 0, procErr("schedstat", fmt.Sprintf("field %d (%s)", i+1, name), "%s is not a non-negative decimal number", quoteField(f[i]))
		}
		if sum > math.MaxInt64-n {
			return 0, procErr("schedstat", fmt.Sprintf("field %d (%s)", i+1, name), "run + wait overflows")
		}
		sum += n
	}
	return sum, nil
}

// LoadAvg is /proc/loadavg decoded.
type LoadAvg struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
	// Runnable and Threads are the scheduling entities currently runnable
	// and existing ("3/137").
	Runnable int `json:"runnable"`
	Threads  int `json:"threads"`
	// LastPID is the most recently created process id.
	LastPID int `json:"last_pid"`
}

// parseLoadAvg decodes /proc/loadavg ("0.66 0.64 1.04 3/137 23044").
func parseLoadAvg(b []byte) (LoadAvg, error) {
	var l LoadAvg
	f := strings.Fields(string(b))
	if len(f) != 5 {
		return l, procErr("loadavg", "", "%d fields, want 5 (load1 load5 load15 runnable/threads last_pid)", len(f))
	}
	for i, dst := range []*float64{&l.Load1, &l.Load5, &l.Load15} {
		name := []string{"load1", "load5", "load15"}[i]
		v, err := parseLoad(f[i])
		if err != nil {
			return l, procErr("loadavg", fmt.Sprintf("field %d (%s)", i+1, name), "%s %v", quoteField(f[i]), err)
		}
		*dst = v
	}
	r, t, ok := strings.Cut(f[3], "/")
	var err1, err2 error
	if ok {
		l.Runnable, err1 = strconv.Atoi(r)
		l.Threads, err2 = strconv.Atoi(t)
	}
	if !ok || err1 != nil || err2 != nil || l.Runnable < 0 || l.Threads < 0 {
		return l, procErr("loadavg", "field 4 (runnable/threads)", "%s is not N/M", quoteField(f[3]))
	}
	pid, err := strconv.Atoi(f[4])
	if err != nil || pid < 0 {
		return l, procErr("loadavg", "field 5 (last_pid)", "%s is not a process id", quoteField(f[4]))
	}
	l.LastPID = pid
	return l, nil
}

// parseLoad reads a load or PSI average: a finite, non-negative decimal.
func parseLoad(s string) (float64, error) {
	for i := 0; i < len(s); i++ { // no "NaN", "Inf", hex or exponents
		if c := s[i]; !(c >= '0' && c <= '9' || c == '.') {
			return 0, fmt.Errorf("is not a decimal number")
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("is not a decimal number")
	}
	return v, nil
}

// PSILine is one line of a /proc/pressure file: the share of time (in
// percent) over 10 s, 60 s and 300 s in which some (or all, "full")
// non-idle tasks were stalled on the resource, and the total stall time
// in microseconds.
type PSILine struct {
	Avg10   float64 `json:"avg10"`
	Avg60   float64 `json:"avg60"`
	Avg300  float64 `json:"avg300"`
	TotalUs uint64  `json:"total_us"`
}

// PSI is one /proc/pressure/{cpu,memory,io} file decoded. Full is absent
// for cpu on kernels before 5.13.
type PSI struct {
	Some *PSILine `json:"some,omitempty"`
	Full *PSILine `json:"full,omitempty"`
}

// parsePressure decodes a /proc/pressure file ("some avg10=0.00 avg60=0.00
// avg300=0.00 total=0", then the "full" line). name is the resource
// (cpu, memory, io) for the error messages.
func parsePressure(name string, b []byte) (PSI, error) {
	var p PSI
	file := "pressure/" + name
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		lineName := fmt.Sprintf("line %d", i+1)
		var dst **PSILine
		switch f[0] {
		case "some":
			dst = &p.Some
		case "full":
			dst = &p.Full
		default:
			return p, procErr(file, lineName, "%s: want some or full", quoteField(f[0]))
		}
		if *dst != nil {
			return p, procErr(file, lineName, "a second %q line", f[0])
		}
		if len(f) != 5 {
			return p, procErr(file, lineName+" ("+f[0]+")", "%d fields, want avg10= avg60= avg300= total=", len(f)-1)
		}
		var l PSILine
		for j, key := range []string{"avg10", "avg60", "avg300", "total"} {
			k, v, ok := strings.Cut(f[j+1], "=")
			field := f[0] + " " + key
			if !ok || k != key {
				return p, procErr(file, field, "%s: want %s=VALUE", quoteField(f[j+1]), key)
			}
			if key == "total" {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return p, procErr(file, field, "%s is not a decimal number", quoteField(v))
				}
				l.TotalUs = n
				continue
			}
			x, err := parseLoad(v)
			if err != nil || x > 100 {
				return p, procErr(file, field, "%s is not a percentage", quoteField(v))
			}
			*[]*float64{&l.Avg10, &l.Avg60, &l.Avg300}[j] = x
		}
		*dst = &l
	}
	if p.Some == nil {
		return p, procErr(file, "some", "no some line")
	}
	return p, nil
}

// meminfoKeys are the /proc/meminfo entries the host diagnostic keeps.
var meminfoKeys = []string{"MemTotal", "MemFree", "MemAvailable", "SwapTotal", "SwapFree", "Cached", "Dirty"}

// parseMeminfo decodes the meminfoKeys entries of /proc/meminfo ("KEY:
// VALUE kB"), in KiB. Entries it does not keep are not interpreted; a kept
// entry that is malformed, repeated or absent is an error (the entries
// decoded are still returned).
func parseMeminfo(b []byte) (map[string]int64, error) {
	out := map[string]int64{}
	want := map[string]bool{}
	for _, k := range meminfoKeys {
		want[k] = true
	}
	var first error
	bad := func(field, format string, a ...any) {
		if first == nil {
			first = procErr("meminfo", field, format, a...)
		}
	}
	for i, line := range strings.Split(string(b), "\n") {
		k, rest, ok := strings.Cut(line, ":")
		if !ok || !want[k] {
			continue
		}
		field := fmt.Sprintf("%s (line %d)", k, i+1)
		if _, dup := out[k]; dup {
			bad(field, "repeated")
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 || (len(f) == 2 && f[1] != "kB") {
			bad(field, "%s: want VALUE kB", quoteField(strings.TrimSpace(rest)))
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			bad(field, "%s is not a non-negative decimal number", quoteField(f[0]))
			continue
		}
		out[k] = n
	}
	if first == nil {
		for _, k := range meminfoKeys[:2] { // MemTotal and MemFree exist on every kernel
			if _, ok := out[k]; !ok {
				bad(k, "missing")
			}
		}
	}
	return out, first
}
