package collector

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
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

// TestAnalyzersRealHungTaskAndSoftLockup: on the real bundles of the test
// module's hang, softlockup and rcustall modes the diagnosis names who and
// where (fixtures/bundles, provenance in fixtures/README.md). The RCU
// stall's where is the interrupted task's (the report's own trace starts
// in the timer interrupt that printed it). The soft lockup's
// "watchdog: BUG: soft lockup" line is no oops: no kernel-panic finding at
// all (the panic analyzer took it for one, at 0.5, before).
func TestAnalyzersRealHungTaskAndSoftLockup(t *testing.T) {
	for _, c := range []struct {
		id, class string
		details   map[string]string // key → the value's prefix
	}{
		{"20261129T132434.005Z-guest-manual-131cf1", ClassHungTask,
			map[string]string{"task": "acpidiag-hang", "pid": "82", "frames": "acpidiag_hang+0x70/0x96 < acpidiag_oops_init+"}},
		{"20261129T132457.311Z-guest-softlockup-1430ad", ClassLockup,
			map[string]string{"kind": "soft", "cpu": "0", "task": "acpidiag-spin:83", "location": "delay_tsc+0x33/0xa0",
				"frames": "acpidiag_softlockup+0x6c/0xf6a < acpidiag_oops_init+"}},
		{"20261129T155916.953Z-guest-manual-113b97", ClassLockup,
			map[string]string{"kind": "rcu-stall", "flavor": "rcu_preempt", "blocked_pids": "83", "task": "acpidiag-rcu", "pid": "83",
				"location": "delay_tsc+0x33/0xa0", "frames": "acpidiag_rcustall+0x67/0xedb < acpidiag_oops_init+"}},
	} {
		t.Run(c.id, func(t *testing.T) {
			a, err := AnalyzeDir(context.Background(), filepath.Join(fixtures.Dir(), "bundles", c.id), Builtin())
			if err != nil {
				t.Fatal(err)
			}
			d := a.Diagnosis
			t.Logf("%s %.2f %s %v", d.Class, d.Confidence, d.Summary, d.Details)
			if d.Class != c.class || d.Confidence < HighConfidence {
				t.Fatalf("diagnosis %s %.2f, want %s", d.Class, d.Confidence, c.class)
			}
			for k, want := range c.details {
				if !strings.HasPrefix(d.Details[k], want) {
					t.Errorf("detail %s = %q, want prefix %q", k, d.Details[k], want)
				}
			}
			if len(d.Evidence) == 0 || d.Evidence[0].Artifact != "console.txt" || len(d.Evidence[0].Lines) < 5 {
				t.Errorf("evidence %+v, want the kernel's report in console.txt", d.Evidence)
			}
			for _, f := range a.Findings {
				if f.Class == ClassPanic {
					t.Errorf("a kernel-panic finding: %.2f %s", f.Confidence, f.Summary)
				}
			}
		})
	}
}
