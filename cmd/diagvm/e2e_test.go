//go:build e2e

package main

// End-to-end tests of diagvm run with the real test guest under real QEMU
// (TCG): the JSON and text streams a user sees across guest reboots and
// panics. Run with `make e2e`.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/internal/testguest"
	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"github.com/acpidiag/acpidiag/qemuhook"
)

// guestFiles returns the test guest's kernel and initramfs paths.
func guestFiles(t *testing.T) (string, string) {
	t.Helper()
	k, ird := guesttest.Require(t)
	return k.Vmlinuz, ird.Path
}

// jsonLine is one line of diagvm run --json: a verdict, a progress line
// or the summary (of which only the boot count is decoded here).
type jsonLine struct {
	Type    string      `json:"type"`
	Verdict jsonVerdict `json:"verdict"`
	Boots   uint32      `json:"boots"`
}

// jsonVerdict is the part of a verdict line these tests read.
type jsonVerdict struct {
	State  qemuhook.State  `json:"state"`
	Source qemuhook.Source `json:"source"`
	Reason string          `json:"reason"`
	Region *struct {
		State string `json:"state"`
		Boots uint32 `json:"boots"`
	} `json:"region"`
	Panic *qemuhook.PanicReport `json:"panic"`
}

// runJSON runs diagvm with args (plus --json) and hands every output line
// to each until it returns true; then the run is stopped (as by Ctrl-C) and
// its exit code and lines returned.
func runJSON(t *testing.T, within time.Duration, each func(jsonLine) bool, args ...string) (int, []jsonLine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	pr, pw := io.Pipe()
	var errb strings.Builder
	code := make(chan int, 1)
	go func() {
		c := run(ctx, append(args, "--json"), pw, &errb)
		pw.Close()
		code <- c
	}()
	var lines []jsonLine
	sc := bufio.NewScanner(pr)
	sc.Buffer(nil, 4<<20)
	done := false
	for sc.Scan() {
		var l jsonLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
		lines = append(lines, l)
		if l.Type == "verdict" {
			t.Logf("%s [%s] %s", l.Verdict.State, l.Verdict.Source, l.Verdict.Reason)
		}
		if !done && each(l) {
			done = true
			cancel()
		}
	}
	c := <-code
	require.True(t, done, "the run ended before the expected verdicts (ctx %v); stderr:\n%s", ctx.Err(), errb.String())
	return c, lines
}

// states returns "state/source" of the verdict lines.
func states(lines []jsonLine) []string {
	var out []string
	for _, l := range lines {
		if l.Type == "verdict" {
			out = append(out, string(l.Verdict.State)+"/"+string(l.Verdict.Source))
		}
	}
	return out
}

// TestE2ERunRebootLoop: diagvm run keeps the VM across guest reboots by
// default. The guest reboots in its first two boots (testguest.LastBoot(2))
// and stays alive in the third: the JSON stream shows alive with boots 1,
// then reset, rebooted and alive with boots 2, then the same with boots 3.
func TestE2ERunRebootLoop(t *testing.T) {
	kernel, initrd := guestFiles(t)
	dir, err := os.MkdirTemp("", "dv")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	// seen[b] lists the region states seen with boot count b, in order.
	seen := map[uint32][]string{}
	_, lines := runJSON(t, 8*time.Minute, func(l jsonLine) bool {
		v := l.Verdict
		if l.Type != "verdict" || v.Source != qemuhook.SourceRegion || v.Region == nil {
			return false
		}
		b := v.Region.Boots
		seen[b] = append(seen[b], string(v.State))
		return b == 3 && v.State == "alive"
	}, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256", "--workdir", dir,
		"--append", testguest.BootArgs(testguest.ModeReboot, 4*time.Second, testguest.LastBoot(2)))
	t.Logf("region states by boot: %v", seen)
	for b := uint32(1); b <= 3; b++ {
		assert.Contains(t, seen[b], "alive", "boot %d seen alive", b)
		if b > 1 {
			require.NotEmpty(t, seen[b])
			assert.Equal(t, "rebooted", seen[b][0], "boot %d begins with rebooted", b)
		}
	}
	st := strings.Join(states(lines), " ")
	assert.Equal(t, 2, strings.Count(st, "rebooted/region"), st)
	assert.GreaterOrEqual(t, strings.Count(st, "reset/qmp"), 2, st)
	assert.NotContains(t, st, "shutdown/qmp")
	assert.NotContains(t, st, "panicked")
	last := lines[len(lines)-1]
	require.Equal(t, "summary", last.Type)
	assert.Equal(t, uint32(3), last.Boots)
}

// TestE2ERunPanicWithoutPVPanic: a guest without the pvpanic driver
// (testguest.NoPVPanic) panics. On q35, by default, the VM goes on: the
// JSON stream shows panicked (from ERST, with the panic line) once, then
// the reset, rebooted and alive with boots 2. On pc with --no-reboot, the
// text output shows panicked with the panic line before the shutdown and
// QEMU's exit, the summary the panic from ERST, and the exit status says
// the guest panicked.
func TestE2ERunPanicWithoutPVPanic(t *testing.T) {
	kernel, initrd := guestFiles(t)
	const line = "Kernel panic - not syncing: sysrq triggered crash"
	t.Run("q35-reboot", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "dv")
		require.NoError(t, err)
		defer os.RemoveAll(dir)
		_, lines := runJSON(t, 6*time.Minute, func(l jsonLine) bool {
			v := l.Verdict
			return l.Type == "verdict" && v.Source == qemuhook.SourceRegion && v.State == "alive" &&
				v.Region != nil && v.Region.Boots == 2
		}, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256", "--workdir", dir, "--machine", "q35",
			"--append", testguest.BootArgs(testguest.ModePanic, 3*time.Second, testguest.NoPVPanic, testguest.LastBoot(1)))
		st := states(lines)
		joined := strings.Join(st, " ")
		require.Equal(t, 1, strings.Count(joined, "panicked/"), joined)
		var pi, ri, rbi int = -1, -1, -1
		for i, l := range lines {
			v := l.Verdict
			switch {
			case l.Type != "verdict":
			case v.State == qemuhook.StatePanicked:
				pi = i
				require.NotNil(t, v.Panic)
				assert.Equal(t, line, v.Panic.PanicLine)
				assert.Equal(t, qemuhook.SourceERST, v.Source)
				assert.False(t, v.Panic.PVPanic)
			case v.State == qemuhook.StateReset && ri < 0:
				ri = i
			case v.State == "rebooted" && rbi < 0:
				rbi = i
				assert.Equal(t, uint32(2), v.Region.Boots)
			}
		}
		assert.True(t, pi >= 0 && pi < ri && ri < rbi, "panicked, then reset, then rebooted: %s", joined)
	})
	t.Run("pc-no-reboot", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "dv")
		require.NoError(t, err)
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		code, out, stderr := runCLI(t, ctx, "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256", "--workdir", dir,
			"--machine", "pc", "--no-reboot", "--append", testguest.BootArgs(testguest.ModePanic, 3*time.Second, testguest.NoPVPanic))
		t.Logf("stdout:\n%s", out)
		assert.Equal(t, exitPanicked, code, stderr)
		p := strings.Index(out, "panicked  [erst] ERST: Panic#1: "+line+"\n")
		s := strings.Index(out, "shutdown  [qmp] shutdown (guest-reset)")
		e := strings.Index(out, "exited    [process]")
		assert.True(t, p >= 0 && s > p && e > s, "panicked, then shutdown, then exit: p %d s %d e %d", p, s, e)
		assert.Equal(t, 1, strings.Count(out, "panicked  ["), "one panicked verdict")
		assert.Contains(t, out, "  panic:        from erst (Panic#1, ERST records")
		assert.Contains(t, out, fmt.Sprintf("\n    %s\n", line))
		assert.Contains(t, out, "qemu:         exit code 0 (expected)")
	})
}
