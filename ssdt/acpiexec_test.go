package ssdt_test

// A small harness around the real acpiexec (ACPICA's user-space AML
// interpreter): it runs methods of our SSDT on top of QEMU's real DSDTs,
// parses the region-access log (-vr), the opcode trace ("trace opcode"),
// return values and every error, and rebuilds the region image from the
// logged SystemMemory writes. acpiexec exits 0 even when AML fails, so every
// result here comes from parsing its output.

import (
	"bufio"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
)

// memOp is one SystemMemory access logged by acpiexec -vr.
type memOp struct {
	Write bool
	Addr  uint64
	Val   uint32
	Bits  int
}

// evalResult is what one "execute" did.
type evalResult struct {
	Method string
	Mem    []memOp
	PCI    int      // PCI_Config accesses (acpiexec logs them without values)
	Ops    []string // opcodes dispatched (only when traced)
	Ret    string   // returned integer as printed (hex), "" if none
	Status string   // AE_* status when the evaluation failed
}

// writes returns the SystemMemory writes of the evaluation.
func (e evalResult) writes() []memOp {
	var w []memOp
	for _, m := range e.Mem {
		if m.Write {
			w = append(w, m)
		}
	}
	return w
}

type execRun struct {
	Out    string
	Evals  []evalResult
	Errors []string // every error/exception/warning line
}

// evals returns the evaluations of method (full path) in order.
func (r execRun) evals(method string) []evalResult {
	var out []evalResult
	for _, e := range r.Evals {
		if e.Method == method {
			out = append(out, e)
		}
	}
	return out
}

// image rebuilds the region [base, base+size) from every SystemMemory write
// logged in the run (tick and simulated host writes alike), in order.
func (r execRun) image(base uint64, size int) []byte {
	img := make([]byte, size)
	for _, e := range r.Evals {
		for _, m := range e.Mem {
			if !m.Write || m.Bits != 32 || m.Addr < base || m.Addr+4 > base+uint64(size) {
				continue
			}
			binary.LittleEndian.PutUint32(img[m.Addr-base:], m.Val)
		}
	}
	return img
}

var (
	reMem     = regexp.MustCompile(`SystemMemory (Read|Write)\s*: Val ([0-9A-Fa-f]+) Addr ([0-9A-Fa-f]+) BitWidth ([0-9A-Fa-f]+)`)
	reEval    = regexp.MustCompile(`^Evaluating (\S+)`)
	reOp      = regexp.MustCompile(`Opcode Begin \[0x[0-9a-fA-Fx]+:([^\]]+)\]`)
	reRet     = regexp.MustCompile(`^\s*\[Integer\] = ([0-9A-Fa-f]+)`)
	reFailed  = regexp.MustCompile(`failed with status (AE_[A-Z_0-9]+)`)
	reErrLine = regexp.MustCompile(`ACPI Error|ACPI Exception|ACPI Warning|AE_[A-Z]|Firmware Error|Could not|[Ff]ailure`)
	// Known noise: the opcode tracer leaks one cache object at exit.
	reNoise = regexp.MustCompile(`Outstanding cache allocations|Not a Descriptor`)
)

func parseAcpiexec(out string) execRun {
	run := execRun{Out: out}
	var cur *evalResult
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := reEval.FindStringSubmatch(line); m != nil {
			run.Evals = append(run.Evals, evalResult{Method: m[1]})
			cur = &run.Evals[len(run.Evals)-1]
			continue
		}
		if reErrLine.MatchString(line) && !reNoise.MatchString(line) {
			run.Errors = append(run.Errors, line)
		}
		if cur == nil {
			continue
		}
		if m := reMem.FindStringSubmatch(line); m != nil {
			val, _ := strconv.ParseUint(m[2], 16, 32)
			addr, _ := strconv.ParseUint(m[3], 16, 64)
			bits, _ := strconv.ParseUint(m[4], 16, 8) // acpiexec prints the width in hex
			cur.Mem = append(cur.Mem, memOp{Write: m[1] == "Write", Addr: addr, Val: uint32(val), Bits: int(bits)})
		} else if strings.Contains(line, "Region access on SpaceId 02") {
			cur.PCI++
		} else if m := reOp.FindStringSubmatch(line); m != nil {
			cur.Ops = append(cur.Ops, m[1])
		} else if m := reRet.FindStringSubmatch(line); m != nil {
			cur.Ret = m[1]
		} else if m := reFailed.FindStringSubmatch(line); m != nil {
			cur.Status = m[1]
		}
	}
	return run
}

// runAcpiexec loads tables (DSDT first), presets the named fields in init
// (path -> value, acpiexec -fi) and runs the batch commands.
func runAcpiexec(t testing.TB, tables []string, init map[string]uint64, cmds ...string) execRun {
	t.Helper()
	return runAcpiexecFlags(t, nil, tables, init, cmds...)
}

// runAcpiexecFlags is runAcpiexec with extra acpiexec options (say -di:
// no _STA/_INI at namespace initialisation).
func runAcpiexecFlags(t testing.TB, flags, tables []string, init map[string]uint64, cmds ...string) execRun {
	t.Helper()
	bin := fixtures.RequireTool(t, "acpiexec")
	args := append([]string{"-vr"}, flags...)
	if len(init) > 0 {
		var b strings.Builder
		for k, v := range init {
			b.WriteString(k + " 0x" + strconv.FormatUint(v, 16) + "\n")
		}
		p := filepath.Join(t.TempDir(), "init.txt")
		require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o644))
		args = append(args, "-fi", p)
	}
	args = append(args, "-b", strings.Join(cmds, "; "))
	args = append(args, tables...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	require.NoError(t, err, "acpiexec %v:\n%s", args, out)
	return parseAcpiexec(string(out))
}

// qemuDSDT returns the path of a real QEMU DSDT from the shared fixtures.
func qemuDSDT(t testing.TB, machine string) string {
	t.Helper()
	return filepath.Join(fixtures.Real(t), "tables", machine+"_seabios_default", "DSDT.dat")
}

// iaslCompile compiles ASL source with the real iasl and returns the .aml path.
func iaslCompile(t testing.TB, asl string) string {
	t.Helper()
	bin := fixtures.RequireTool(t, "iasl")
	dir := t.TempDir()
	src := filepath.Join(dir, "in.asl")
	require.NoError(t, os.WriteFile(src, []byte(asl), 0o644))
	out, err := exec.Command(bin, "-p", filepath.Join(dir, "out"), src).CombinedOutput()
	require.NoError(t, err, "iasl:\n%s", out)
	return filepath.Join(dir, "out.aml")
}

// hostSim returns the compiled helper table that defines \HSTW(addr, value):
// it plays the host by writing one word into acpiexec's simulated memory.
// acpiexec shares that memory between regions at the same address, so the
// tick sees the value; call it only after a tick created the region.
func hostSim(t testing.TB) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "ssdt_hostsim.asl"))
	require.NoError(t, err)
	return iaslCompile(t, string(src))
}

// hostWrite returns the acpiexec command writing v at addr via \HSTW.
func hostWrite(addr uint64, v uint32) string {
	return "execute \\HSTW 0x" + strconv.FormatUint(addr, 16) + " 0x" + strconv.FormatUint(uint64(v), 16)
}

func TestParseAcpiexecOutput(t *testing.T) {
	// A parser that cannot fail would make every acpiexec test vacuous:
	// check it on lines in the exact format acpiexec 20200925 prints.
	out := strings.Join([]string{
		`Evaluating \_TZ.DIAG._TMP`,
		`AcpiExec: Region access on SpaceId 02`,
		`AcpiExec: SystemMemory Read : Val 00000002 Addr FE000010 BitWidth 20 [REGION: BaseAddr FE000000 Len 10000]`,
		`AcpiExec: SystemMemory Write: Val 00000003 Addr FE000010 BitWidth 20 [REGION: BaseAddr FE000000 Len 10000]`,
		`  extrace-0193 [02]    ExTracePoint        : Opcode Begin [0x0x562eafdc045b:LNot] execution.`,
		`Evaluation of \_TZ.DIAG._TMP returned object 0x55b5b62e2d60, external buffer length 18`,
		`  [Integer] = 0000000000000BB8`,
		`Evaluating \X`,
		`Evaluation of \X failed with status AE_NOT_FOUND`,
		`ACPI Error: 1 (0x1) Outstanding cache allocations (20200925/uttrack-794)`,
	}, "\n")
	r := parseAcpiexec(out)
	require.Len(t, r.Evals, 2)
	e := r.Evals[0]
	require.Equal(t, `\_TZ.DIAG._TMP`, e.Method)
	require.Equal(t, 1, e.PCI)
	require.Equal(t, []memOp{{false, 0xFE000010, 2, 32}, {true, 0xFE000010, 3, 32}}, e.Mem)
	require.Equal(t, []string{"LNot"}, e.Ops)
	require.Equal(t, "0000000000000BB8", e.Ret)
	require.Equal(t, "AE_NOT_FOUND", r.Evals[1].Status)
	require.Len(t, r.Errors, 1, "the failure is an error, the tracer's cache leak is not: %v", r.Errors)
	img := r.image(0xFE000000, 0x20)
	require.Equal(t, uint32(3), binary.LittleEndian.Uint32(img[0x10:]))
}
