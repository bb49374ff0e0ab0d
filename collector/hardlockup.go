package collector

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// A hard lockup (a CPU spinning with interrupts disabled) is seen from the
// host when the guest cannot report it: the kernel's hard lockup detector
// needs a PMU NMI that not every hypervisor gives the guest (QEMU's TCG
// does not), and SysRq, an interrupt, waits until the CPU takes
// interrupts again. What the host sees is the region's tick stopped, the
// CPU's vCPU thread busy, and its registers (HMP "info registers -a",
// the gdbstub) in kernel mode with the interrupt flag clear.

var (
	reHMPCPU = regexp.MustCompile(`^CPU#(\d+)`)
	reHMPRIP = regexp.MustCompile(`RIP=([0-9a-f]+) RFL=([0-9a-f]+) \[[^\]]*\] CPL=(\d)`)
)

// rflagsIF is the interrupt-enable flag of RFLAGS.
const rflagsIF = 1 << 9

// irqsOffCPU is a vCPU caught in kernel mode with interrupts disabled.
type irqsOffCPU struct {
	cpu         int
	rip, rflags string
	first, last int // 0-based lines of its block in registers-hmp.txt
}

// hmpIRQsOff returns the vCPUs of registers-hmp.txt at CPL 0 with IF clear.
func hmpIRQsOff(b *Bundle) []irqsOffCPU {
	var out []irqsOffCPU
	cpu, start := -1, 0
	for i, l := range b.Lines("registers-hmp.txt") {
		if m := reHMPCPU.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			cpu, _ = strconv.Atoi(m[1])
			start = i
			continue
		}
		m := reHMPRIP.FindStringSubmatch(l)
		if m == nil || cpu < 0 {
			continue
		}
		fl, err := strconv.ParseUint(m[2], 16, 64)
		if err == nil && m[3] == "0" && fl&rflagsIF == 0 {
			out = append(out, irqsOffCPU{cpu: cpu, rip: m[1], rflags: m[2], first: start, last: i})
		}
		cpu = -1
	}
	return out
}

// gdbIRQsOff returns the vCPUs (by thread order) of registers-gdb.json whose
// cs selector is ring 0 and whose eflags has IF clear.
func gdbIRQsOff(b *Bundle) map[int]bool {
	data, err := os.ReadFile(filepath.Join(b.Dir, "registers-gdb.json"))
	if err != nil {
		return nil
	}
	var g struct {
		CPUs []struct {
			Registers []struct {
				Name string `json:"name"`
				Hex  string `json:"hex"`
			} `json:"registers"`
		} `json:"cpus"`
	}
	if json.Unmarshal(data, &g) != nil {
		return nil
	}
	out := map[int]bool{}
	for i, c := range g.CPUs {
		var fl, cs uint64
		var haveFL, haveCS bool
		for _, r := range c.Registers {
			v, err := strconv.ParseUint(r.Hex, 16, 64)
			switch {
			case err != nil:
			case r.Name == "eflags":
				fl, haveFL = v, true
			case r.Name == "cs":
				cs, haveCS = v, true
			}
		}
		if haveFL && haveCS && cs&3 == 0 && fl&rflagsIF == 0 {
			out[i] = true
		}
	}
	return out
}

// irqsOffLockup finds a hard lockup from the host's view: region stale,
// and a vCPU whose thread is busy on the host caught by HMP in kernel
// mode with interrupts disabled (0.8; 0.85 when the gdbstub, read a
// moment later, caught it so too).
//
// A kernel that panicked spins with interrupts off too (panic's final
// loop, when it does not reboot): with a panic in the bundle's text this
// is the panic's, not a lockup.
func irqsOffLockup(b *Bundle) (Finding, bool) {
	st, _, ok := regionState(b)
	if !ok || st != "stale" {
		return Finding{}, false
	}
	if find(b, textArtifacts(b), rePanic) != nil {
		return Finding{}, false
	}
	busy, _, ok := busyVCPUs(b)
	if !ok {
		return Finding{}, false
	}
	gdb := gdbIRQsOff(b)
	for _, c := range hmpIRQsOff(b) {
		if !busy[c.cpu] {
			continue
		}
		f := Finding{Class: ClassLockup, Confidence: 0.8,
			Details: map[string]string{"kind": "hard", "cpu": strconv.Itoa(c.cpu), "location": "RIP " + c.rip, "rflags": c.rflags, "source": "registers"}}
		f.Summary = fmt.Sprintf("hard lockup: CPU %d in the kernel with interrupts disabled (RIP %s, RFLAGS %s: IF clear) while the tick stopped and its vCPU thread is busy on the host",
			c.cpu, c.rip, c.rflags)
		if gdb[c.cpu] {
			f.Confidence = 0.85
			f.Details["source"] = "registers, gdbstub"
			f.Summary += "; the gdbstub saw the same"
		}
		f.Evidence = []Evidence{{Artifact: "registers-hmp.txt", First: c.first + 1, Last: c.last + 1}}
		if lines := lineRange(b, "host.json", `"vcpus"`, 40); lines != nil {
			f.Evidence = append(f.Evidence, *lines)
		}
		return f, true
	}
	return Finding{}, false
}

// busyVCPUs returns the vCPUs of host.json whose thread is busy (on a
// shared host a busy vCPU may get little CPU; it still wants it all the
// time: runnable) and how many vCPUs it lists.
func busyVCPUs(b *Bundle) (busy map[int]bool, n int, ok bool) {
	data, err := os.ReadFile(filepath.Join(b.Dir, "host.json"))
	if err != nil {
		return nil, 0, false
	}
	var h hostVCPUs
	if json.Unmarshal(data, &h) != nil || len(h.VCPUs) == 0 {
		return nil, 0, false
	}
	busy = map[int]bool{}
	for _, c := range h.VCPUs {
		if c.Percent >= 70 || c.Runnable >= 85 {
			busy[c.Index] = true
		}
	}
	return busy, len(h.VCPUs), true
}
