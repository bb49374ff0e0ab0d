package qemuhook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunDemo runs the demo (real guest, real QEMU) with a short panic
// delay and JSON output, and checks the story it tells.
func TestRunDemo(t *testing.T) {
	requireGuest(t)
	checkNoLeak(t)
	var out, con bytes.Buffer
	sum, err := RunDemo(context.Background(), &out, DemoOptions{PanicAfter: 2 * time.Second, JSON: true, Console: &con})
	require.NoError(t, err, out.String())
	require.NotNil(t, sum.Panic)
	assert.Equal(t, "Kernel panic - not syncing: sysrq triggered crash", sum.Panic.PanicLine)
	assert.Contains(t, con.String(), "acpidiag-guest: panicking now", "the console tee got the serial output")

	var seq []string
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m struct {
			Type    string `json:"type"`
			Verdict struct {
				State, Source string
			} `json:"verdict"`
			Panic *PanicReport `json:"panic"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		switch m.Type {
		case "verdict":
			seq = append(seq, m.Verdict.State+"/"+m.Verdict.Source)
		case "summary":
			require.NotNil(t, m.Panic)
			assert.Equal(t, "erst", m.Panic.Source)
			seq = append(seq, "summary")
		}
	}
	s := strings.Join(seq, " ")
	for _, want := range []string{"alive/region", "panicked/erst", "exited/process", "summary"} {
		assert.Contains(t, s, want)
	}
	assert.Equal(t, 1, strings.Count(s, "panicked/"), "one panicked verdict (pvpanic and ERST together): %s", s)
	assert.True(t, sum.Panic.PVPanic, "pvpanic announced it")
	assert.Less(t, strings.Index(s, "alive/region"), strings.Index(s, "panicked/erst"))
	assert.Less(t, strings.Index(s, "panicked/erst"), strings.Index(s, "exited/process"))
}

func TestWriteSummaryText(t *testing.T) {
	var b bytes.Buffer
	sum := Summary{Last: Verdict{State: StateExited, Source: SourceProcess, Reason: "QEMU signal: killed unexpectedly"},
		Ticks: 7, Boots: 2, Verdicts: 5,
		Exit: &ExitReport{Code: -1, Signal: "killed", Stderr: []string{"qemu: boom"}},
		Panic: &PanicReport{Source: "erst", Reason: "Panic", Count: 1, RecordIDs: []uint64{0x10}, PanicLine: "Kernel panic - not syncing: x",
			Text: "<6>[    1.0] hello\n<6>[    2.0] sysrq: Trigger a crash\n<0>[    2.1] Kernel panic - not syncing: x\n<4>[    2.2] CPU: 0\n"}}
	require.NoError(t, WriteSummary(&b, sum, false))
	s := b.String()
	assert.Contains(t, s, "qemu:         signal killed (UNEXPECTED)")
	assert.Contains(t, s, "stderr: qemu: boom")
	assert.Contains(t, s, "(Panic#1, ERST records [0x10])")
	assert.Contains(t, s, "    [    2.0] sysrq: Trigger a crash\n    [    2.1] Kernel panic - not syncing: x\n    [    2.2] CPU: 0\n")
	assert.NotContains(t, s, "hello")
}
