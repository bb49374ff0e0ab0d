package render_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/render"
	"github.com/acpidiag/acpidiag/qemuhook"
	"github.com/acpidiag/acpidiag/ssdt"
)

// idleQEMU starts a real QEMU that never runs the guest (-S: no kernel
// needed), with the diagnostic channel wired.
func idleQEMU(t *testing.T) (*qemuhook.Process, qemuhook.Config) {
	t.Helper()
	dir, err := os.MkdirTemp("", "rd") // short: unix socket paths
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ch, err := qemuhook.NewChannel(dir, ssdt.DefaultConfig(), qemuhook.MachineQ35)
	require.NoError(t, err)
	cfg := qemuhook.Config{MemoryMB: 64, Workdir: dir, Channel: ch,
		QMPSocket: filepath.Join(dir, "qmp"), SerialSocket: filepath.Join(dir, "serial"), Extra: []string{"-S"}}
	p, err := qemuhook.Start(context.Background(), cfg, qemuhook.StartOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { p.Kill() })
	return p, cfg
}

// followHostile attaches to a real (idle) QEMU whose ERST store then gets
// a real panic record with a hostile panic line (fixtures.HostileERST),
// follows the verdicts with Follow until QEMU is killed, and returns what
// Follow printed and the summary.
func followHostile(t *testing.T, asJSON bool) (string, qemuhook.Summary) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	p, cfg := idleQEMU(t)
	store := filepath.Join(cfg.Workdir, "store")
	s, err := qemuhook.Attach(context.Background(), qemuhook.AttachConfig{QMPSocket: cfg.QMPSocket, RegionPath: cfg.Channel.BackingPath, ERSTPath: store},
		qemuhook.SupervisorOptions{ERSTInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close()
	go func() {
		time.Sleep(300 * time.Millisecond)
		if err := os.WriteFile(store, fixtures.HostileERST(t), 0o644); err != nil {
			t.Error(err)
		}
		time.Sleep(1500 * time.Millisecond)
		p.Kill()
	}()
	var out bytes.Buffer
	sum, err := render.Follow(context.Background(), s, &out, render.FollowOptions{JSON: asJSON, Progress: -1})
	require.NoError(t, err)
	return out.String(), sum
}

// TestFollowEscapesOnce: library values hold the guest's raw text; Follow
// and WriteSummary escape it exactly once: the text shows the ESC byte as
// \x1b and keeps the quote and "café"; the JSON lines carry the raw text.
func TestFollowEscapesOnce(t *testing.T) {
	t.Run("text", func(t *testing.T) {
		out, sum := followHostile(t, false)
		require.NotNil(t, sum.Panic)
		assert.Equal(t, fixtures.HostileLine, sum.Panic.PanicLine, "the library value is raw")
		assert.Contains(t, sum.Panic.Text, fixtures.HostileLine)
		assert.Contains(t, out, "panicked  [erst] ERST: Panic#1: "+fixtures.HostileShown+"\n")
		assert.Contains(t, out, "\n    "+fixtures.HostileShown+"\n", "the summary's panic line")
		assert.NotContains(t, out, "\x1b")
		for _, twice := range []string{`\x22`, `\x5c`, `\\x1b`, `caf\xc3`} {
			assert.NotContains(t, out, twice)
		}
		var sb strings.Builder
		require.NoError(t, render.WriteSummary(&sb, sum, false))
		assert.Contains(t, sb.String(), "    "+fixtures.HostileShown+"\n")
	})
	t.Run("json", func(t *testing.T) {
		out, _ := followHostile(t, true)
		var panicked, summaries int
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			require.True(t, json.Valid([]byte(line)), line)
			var m struct {
				Type    string `json:"type"`
				Verdict struct {
					State  string                `json:"state"`
					Reason string                `json:"reason"`
					Panic  *qemuhook.PanicReport `json:"panic"`
				} `json:"verdict"`
				Panic *qemuhook.PanicReport `json:"panic"`
			}
			require.NoError(t, json.Unmarshal([]byte(line), &m))
			switch {
			case m.Type == "verdict" && m.Verdict.State == string(qemuhook.StatePanicked):
				panicked++
				assert.Equal(t, "ERST: Panic#1: "+fixtures.HostileLine, m.Verdict.Reason)
				require.NotNil(t, m.Verdict.Panic)
				assert.Equal(t, fixtures.HostileLine, m.Verdict.Panic.PanicLine)
			case m.Type == "summary":
				summaries++
				require.NotNil(t, m.Panic)
				assert.Equal(t, fixtures.HostileLine, m.Panic.PanicLine)
				assert.Contains(t, m.Panic.Text, fixtures.HostileLine)
			}
		}
		assert.Equal(t, 1, panicked, out)
		assert.Equal(t, 1, summaries)
		assert.NotContains(t, out, `\\x`, "nothing escaped before the JSON encoding")
	})
}

func TestWriteSummaryText(t *testing.T) {
	var b bytes.Buffer
	sum := qemuhook.Summary{Last: qemuhook.Verdict{State: qemuhook.StateExited, Source: qemuhook.SourceProcess, Reason: "QEMU signal: killed unexpectedly"},
		Ticks: 7, Boots: 2, Verdicts: 5,
		Exit: &qemuhook.ExitReport{Code: -1, Signal: "killed", Stderr: []string{"qemu: boom"}},
		Panic: &qemuhook.PanicReport{Source: "erst", Reason: "Panic", Count: 1, RecordIDs: []uint64{0x10}, PanicLine: "Kernel panic - not syncing: x",
			Text: "<6>[    1.0] hello\n<6>[    2.0] sysrq: Trigger a crash\n<0>[    2.1] Kernel panic - not syncing: x\n<4>[    2.2] CPU: 0\n"}}
	require.NoError(t, render.WriteSummary(&b, sum, false))
	s := b.String()
	assert.Contains(t, s, "qemu:         signal killed (UNEXPECTED)")
	assert.Contains(t, s, "stderr: qemu: boom")
	assert.Contains(t, s, "(Panic#1, ERST records [0x10])")
	assert.Contains(t, s, "    [    2.0] sysrq: Trigger a crash\n    [    2.1] Kernel panic - not syncing: x\n    [    2.2] CPU: 0\n")
	assert.NotContains(t, s, "hello")
}

// The crash context starts at any crash line hostreader.CrashLines knows
// (here a general protection fault, which the old narrower copy missed:
// it printed the last 25 lines instead).
func TestWriteSummaryCrashContextUsesCrashLines(t *testing.T) {
	var log strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&log, "<6>[    %d.0] line %d\n", i, i)
		if i == 5 {
			log.WriteString("<4>[    5.5] general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP\n")
		}
	}
	var b strings.Builder
	require.NoError(t, render.WriteSummary(&b, qemuhook.Summary{Panic: &qemuhook.PanicReport{Source: "erst", Text: log.String()}}, false))
	assert.Contains(t, b.String(), "kernel log from ERST (the crash):\n    [    5.5] general protection fault")
	assert.NotContains(t, b.String(), "line 39")
	assert.Equal(t, []string{"general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP"}, hostreader.CrashLines(log.String()))
}

// The text summary names the SIGBUS cause under the qemu line.
func TestWriteSummaryNamesExitCause(t *testing.T) {
	var b strings.Builder
	require.NoError(t, render.WriteSummary(&b, qemuhook.Summary{Exit: &qemuhook.ExitReport{Code: -1, Signal: "bus error",
		Cause: "SIGBUS on file-backed guest memory: the ERST store file /w/erst is 0 bytes"}}, false))
	assert.Contains(t, b.String(), "qemu:         signal bus error (UNEXPECTED)\n    cause: SIGBUS on file-backed guest memory: the ERST store file /w/erst is 0 bytes\n")
}
