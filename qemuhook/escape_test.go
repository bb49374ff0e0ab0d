package qemuhook

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
)

// followHostile attaches to a real (idle) QEMU whose ERST store then gets
// a real panic record with a hostile panic line (fixtures.HostileERST),
// follows the verdicts with Follow until QEMU is killed, and returns what
// Follow printed and the summary.
func followHostile(t *testing.T, asJSON bool) (string, Summary) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	checkNoLeak(t)
	dir := shortTempDir(t)
	cfg := idleConfig(t, dir)
	cfg.ERSTPath = ""
	p, err := Start(context.Background(), cfg, StartOptions{})
	require.NoError(t, err)
	defer p.Kill()
	store := filepath.Join(dir, "store")
	s, err := Attach(context.Background(), AttachConfig{QMPSocket: cfg.QMPSocket, RegionPath: cfg.Channel.BackingPath, ERSTPath: store},
		SupervisorOptions{ERSTInterval: 50 * time.Millisecond})
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
	sum, err := Follow(context.Background(), s, &out, FollowOptions{JSON: asJSON, Progress: -1})
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
		require.NoError(t, WriteSummary(&sb, sum, false))
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
					State  string       `json:"state"`
					Reason string       `json:"reason"`
					Panic  *PanicReport `json:"panic"`
				} `json:"verdict"`
				Panic *PanicReport `json:"panic"`
			}
			require.NoError(t, json.Unmarshal([]byte(line), &m))
			switch {
			case m.Type == "verdict" && m.Verdict.State == StatePanicked:
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
