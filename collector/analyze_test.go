package collector

import (
	"context"
	"strings"
	"testing"

	"github.com/acpidiag/acpidiag/monitor"
)

func analyzeFiles(t *testing.T, files map[string]string, tl []monitor.TimelineEntry) Analysis {
	t.Helper()
	tb := testBundle{ID: "a1", VM: "v", Files: files, Timeline: tl}
	b := &Bundle{Dir: tb.dir(t)}
	var err error
	if b.Manifest, err = monitor.ReadManifest(b.Dir); err != nil {
		t.Fatal(err)
	}
	return Analyze(context.Background(), b, Builtin())
}

// The real oops of a real guest (fixtures/erst/q35_oops_none: the test
// guest's oops module): a NULL dereference, location and frames.
func TestPanicAnalyzerRealOops(t *testing.T) {
	a := analyzeFiles(t, map[string]string{"erst.txt": erstText(t, "q35_oops_none")}, nil)
	d := a.Diagnosis
	if d.Class != ClassPanic {
		t.Fatalf("class %q: %+v", d.Class, a.Findings)
	}
	if !strings.Contains(d.Details["oops"], "NULL pointer dereference") || d.Details["location"] == "" || d.Details["frames"] == "" {
		t.Fatalf("details %+v", d.Details)
	}
	if len(d.Evidence) == 0 || d.Evidence[0].Artifact != "erst.txt" {
		t.Fatalf("evidence %+v", d.Evidence)
	}
	t.Logf("%s %.2f %s | frames %s", d.Class, d.Confidence, d.Summary, d.Details["frames"])
}

func TestPanicAnalyzerRealSysrqPanic(t *testing.T) {
	a := analyzeFiles(t, map[string]string{"erst.txt": erstText(t, "q35_sysrq_none")}, nil)
	d := a.Diagnosis
	if d.Class != ClassPanic || d.Confidence < HighConfidence || d.Details["reason"] != "sysrq triggered crash" {
		t.Fatalf("%+v", d)
	}
	for _, f := range a.Findings[1:] {
		if f.Confidence >= HighConfidence {
			t.Errorf("a second class at high confidence: %+v", f)
		}
	}
}

func TestNoFindingOnQuietBundle(t *testing.T) {
	a := analyzeFiles(t, map[string]string{"console.txt": "all good\n"}, nil)
	if a.Diagnosis.Class != ClassUnknown || len(a.Findings) != 0 {
		t.Fatalf("%+v", a)
	}
}
