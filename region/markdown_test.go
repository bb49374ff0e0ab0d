package region_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/region"
)

var update = flag.Bool("update", false, "rewrite docs/region.md from region.Markdown()")

func TestMarkdownIsCurrent(t *testing.T) {
	path := filepath.Join(fixtures.RepoRoot(), "docs", "region.md")
	want := region.Markdown()
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
	}
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, want, string(got), "docs/region.md is stale: run go test ./region -run TestMarkdownIsCurrent -update")
}

// handLayout is the v1 layout written out by hand, independently of
// region.Fields: the contract guests and hosts already in the field rely
// on. A field added, moved, renamed or given to another writer in the code
// without updating this list (and thereby docs/region.md) fails below.
var handLayout = []string{
	"| `0x00` | `magic` | `MAGC` | guest AML |",
	"| `0x04` | `version` | `VERS` | guest AML |",
	"| `0x08` | `header_size` | `HSIZ` | guest AML |",
	"| `0x0C` | `region_size` | `RSIZ` | guest AML |",
	"| `0x10` | `seq` | `SEQN` | guest AML |",
	"| `0x14` | `ticks` | `TICK` | guest AML |",
	"| `0x18` | `boots` | `BOOT` | guest AML |",
	"| `0x1C` | `period` | `PERD` | guest AML |",
	"| `0x20` | `timer_lo` | `TMRL` | guest AML |",
	"| `0x24` | `echo_lo` | `ECHL` | guest AML |",
	"| `0x28` | `echo_hi` | `ECHH` | guest AML |",
	"| `0x2C` | `osi` | `OSIB` | guest AML |",
	"| `0x30` | `rev` | `REVN` | guest AML |",
	"| `0x34` | `mbx_ack` | `MACK` | guest AML |",
	"| `0x38` | `mbx_result` | `MRES` | guest AML |",
	"| `0x3C` | `mbx_value` | `MVAL` | guest AML |",
	"| `0x40` | `host_stamp_lo` | `HSTL` | host |",
	"| `0x44` | `host_stamp_hi` | `HSTH` | host |",
	"| `0x48` | `mbx_cmd` | `MCMD` | host |",
	"| `0x4C` | `mbx_arg` | `MARG` | host |",
	"| `0x50` | `mbx_seq` | `MSEQ` | host |",
	"| `0x80`–`0xFF` | slots | – | guest software |",
}

// The field table of the checked-in docs/region.md, and so of Markdown(),
// is exactly the hand list: same rows, same order, nothing more.
func TestMarkdownFieldTableMatchesHandList(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(fixtures.RepoRoot(), "docs", "region.md"))
	require.NoError(t, err)
	for name, text := range map[string]string{"docs/region.md": string(doc), "Markdown()": region.Markdown()} {
		_, table, ok := strings.Cut(text, "## Fields\n")
		require.True(t, ok, "%s has no Fields section", name)
		table, _, _ = strings.Cut(table, "\n\n\n")
		var rows []string
		for _, line := range strings.Split(table, "\n") {
			if strings.HasPrefix(line, "| `0x") {
				rows = append(rows, line)
			}
		}
		require.Len(t, rows, len(handLayout), "%s: field rows", name)
		for i, want := range handLayout {
			assert.True(t, strings.HasPrefix(rows[i], want), "%s row %d: got %q, want it to start with %q", name, i, rows[i], want)
		}
	}
	assert.Len(t, region.Fields, len(handLayout)-1, "one hand row per field, plus the slots")
}
