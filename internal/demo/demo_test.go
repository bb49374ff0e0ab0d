package demo

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

	"github.com/acpidiag/acpidiag/internal/testguest/guesttest"
	"github.com/acpidiag/acpidiag/qemuhook"
)

// TestRunDemo runs the demo (real guest, real QEMU) with a short panic
// delay and JSON output, and checks the story it tells.
func TestRunDemo(t *testing.T) {
	guesttest.Kernel(t)
	var out, con bytes.Buffer
	sum, err := Run(context.Background(), &out, Options{PanicAfter: 2 * time.Second, JSON: true, Console: &con})
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
			Panic *qemuhook.PanicReport `json:"panic"`
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
