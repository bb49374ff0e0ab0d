package render

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/monitor"
)

func TestArtifactsEscapesErrors(t *testing.T) {
	var b strings.Builder
	require.NoError(t, Artifacts(&b, "  ", []monitor.Artifact{
		{Diagnostic: "sysrq:t", Name: "sysrq-t.txt", Size: 50195, Duration: 908 * time.Millisecond},
		{Diagnostic: "console", Error: "guest said \x1b[31mno"},
	}))
	assert.Equal(t, "  sysrq:t        sysrq-t.txt             50195 bytes     908 ms  ok\n"+
		"  console                                    0 bytes       0 ms  ERROR guest said \\x1b[31mno\n", b.String())
}
