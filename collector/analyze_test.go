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

// A region probe that failed while the guest was still booting (absent),
// with the region alive by the time of the diagnostics, is no userspace
// hang (a real e2e run raised one so before the scenario was bound late).
func TestRegionProbeFailureIsNoUserspaceHang(t *testing.T) {
	tb := testBundle{ID: "r1", VM: "v", Files: map[string]string{"region.json": `{"monitor": {"state": "alive"}}`},
		History: []monitor.Result{{OK: false, Error: "region probe: absent: magic is 0: the region was never initialised by the SSDT"}}}
	d := tb.dir(t)
	m, _ := monitor.ReadManifest(d)
	m.Scenario.Probe.Kind = "region"
	b := &Bundle{Dir: d, Manifest: m}
	a := Analyze(context.Background(), b, Builtin())
	for _, f := range a.Findings {
		if f.Confidence >= HighConfidence {
			t.Errorf("%s at %.2f: %s", f.Class, f.Confidence, f.Summary)
		}
	}
	// The same failures from a slot probe are a userspace hang.
	m.Scenario.Probe.Kind = "slot"
	a = Analyze(context.Background(), &Bundle{Dir: d, Manifest: m}, Builtin())
	if a.Diagnosis.Class != ClassUserspaceHang {
		t.Errorf("slot probe: %+v", a.Diagnosis)
	}
}

// SysRq w's task line names the parent too ("ppid:"): the pid is the
// task's own (the first e2e run reported pid 1, the parent's).
func TestDStatePidNotParent(t *testing.T) {
	a := analyzeFiles(t, map[string]string{"sysrq-w.txt": "[   20.1] sysrq: Show Blocked State\n" +
		"[   20.1] task:init            state:D stack:0     pid:91    ppid:1      flags:0x00004000\n" +
		"[   20.1] Call Trace:\n[   20.1]  <TASK>\n[   20.1]  __schedule+0x34d/0x9e0\n[   20.1]  schedule+0x5a/0xd0\n" +
		"[   20.1]  schedule_timeout+0x118/0x150\n[   20.1]  wait_for_completion_state+0x1d/0x40\n[   20.1]  kernel_clone+0x1af/0x3e0\n"}, nil)
	d := a.Diagnosis
	if d.Class != ClassHungTask || d.Details["pid"] != "91" || d.Details["task"] != "init" || !strings.HasPrefix(d.Details["frames"], "wait_for_completion_state") {
		t.Fatalf("%+v", d)
	}
}
