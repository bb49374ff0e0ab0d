package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/acpidiag/acpidiag/monitor"
)

// Diagnosis classes of the built-in analyzers.
const (
	ClassPanic         = "kernel-panic"
	ClassLockup        = "lockup"
	ClassHungTask      = "hung-task"
	ClassOOM           = "oom"
	ClassUserspaceHang = "userspace-hang"
	ClassPoweredOff    = "powered-off"
	ClassUnknown       = "unknown"
)

// HighConfidence is the confidence from which a finding is asserted (the
// pages mark lower ones as hints).
const HighConfidence = 0.7

// Evidence points at the lines of an artifact a finding rests on (1-based,
// inclusive). Lines holds their raw text (guest text: escape it to print);
// the collector fills it in.
type Evidence struct {
	Artifact string   `json:"artifact"`
	First    int      `json:"first_line"`
	Last     int      `json:"last_line"`
	Lines    []string `json:"lines,omitempty"`
}

// Finding is one analyzer's conclusion about a bundle.
type Finding struct {
	Class string `json:"class"`
	// Confidence is 0..1.
	Confidence float64    `json:"confidence"`
	Summary    string     `json:"summary"`
	Evidence   []Evidence `json:"evidence,omitempty"`
	// Details are class-specific facts (reason, cpu, location, frames, task).
	Details  map[string]string `json:"details,omitempty"`
	Analyzer string            `json:"analyzer,omitempty"`
}

// Bundle is a stored (unpacked) bundle as the analyzers see it.
type Bundle struct {
	Dir      string
	Manifest *monitor.Manifest

	mu    sync.Mutex
	texts map[string]string
	lines map[string][]string
}

// Text returns an artifact's content ("" when the bundle has no such
// artifact), read once. Artifacts are bounded by the bundle's limits.
func (b *Bundle) Text(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.texts[name]; ok {
		return t
	}
	data, _ := os.ReadFile(filepath.Join(b.Dir, filepath.FromSlash(name)))
	if b.texts == nil {
		b.texts = map[string]string{}
	}
	b.texts[name] = string(data)
	return b.texts[name]
}

// Lines returns an artifact's text split into lines (nil when the bundle
// has no such artifact).
func (b *Bundle) Lines(name string) []string {
	t := b.Text(name)
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.lines[name]; ok {
		return l
	}
	var l []string
	if t != "" {
		l = strings.Split(strings.TrimSuffix(strings.ReplaceAll(t, "\r\n", "\n"), "\n"), "\n")
	}
	if b.lines == nil {
		b.lines = map[string][]string{}
	}
	b.lines[name] = l
	return l
}

// Analyzer turns a bundle into findings.
type Analyzer interface {
	Name() string
	Analyze(ctx context.Context, b *Bundle) ([]Finding, error)
}

// Analysis is the result of running the analyzers on a bundle.
type Analysis struct {
	ID       string    `json:"id"`
	At       time.Time `json:"analyzed"`
	Findings []Finding `json:"findings"`
	// Diagnosis is the finding with the highest confidence (class
	// "unknown" when there is none).
	Diagnosis Finding `json:"diagnosis"`
	// Errors are analyzers that failed (name: error).
	Errors []string `json:"errors,omitempty"`
}

// classRank breaks confidence ties: a kernel death explains a hang,
// not the other way round.
var classRank = map[string]int{ClassPanic: 0, ClassLockup: 1, ClassHungTask: 2, ClassOOM: 3, ClassUserspaceHang: 4, ClassPoweredOff: 5}

func rank(c string) int {
	if r, ok := classRank[c]; ok {
		return r
	}
	return 10
}

// Analyze runs the analyzers on b and picks the diagnosis. Evidence lines
// are filled in from the artifacts; evidence naming a file that is not
// in the bundle, or lines out of range, is dropped.
func Analyze(ctx context.Context, b *Bundle, analyzers []Analyzer) Analysis {
	a := Analysis{ID: b.Manifest.ID, At: time.Now().UTC(), Findings: []Finding{}}
	for _, an := range analyzers {
		fs, err := an.Analyze(ctx, b)
		if err != nil {
			a.Errors = append(a.Errors, an.Name()+": "+err.Error())
		}
		for _, f := range fs {
			f.Analyzer = an.Name()
			if f.Confidence < 0 || f.Confidence > 1 || f.Class == "" {
				a.Errors = append(a.Errors, fmt.Sprintf("%s: finding %q with confidence %v refused (want a class and 0..1)", an.Name(), f.Class, f.Confidence))
				continue
			}
			var ev []Evidence
			for _, e := range f.Evidence {
				if !validFile(e.Artifact) {
					continue
				}
				lines := b.Lines(e.Artifact)
				if e.First < 1 || e.Last < e.First || e.Last > len(lines) {
					continue
				}
				if e.Last-e.First >= 40 {
					e.Last = e.First + 39
				}
				e.Lines = append([]string(nil), lines[e.First-1:e.Last]...)
				ev = append(ev, e)
			}
			f.Evidence = ev
			a.Findings = append(a.Findings, f)
		}
	}
	sort.SliceStable(a.Findings, func(i, j int) bool {
		fi, fj := a.Findings[i], a.Findings[j]
		if fi.Confidence != fj.Confidence {
			return fi.Confidence > fj.Confidence
		}
		return rank(fi.Class) < rank(fj.Class)
	})
	if len(a.Findings) > 0 {
		a.Diagnosis = a.Findings[0]
	} else {
		a.Diagnosis = Finding{Class: ClassUnknown, Summary: "no analyzer recognised this incident"}
	}
	return a
}

// Builtin returns the built-in analyzers: kernel panic, lockup (soft,
// hard, RCU stall, RT livelock), hung tasks, OOM, userspace hang with a
// live kernel, guest powered off or QEMU gone.
func Builtin() []Analyzer {
	return []Analyzer{panicAnalyzer{}, lockupAnalyzer{}, hungAnalyzer{}, oomAnalyzer{}, stateAnalyzer{}}
}

// textArtifacts are the guest-text artifacts searched, most telling first.
func textArtifacts(b *Bundle) []string {
	var out []string
	for _, a := range b.Manifest.Artifacts {
		if a.Name != "" && (a.Name == "erst.txt" || a.Name == "console.txt" || strings.HasPrefix(a.Name, "sysrq-")) {
			out = append(out, a.Name)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return textRank(out[i]) < textRank(out[j]) })
	return out
}

func textRank(n string) int {
	switch {
	case n == "erst.txt":
		return 0
	case n == "console.txt":
		return 1
	}
	return 2
}

// match finds the first line matching re in the artifacts, in order.
type hit struct {
	art   string
	lines []string
	i     int // 0-based
	m     []string
}

// find returns the first line matching re in the artifacts, in order.
// The pattern's literals (lits) filter first: an artifact holding none of
// them is not split into lines, a line holding none is not matched.
func find(b *Bundle, arts []string, re *regexp.Regexp) *hit { return findExcept(b, arts, re, nil) }

// findExcept is find skipping the lines that also match except (nil: none).
func findExcept(b *Bundle, arts []string, re, except *regexp.Regexp) *hit {
	lits := literals[re]
	has := func(s string) bool {
		if len(lits) == 0 {
			return true
		}
		for _, l := range lits {
			if strings.Contains(s, l) {
				return true
			}
		}
		return false
	}
	for _, a := range arts {
		if !has(b.Text(a)) {
			continue
		}
		lines := b.Lines(a)
		for i, l := range lines {
			if !has(l) {
				continue
			}
			if m := re.FindStringSubmatch(l); m != nil && (except == nil || !except.MatchString(l)) {
				return &hit{art: a, lines: lines, i: i, m: m}
			}
		}
	}
	return nil
}

var (
	rePanic = regexp.MustCompile(`Kernel panic - not syncing: (.*)$`)
	reOops  = regexp.MustCompile(`(BUG: .*|Oops: .*|general protection fault.*|kernel BUG at .*)$`)
	reRIP   = regexp.MustCompile(`RIP: ([0-9a-f]{4}):(\S+)`)
	reFrame = regexp.MustCompile(`^\s*(?:\[[ \d.]+\]\s*)?(?:\? )?([A-Za-z_][\w.]*\+0x[0-9a-f]+/0x[0-9a-f]+)(?: \[\w+\])?\s*$`)
	reStamp = regexp.MustCompile(`^(?:<\d>)?\[\s*\d+\.\d+\]\s?`)
	reSoft  = regexp.MustCompile(`soft lockup - CPU#(\d+) stuck for (\d+)s! \[(.*?)\]`)
	reHard  = regexp.MustCompile(`(?i)hard LOCKUP on cpu (\d+)`)
	reRCU   = regexp.MustCompile(`rcu: INFO: (\w+) (?:self-)?detected stalls? on CPUs?/tasks`)
	// reRCUTasks is the stall report's list of the tasks that block the
	// grace period ("rcu: \tTasks blocked on level-0 rcu_node (CPUs 0-0): P83 P90").
	reRCUTasks = regexp.MustCompile(`Tasks blocked on level-\d+ rcu_node \(CPUs [\d-]+\): ((?:P\d+\s*)+)`)
	// reTask is sched_show_task's header ("task:NAME state:R running task ... pid:83").
	reTask   = regexp.MustCompile(`task:(\S+)\s+state:(\S+).*\bpid:\s*(\d+)`)
	reNMI    = regexp.MustCompile(`NMI backtrace for cpu (\d+)`)
	reComm   = regexp.MustCompile(`CPU: (\d+) PID: (\d+) Comm: (\S+)`)
	reHung   = regexp.MustCompile(`INFO: task (\S+):(\d+) blocked for more than (\d+) seconds`)
	reDState = regexp.MustCompile(`task:(\S+)\s+state:D\b.*\bpid:\s*(\d+)`)
	reOOM    = regexp.MustCompile(`Out of memory: Killed process (\d+) \((.*?)\)|(\S+) invoked oom-killer`)
)

// literals are strings one of which every match of the pattern contains.
var literals = map[*regexp.Regexp][]string{
	rePanic:  {"Kernel panic - not syncing: "},
	reOops:   {"BUG: ", "Oops: ", "general protection fault", "kernel BUG at "},
	reSoft:   {"soft lockup - CPU#"},
	reHard:   {"LOCKUP", "lockup", "Lockup"},
	reRCU:    {"rcu: INFO: "},
	reNMI:    {"NMI backtrace for cpu "},
	reComm:   {"CPU: "},
	reHung:   {"INFO: task "},
	reDState: {"state:D"},
	reOOM:    {"Out of memory: Killed process ", "invoked oom-killer"},
}

// isOops reports whether a line starts an oops report (a soft lockup's
// "BUG: soft lockup" does not: it is a lockup, and the kernel lives on).
func isOops(l string) bool { return reOops.MatchString(l) && !reSoft.MatchString(l) }

// strip removes the printk timestamp so frame patterns match.
func strip(l string) string { return reStamp.ReplaceAllString(l, "") }

// frames returns up to n stack frames after line i (a "Call Trace:" or
// the header line), and the index of the last line used.
func frames(lines []string, i, n int) ([]string, int) {
	start := traceStart(lines, i)
	if start < 0 {
		return nil, i
	}
	out, last := framesFrom(lines, start+1, n)
	if len(out) == 0 {
		last = i
	}
	return out, last
}

// traceStart returns the index of the first "Call Trace:" line within 80
// lines from i, or -1.
func traceStart(lines []string, i int) int {
	for j := i; j < len(lines) && j < i+80; j++ {
		if strings.Contains(lines[j], "Call Trace:") {
			return j
		}
	}
	return -1
}

// framesFrom returns up to n stack frames from line start on (lines
// before the first frame skipped), and the index of the last line used.
func framesFrom(lines []string, start, n int) ([]string, int) {
	var out []string
	last := start
	for j := start; j < len(lines) && j < start+60 && len(out) < n; j++ {
		l := strip(lines[j])
		if strings.Contains(l, "<TASK>") || strings.Contains(l, "<IRQ>") || strings.Contains(l, "</IRQ>") || strings.HasPrefix(strings.TrimSpace(l), "? ") {
			continue
		}
		m := reFrame.FindStringSubmatch(l)
		if m == nil {
			if len(out) > 0 {
				break
			}
			continue
		}
		out = append(out, m[1])
		last = j
	}
	return out, last
}

func ev(h *hit, first, last int) Evidence {
	return Evidence{Artifact: h.art, First: first + 1, Last: last + 1}
}

type panicAnalyzer struct{}

func (panicAnalyzer) Name() string { return "builtin:panic" }

func (panicAnalyzer) Analyze(ctx context.Context, b *Bundle) ([]Finding, error) {
	arts := textArtifacts(b)
	h := find(b, arts, rePanic)
	// "watchdog: BUG: soft lockup - ..." is the lockup analyzer's, not an oops.
	oops := findExcept(b, arts, reOops, reSoft)
	if h == nil {
		if oops == nil {
			// The VM's timeline may say panicked (pvpanic) without any text.
			for _, t := range b.Manifest.Timeline {
				if t.State == "panicked" {
					return []Finding{{Class: ClassPanic, Confidence: 0.6, Summary: "the guest reported a panic (" + t.Source + ": " + t.Reason + ") but no panic text was captured",
						Details: map[string]string{"source": t.Source}}}, nil
				}
			}
			return nil, nil
		}
		// An oops without a panic: the kernel lives on (maybe wounded).
		f := Finding{Class: ClassPanic, Confidence: 0.5, Details: map[string]string{"oops": strings.TrimSpace(oops.m[1])}}
		loc, last := oopsWhere(oops.lines, oops.i, f.Details, false)
		f.Summary = "kernel oops (no panic): " + strings.TrimSpace(oops.m[1]) + loc
		f.Evidence = []Evidence{ev(oops, oops.i, last)}
		return []Finding{f}, nil
	}
	reason := strings.TrimSpace(h.m[1])
	f := Finding{Class: ClassPanic, Confidence: 0.95, Details: map[string]string{"reason": reason}}
	f.Summary = "kernel panic: " + reason
	// The oops (or the trace) before the panic line, in the same artifact.
	first, last := h.i, h.i
	for j := h.i; j >= 0 && j > h.i-120; j-- {
		if isOops(h.lines[j]) {
			// "BUG: ..." comes a few lines before "Oops: ...": take the first.
			for k := j - 1; k >= 0 && k >= j-6; k-- {
				if isOops(h.lines[k]) {
					j = k
				}
			}
			f.Details["oops"] = strings.TrimSpace(reOops.FindStringSubmatch(h.lines[j])[1])
			first = j
			break
		}
	}
	if first == h.i {
		// No oops line: the trace of the panicking CPU follows the panic.
		for j := h.i; j < len(h.lines) && j < h.i+40; j++ {
			if reComm.MatchString(h.lines[j]) || strings.Contains(h.lines[j], "Call Trace:") {
				break
			}
		}
	}
	loc, l2 := oopsWhere(h.lines, first, f.Details, false)
	if l2 > last {
		last = l2
	}
	f.Summary += loc
	f.Evidence = []Evidence{ev(h, first, last)}
	return []Finding{f}, nil
}

// noiseFrames are the frames of the reporting itself, skipped when
// naming where a trace is.
var noiseFrames = map[string]bool{"dump_stack_lvl": true, "dump_stack": true, "panic": true, "show_stack": true, "nmi_cpu_backtrace": true,
	"nmi_trigger_cpumask_backtrace": true, "_printk": true, "vpanic": true,
	"__schedule": true, "schedule": true, "schedule_timeout": true, "io_schedule": true, "__wait_for_common": true}

// topFrames returns up to 5 frames of the trace after line i, the
// reporting and scheduler frames left out, and the last line used.
func topFrames(lines []string, i int) ([]string, int) {
	return keepFrames(frames(lines, i, 12))
}

// keepFrames leaves the reporting and scheduler frames out of fr and keeps
// at most 5; l passes through.
func keepFrames(fr []string, l int) ([]string, int) {
	var kept []string
	for _, f := range fr {
		name, _, _ := strings.Cut(f, "+")
		if !noiseFrames[strings.TrimSuffix(name, ".cold")] {
			kept = append(kept, f)
		}
	}
	if len(kept) > 5 {
		kept = kept[:5]
	}
	return kept, l
}

// oopsWhere reads the RIP and the top frames from line i on into d and
// returns a summary suffix and the last line used. A kernel RIP (CS 0010)
// is the location; a user one (CS 0033, the registers saved at the
// syscall entry) is only said to be in userspace when it is all there is
// (userRIP: a CPU caught in userspace, SysRq l).
func oopsWhere(lines []string, i int, d map[string]string, userRIP bool) (string, int) {
	last := i
	var s string
	for j := i; j < len(lines) && j < i+60; j++ {
		m := reRIP.FindStringSubmatch(lines[j])
		if m == nil {
			continue
		}
		if m[1] == "0010" {
			d["location"] = m[2]
			s += " at " + m[2]
			last = max(last, j)
			break
		}
		if userRIP {
			d["location"] = "userspace " + m[2]
			s += " in userspace at " + m[2]
			last = max(last, j)
			break
		}
	}
	kept, l := topFrames(lines, i)
	if strings.HasPrefix(d["location"], "userspace ") {
		kept = nil // the trace is the NMI's or the SysRq's, not the task's
	}
	if len(kept) > 0 {
		d["frames"] = strings.Join(kept, " < ")
		if d["location"] == "" {
			s += " in " + kept[0]
		}
		last = max(last, l)
	}
	return s, last
}

// rcuStall reads RCU's stall report at h: the grace period's flavor, the
// tasks that block it (a reader preempted in its read-side section) and
// where the stalled context was. The report is printed from the timer
// tick, so its stack dump starts with the reporter's own interrupt frames:
// the place that matters is the interrupted one, after "</IRQ>".
func rcuStall(h *hit) Finding {
	f := Finding{Class: ClassLockup, Confidence: 0.75, Details: map[string]string{"kind": "rcu-stall", "flavor": h.m[1]}}
	last := h.i
	who := ""
	for j := h.i + 1; j < len(h.lines) && j < h.i+8; j++ {
		if m := reRCUTasks.FindStringSubmatch(h.lines[j]); m != nil {
			pids := strings.Fields(strings.ReplaceAll(m[1], "P", " "))
			f.Details["blocked_pids"] = strings.Join(pids, " ")
			last = j
			break
		}
	}
	for j := h.i + 1; j < len(h.lines) && j < h.i+12; j++ {
		if m := reTask.FindStringSubmatch(h.lines[j]); m != nil {
			f.Details["task"], f.Details["pid"] = m[1], m[3]
			who = fmt.Sprintf(": task %s (pid %s) holds up the grace period", m[1], m[3])
			last = max(last, j)
			break
		}
	}
	where, l := interruptedWhere(h.lines, h.i, f.Details)
	f.Summary = "RCU stall (" + h.m[1] + ")" + who + where
	f.Evidence = []Evidence{ev(h, h.i, max(last, l))}
	return f
}

// interruptedWhere is oopsWhere for a report printed from an interrupt:
// when the trace after line i has an "<IRQ>" part, the location is the
// kernel RIP saved after its "</IRQ>" and the frames are those below it;
// otherwise it is oopsWhere.
func interruptedWhere(lines []string, i int, d map[string]string) (string, int) {
	start := traceStart(lines, i)
	if start < 0 {
		return oopsWhere(lines, i, d, false)
	}
	for j := start + 1; j < len(lines) && j < start+60; j++ {
		if !strings.Contains(lines[j], "</IRQ>") {
			continue
		}
		for k := j + 1; k < len(lines) && k < j+6; k++ {
			m := reRIP.FindStringSubmatch(lines[k])
			if m == nil || m[1] != "0010" {
				continue
			}
			d["location"] = m[2]
			s, last := " at "+m[2], k
			if kept, l := keepFrames(framesFrom(lines, k+1, 12)); len(kept) > 0 {
				d["frames"] = strings.Join(kept, " < ")
				s += " in " + kept[0]
				last = l
			}
			return s, last
		}
		break
	}
	return oopsWhere(lines, i, d, false)
}

type lockupAnalyzer struct{}

func (lockupAnalyzer) Name() string { return "builtin:lockup" }

func (lockupAnalyzer) Analyze(ctx context.Context, b *Bundle) ([]Finding, error) {
	arts := textArtifacts(b)
	var out []Finding
	if h := find(b, arts, reSoft); h != nil {
		f := Finding{Class: ClassLockup, Confidence: 0.9, Details: map[string]string{"kind": "soft", "cpu": h.m[1], "task": h.m[3]}}
		where, last := oopsWhere(h.lines, h.i, f.Details, false)
		f.Summary = fmt.Sprintf("soft lockup on CPU %s (%ss, task %s)%s", h.m[1], h.m[2], h.m[3], where)
		f.Evidence = []Evidence{ev(h, h.i, last)}
		out = append(out, f)
	}
	if h := find(b, arts, reHard); h != nil {
		f := Finding{Class: ClassLockup, Confidence: 0.9, Details: map[string]string{"kind": "hard", "cpu": h.m[1]}}
		where, last := oopsWhere(h.lines, h.i, f.Details, false)
		f.Summary = "hard lockup on CPU " + h.m[1] + where
		f.Evidence = []Evidence{ev(h, h.i, last)}
		out = append(out, f)
	}
	if h := find(b, arts, reRCU); h != nil && len(out) == 0 {
		out = append(out, rcuStall(h))
	}
	if len(out) == 0 {
		// Interrupts off on a busy vCPU first: a SysRq l in the same
		// bundle answered only once they came back, on a CPU that had
		// moved on.
		if f, ok := irqsOffLockup(b); ok {
			out = append(out, f)
		} else if f, ok := livelock(b); ok {
			out = append(out, f)
		}
	}
	return out, nil
}

// hostVCPUs is the part of host.json the livelock rule reads.
type hostVCPUs struct {
	VCPUs []struct {
		Index    int     `json:"cpu_index"`
		State    string  `json:"state"`
		Percent  float64 `json:"cpu_percent"`
		Runnable float64 `json:"runnable_percent"`
	} `json:"vcpus"`
}

// regionState is the region verdict of region.json (monitor's, else the
// file's): state, and whether application slots are stale.
func regionState(b *Bundle) (state string, staleSlots int, ok bool) {
	data, err := os.ReadFile(filepath.Join(b.Dir, "region.json"))
	if err != nil {
		return "", 0, false
	}
	type v struct {
		State string `json:"state"`
		Slots []struct {
			State string `json:"state"`
		} `json:"slots"`
	}
	var r struct {
		Monitor *v `json:"monitor"`
		File    *v `json:"file"`
	}
	if json.Unmarshal(data, &r) != nil {
		return "", 0, false
	}
	pick := r.Monitor
	if pick == nil {
		pick = r.File
	}
	if pick == nil {
		return "", 0, false
	}
	for _, s := range pick.Slots {
		if s.State == "stale" {
			staleSlots++
		}
	}
	return pick.State, staleSlots, true
}

// livelock: the kernel's tick stopped (region stale) while every vCPU
// thread of QEMU is busy: the guest CPUs run but the kernel's periodic
// work does not (an RT task starving everything). SysRq l names the CPU
// and what runs there.
func livelock(b *Bundle) (Finding, bool) {
	st, _, ok := regionState(b)
	if !ok || st != "stale" {
		return Finding{}, false
	}
	if find(b, textArtifacts(b), rePanic) != nil {
		return Finding{}, false // a panicked kernel's final loop keeps its vCPU busy too
	}
	bm, n, ok := busyVCPUs(b)
	busy := len(bm)
	if !ok || busy < n {
		return Finding{}, false
	}
	f := Finding{Class: ClassLockup, Confidence: 0.75, Details: map[string]string{"kind": "livelock", "busy_vcpus": strconv.Itoa(busy)}}
	f.Summary = fmt.Sprintf("livelock: the kernel's tick stopped while all %d vCPUs are busy", busy)
	f.Evidence = []Evidence{{Artifact: "host.json", First: 1, Last: 1}}
	if lines := lineRange(b, "host.json", `"vcpus"`, 40); lines != nil {
		f.Evidence = []Evidence{*lines}
	}
	if hh := find(b, []string{"sysrq-l.txt"}, reComm); hh != nil {
		f.Details["cpu"], f.Details["task"] = hh.m[1], hh.m[3]
		where, last := oopsWhere(hh.lines, hh.i, f.Details, true)
		f.Summary += fmt.Sprintf("; SysRq l: CPU %s runs %s (pid %s)%s", hh.m[1], hh.m[3], hh.m[2], where)
		f.Evidence = append(f.Evidence, ev(hh, hh.i, last))
		f.Confidence = 0.85
	}
	return f, true
}

// lineRange is the evidence from the first line containing sub, n lines.
func lineRange(b *Bundle, art, sub string, n int) *Evidence {
	lines := b.Lines(art)
	for i, l := range lines {
		if strings.Contains(l, sub) {
			last := i + n - 1
			if last >= len(lines) {
				last = len(lines) - 1
			}
			return &Evidence{Artifact: art, First: i + 1, Last: last + 1}
		}
	}
	return nil
}

type hungAnalyzer struct{}

func (hungAnalyzer) Name() string { return "builtin:hung-task" }

func (hungAnalyzer) Analyze(ctx context.Context, b *Bundle) ([]Finding, error) {
	arts := textArtifacts(b)
	if h := find(b, arts, reHung); h != nil {
		f := Finding{Class: ClassHungTask, Confidence: 0.9, Details: map[string]string{"task": h.m[1], "pid": h.m[2]}}
		fr, last := topFrames(h.lines, h.i)
		f.Summary = fmt.Sprintf("task %s (pid %s) blocked in D state for more than %ss", h.m[1], h.m[2], h.m[3])
		if len(fr) > 0 {
			f.Details["frames"] = strings.Join(fr, " < ")
			f.Summary += " in " + fr[0]
		}
		f.Evidence = []Evidence{ev(h, h.i, last)}
		return []Finding{f}, nil
	}
	if h := find(b, []string{"sysrq-w.txt"}, reDState); h != nil {
		f := Finding{Class: ClassHungTask, Confidence: 0.8, Details: map[string]string{"task": h.m[1], "pid": h.m[2]}}
		fr, last := topFrames(h.lines, h.i)
		f.Summary = fmt.Sprintf("SysRq w: task %s (pid %s) in D state", h.m[1], h.m[2])
		if len(fr) > 0 {
			f.Details["frames"] = strings.Join(fr, " < ")
			f.Summary += ", blocked in " + fr[0]
		}
		f.Evidence = []Evidence{ev(h, h.i, last)}
		return []Finding{f}, nil
	}
	return nil, nil
}

type oomAnalyzer struct{}

func (oomAnalyzer) Name() string { return "builtin:oom" }

func (oomAnalyzer) Analyze(ctx context.Context, b *Bundle) ([]Finding, error) {
	h := find(b, textArtifacts(b), reOOM)
	if h == nil {
		return nil, nil
	}
	f := Finding{Class: ClassOOM, Confidence: 0.9, Details: map[string]string{}}
	if h.m[1] != "" {
		f.Details["killed_pid"], f.Details["killed"] = h.m[1], h.m[2]
		f.Summary = fmt.Sprintf("out of memory: the kernel killed %s (pid %s)", h.m[2], h.m[1])
	} else {
		f.Details["invoker"] = h.m[3]
		f.Summary = "out of memory: " + h.m[3] + " invoked the OOM killer"
	}
	last := h.i
	for j := h.i; j < len(h.lines) && j < h.i+5; j++ {
		last = j
	}
	f.Evidence = []Evidence{ev(h, h.i, last)}
	if m := lineRange(b, "sysrq-m.txt", "Mem-Info", 12); m != nil {
		f.Evidence = append(f.Evidence, *m)
	}
	return []Finding{f}, nil
}

// stateAnalyzer reads the monitor's own observations: the region verdict,
// the probe history, QMP and the host's view of QEMU.
type stateAnalyzer struct{}

func (stateAnalyzer) Name() string { return "builtin:state" }

func (stateAnalyzer) Analyze(ctx context.Context, b *Bundle) ([]Finding, error) {
	var out []Finding
	if f, ok := poweredOff(b); ok {
		out = append(out, f)
		return out, nil
	}
	st, stale, ok := regionState(b)
	if ok && st == "alive" {
		// A failed region probe says nothing about userspace: with the
		// region alive now it was a passing state (a boot, a reset).
		failing := 0
		var lastErr string
		if sc := b.Manifest.Scenario; sc == nil || sc.Probe.Kind != "region" {
			for _, r := range b.Manifest.ProbeHistory {
				if !r.OK {
					failing++
					lastErr = r.Error
				}
			}
		}
		if failing > 0 || stale > 0 {
			f := Finding{Class: ClassUserspaceHang, Confidence: 0.6, Details: map[string]string{"region": st}}
			f.Summary = "userspace hang: the kernel ticks (region alive)"
			if stale > 0 {
				f.Summary += fmt.Sprintf(", %d application heartbeat slot(s) stale", stale)
				f.Confidence += 0.1
				f.Details["stale_slots"] = strconv.Itoa(stale)
			}
			if failing > 0 {
				// A failing application-level probe (slot, console, exec,
				// tcp, http, disk) while the kernel ticks.
				f.Summary += fmt.Sprintf(", %d failed probes (last: %s)", failing, lastErr)
				f.Confidence += 0.15
			}
			if console := b.Lines("console.txt"); b.Manifest != nil && hasArtifact(b, "console.txt") && len(strings.TrimSpace(strings.Join(console, ""))) == 0 {
				f.Summary += ", console silent"
				f.Confidence += 0.05
			}
			if e := lineRange(b, "region.json", `"state": "alive"`, 3); e != nil {
				f.Evidence = append(f.Evidence, *e)
			}
			out = append(out, f)
		}
	}
	return out, nil
}

func hasArtifact(b *Bundle, name string) bool {
	for _, a := range b.Manifest.Artifacts {
		if a.Name == name {
			return true
		}
	}
	return false
}

// poweredOff: QEMU's status is shutdown, or QEMU is gone (the timeline's
// process/qmp source says so, and host.json finds no QEMU).
func poweredOff(b *Bundle) (Finding, bool) {
	var why []string
	var ev []Evidence
	conf := 0.0
	reset := false
	if data, err := os.ReadFile(filepath.Join(b.Dir, "qmp.json")); err == nil {
		var q struct {
			Replies map[string]json.RawMessage `json:"replies"`
		}
		if json.Unmarshal(data, &q) == nil {
			var s struct {
				Status string `json:"status"`
			}
			if raw, ok := q.Replies["query-status"]; ok && json.Unmarshal(raw, &s) == nil && s.Status == "shutdown" {
				why = append(why, "QEMU status shutdown")
				conf = 0.9
			}
		}
	}
	for _, t := range b.Manifest.Timeline {
		r := strings.ToLower(t.Reason + " " + t.State)
		if strings.Contains(r, "reset") {
			// QEMU ended on a guest reset (-no-reboot; a panic with
			// panic=-1 resets): a reboot, not a power-off.
			reset = true
			continue
		}
		if strings.Contains(r, "shutdown") || strings.Contains(r, "poweroff") || strings.Contains(r, "powered off") || t.State == "exited" {
			why = append(why, t.Source+" "+t.State+": "+t.Reason)
			if q, err := json.Marshal(t.Reason); err == nil {
				if e := lineRange(b, "manifest.json", `"reason": `+string(q), 1); e != nil {
					e.First = max(1, e.First-3) // time, source, state
					ev = append(ev, *e)
				}
			}
			if conf < 0.85 {
				conf = 0.85
			}
			break
		}
	}
	gone := 0
	for _, a := range b.Manifest.Artifacts {
		if (a.Diagnostic == "qmp" || a.Diagnostic == "registers" || strings.HasPrefix(a.Diagnostic, "sysrq:")) && a.Error != "" &&
			(strings.Contains(a.Error, "connection refused") || strings.Contains(a.Error, "no such file") || strings.Contains(a.Error, "not connected") || strings.Contains(a.Error, "disconnected")) {
			gone++
		}
	}
	if gone >= 2 {
		why = append(why, fmt.Sprintf("%d QMP diagnostics found no QEMU", gone))
		if conf < 0.8 {
			conf = 0.8
		}
	}
	if len(why) == 0 {
		return Finding{}, false
	}
	if reset && conf > 0.5 {
		conf = 0.5
		why = append(why, "after a guest reset")
	}
	f := Finding{Class: ClassPoweredOff, Confidence: conf, Summary: "guest powered off or QEMU gone: " + strings.Join(why, "; "), Evidence: ev}
	if e := lineRange(b, "qmp.json", `"status"`, 3); e != nil {
		f.Evidence = append(f.Evidence, *e)
	}
	return f, true
}

// ExecAnalyzer runs an executable as an analyzer: it gets the bundle
// directory as its only argument and prints findings as JSON on stdout
// (an array of Finding, or {"findings": [...]}). It is killed (with its
// process group) after Timeout (default 30 s).
type ExecAnalyzer struct {
	Path    string
	Timeout time.Duration
}

// Name implements Analyzer.
func (e ExecAnalyzer) Name() string { return "exec:" + filepath.Base(e.Path) }

// Analyze implements Analyzer.
func (e ExecAnalyzer) Analyze(ctx context.Context, b *Bundle) ([]Finding, error) {
	to := e.Timeout
	if to <= 0 {
		to = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	cmd := exec.Command(e.Path, b.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out, errb limitedBuffer
	out.max, errb.max = 4<<20, 4096
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return nil, fmt.Errorf("timed out after %s", to)
	}
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	if out.over {
		return nil, errors.New("stdout over 4 MiB")
	}
	return ParseFindings(out.Bytes())
}

// ParseFindings decodes an executable analyzer's output: a JSON array of
// findings or an object with a "findings" array.
func ParseFindings(b []byte) ([]Finding, error) {
	b = bytes.TrimSpace(b)
	var fs []Finding
	var err error
	if len(b) > 0 && b[0] == '{' {
		var w struct {
			Findings []Finding `json:"findings"`
		}
		err = json.Unmarshal(b, &w)
		fs = w.Findings
	} else {
		err = json.Unmarshal(b, &fs)
	}
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("findings JSON: offset %d: %w", se.Offset, err)
		}
		return nil, fmt.Errorf("findings JSON: %w", err)
	}
	for i, f := range fs {
		if f.Class == "" {
			return nil, fmt.Errorf("findings[%d].class: empty", i)
		}
		if f.Confidence < 0 || f.Confidence > 1 {
			return nil, fmt.Errorf("findings[%d].confidence: %v: want 0..1", i, f.Confidence)
		}
	}
	return fs, nil
}

type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.Len()+len(p) > l.max {
		l.over = true
		room := l.max - l.Len()
		if room > 0 {
			l.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return l.Buffer.Write(p)
}

var _ io.Writer = (*limitedBuffer)(nil)
