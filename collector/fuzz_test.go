package collector

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/acpidiag/acpidiag/fixtures"

	"github.com/acpidiag/acpidiag/monitor"
)

func FuzzUnpack(f *testing.F) {
	f.Add(testBundle{ID: "f1", VM: "v", Files: map[string]string{"console.txt": "x\n"}}.pack(f))
	f.Add(tarGz(f, &tar.Header{Name: "b1/../x", Typeflag: tar.TypeReg, Size: 1}))
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		dst := t.TempDir()
		m, err := Unpack(bytes.NewReader(data), dst, Limits{Unpacked: 1 << 20, Files: 64})
		if err == nil && (m == nil || !ValidID(m.ID)) {
			t.Fatalf("accepted without a valid manifest: %+v", m)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schema":1,"id":"x","vm":{"name":"v"},"created":"2026-11-29T10:00:00Z","artifacts":[{"name":"a","size":1,"sha256":"` + string(bytes.Repeat([]byte("0"), 64)) + `"}]}`))
	f.Add([]byte(`{"schema":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		for _, a := range m.Artifacts {
			if a.Name != "" && !validFile(a.Name) {
				t.Fatalf("unsafe artifact name accepted: %q", a.Name)
			}
		}
	})
}

// FuzzAnalyze feeds arbitrary guest text to the built-in analyzers:
// findings must be well-formed and evidence within the artifact.
func FuzzAnalyze(f *testing.F) {
	f.Add("Kernel panic - not syncing: x\nRIP: 0010:foo+0x1/0x2\nCall Trace:\n foo+0x1/0x2\n")
	f.Add("watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [a:1]\n")
	f.Add("INFO: task a:1 blocked for more than 120 seconds.\nCall Trace:\n")
	f.Add("rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\nrcu: \tTasks blocked on level-0 rcu_node (CPUs 0-0): P83 P9\n" +
		"task:a state:R running task stack:0 pid:83\nCall Trace:\n <IRQ>\n f+0x1/0x2\n </IRQ>\n <TASK>\n g+0x1/0x2\nRIP: 0010:h+0x3/0x4\nRSP: 0018\n i+0x5/0x6\n")
	f.Fuzz(func(t *testing.T, text string) {
		tb := testBundle{ID: "z", VM: "v", Files: map[string]string{"console.txt": text}, Created: time.Unix(0, 0)}
		b := &Bundle{Dir: tb.dir(t)}
		b.Manifest, _ = monitor.ReadManifest(b.Dir)
		a := Analyze(context.Background(), b, Builtin())
		checkEvidence(t, a)
	})
}

// FuzzParseFindings: an executable analyzer's output, any bytes.
func FuzzParseFindings(f *testing.F) {
	f.Add([]byte(`[{"class":"x","confidence":0.5,"summary":"s","evidence":[{"artifact":"a","first_line":1,"last_line":2}]}]`))
	f.Add([]byte(`{"findings":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := ParseFindings(data)
		if err != nil {
			return
		}
		for _, x := range fs {
			if x.Class == "" || x.Confidence < 0 || x.Confidence > 1 {
				t.Fatalf("accepted %+v", x)
			}
		}
	})
}

// FuzzAnalyzeHostView: the host-side artifacts the lockup rules read
// (registers from HMP and the gdbstub, host.json, region.json), any
// bytes, seeded with the real hard-lockup bundle's.
func FuzzAnalyzeHostView(f *testing.F) {
	real := filepath.Join(fixtures.Dir(), "bundles", "20261129T160801.800Z-guest-hardlockup-4f42d0")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(real, name))
		if err != nil {
			f.Fatal(err)
		}
		return string(b)
	}
	f.Add(read("registers-hmp.txt"), read("registers-gdb.json"), read("host.json"), read("region.json"))
	f.Add("CPU#0\nRIP=ffffffff81000000 RFL=00000002 [-------] CPL=0\nCPU#1\nRIP=1 RFL=zz [] CPL=0\n",
		`{"cpus":[{"registers":[{"name":"eflags","hex":"2"},{"name":"cs","hex":"10"}]}]}`,
		`{"vcpus":[{"cpu_index":0,"cpu_percent":100},{"cpu_index":-1,"runnable_percent":99}]}`, `{"monitor":{"state":"stale"}}`)
	f.Fuzz(func(t *testing.T, hmp, gdb, host, region string) {
		tb := testBundle{ID: "z", VM: "v", Files: map[string]string{"registers-hmp.txt": hmp, "registers-gdb.json": gdb,
			"host.json": host, "region.json": region}, Created: time.Unix(0, 0)}
		b := &Bundle{Dir: tb.dir(t)}
		b.Manifest, _ = monitor.ReadManifest(b.Dir)
		a := Analyze(context.Background(), b, Builtin())
		checkEvidence(t, a)
	})
}

// checkEvidence fails on evidence whose line range is empty, inverted or
// does not match the lines it carries.
func checkEvidence(t *testing.T, a Analysis) {
	t.Helper()
	for _, f := range a.Findings {
		for _, e := range f.Evidence {
			if e.First < 1 || e.Last < e.First || len(e.Lines) != e.Last-e.First+1 {
				t.Fatalf("bad evidence %+v", e)
			}
		}
	}
}
