package region_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

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

func TestMarkdownMentionsEveryField(t *testing.T) {
	md := region.Markdown()
	for _, f := range region.Fields {
		require.Contains(t, md, "`"+f.Name+"`")
		require.Contains(t, md, "`"+f.AMLName+"`")
	}
}
