package collector

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

// TestAnalyzersRealHungTaskAndLockups: on the real bundles of the test
// module's hang, softlockup, rcustall and hardlockup modes the diagnosis
// names who and where (fixtures/bundles, provenance in
// fixtures/README.md). The RCU stall's where is the interrupted task's (the
// report's own trace starts in the timer interrupt that printed it); the
// hard lockup's comes from the registers (nothing in the guest reports it
// under TCG), and the bundle's SysRq l, answered once interrupts were back,
// does not make it a livelock. The soft lockup's
// "watchdog: BUG: soft lockup" line is no oops: no kernel-panic finding at
// all (the panic analyzer took it for one, at 0.5, before).
func TestAnalyzersRealHungTaskAndLockups(t *testing.T) {
	for _, c := range []struct {
		id, class string
		details   map[string]string // key → the value's prefix
		evidence  string            // the artifact of the first evidence ("": console.txt)
	}{
		{"20261129T132434.005Z-guest-manual-131cf1", ClassHungTask,
			map[string]string{"task": "acpidiag-hang", "pid": "82", "frames": "acpidiag_hang+0x70/0x96 < acpidiag_oops_init+"}, ""},
		{"20261129T132457.311Z-guest-softlockup-1430ad", ClassLockup,
			map[string]string{"kind": "soft", "cpu": "0", "task": "acpidiag-spin:83", "location": "delay_tsc+0x33/0xa0",
				"frames": "acpidiag_softlockup+0x6c/0xf6a < acpidiag_oops_init+"}, ""},
		{"20261129T155916.953Z-guest-manual-113b97", ClassLockup,
			map[string]string{"kind": "rcu-stall", "flavor": "rcu_preempt", "blocked_pids": "83", "task": "acpidiag-rcu", "pid": "83",
				"location": "delay_tsc+0x33/0xa0", "frames": "acpidiag_rcustall+0x67/0xedb < acpidiag_oops_init+"}, ""},
		{"20261129T160801.800Z-guest-hardlockup-4f42d0", ClassLockup,
			map[string]string{"kind": "hard", "cpu": "0", "location": "RIP ffffffffa05f77a3", "rflags": "00000087", "source": "registers, gdbstub"}, "registers-hmp.txt"},
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
			want := c.evidence
			if want == "" {
				want = "console.txt" // the kernel's report
			}
			if len(d.Evidence) == 0 || d.Evidence[0].Artifact != want || len(d.Evidence[0].Lines) < 5 {
				t.Errorf("evidence %+v, want %s", d.Evidence, want)
			}
			for _, f := range a.Findings {
				if f.Class == ClassPanic {
					t.Errorf("a kernel-panic finding: %.2f %s", f.Confidence, f.Summary)
				}
			}
		})
	}
}

// TestIRQsOffLockupNeedsIFClearInKernel: the real hard-lockup bundle with
// its registers edited. With IF set (a CPU that takes interrupts), or in
// user mode, or with its vCPU thread idle on the host, or after a kernel
// panic, it is no hard lockup: the livelock rule (region stale, every
// vCPU busy) or nothing.
func TestIRQsOffLockupNeedsIFClearInKernel(t *testing.T) {
	src := filepath.Join(fixtures.Dir(), "bundles", "20261129T160801.800Z-guest-hardlockup-4f42d0")
	for _, c := range []struct {
		name     string
		old, new string // in registers-hmp.txt, registers-gdb.json or host.json
		file     string
		kind     string // the lockup finding's kind, "" for none
	}{
		{"as recorded", "", "", "", "hard"},
		{"IF set", "RFL=00000087", "RFL=00000287", "registers-hmp.txt", "livelock"},
		{"user mode", "CPL=0", "CPL=3", "registers-hmp.txt", "livelock"},
		{"vCPU idle on the host", `"cpu_percent": `, `"cpu_percent": 0, "was": `, "host.json", ""},
		// A kernel that panicked (without pvpanic: the region only goes
		// stale) halts in panic's loop with interrupts off: neither a hard
		// lockup nor a livelock (the panic analyzer's).
		{"after a panic", "acpidiag-guest: hardlockup now", "Kernel panic - not syncing: Fatal exception\nacpidiag-guest: hardlockup now", "console.txt", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			entries, err := os.ReadDir(src)
			require.NoError(t, err)
			for _, e := range entries {
				b, err := os.ReadFile(filepath.Join(src, e.Name()))
				require.NoError(t, err)
				if e.Name() == c.file {
					require.Contains(t, string(b), c.old)
					b = []byte(strings.ReplaceAll(string(b), c.old, c.new))
				}
				require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644))
			}
			if c.file == "host.json" {
				// and the runnable share, the other sign of a busy vCPU
				b, _ := os.ReadFile(filepath.Join(dir, "host.json"))
				b = regexp.MustCompile(`"runnable_percent": [0-9.]+`).ReplaceAll(b, []byte(`"runnable_percent": 0`))
				require.NoError(t, os.WriteFile(filepath.Join(dir, "host.json"), b, 0o644))
			}
			data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
			require.NoError(t, err)
			m, err := ParseManifest(data)
			require.NoError(t, err)
			fs, err := lockupAnalyzer{}.Analyze(context.Background(), &Bundle{Dir: dir, Manifest: m})
			require.NoError(t, err)
			kind := ""
			for _, f := range fs {
				kind = f.Details["kind"]
			}
			assert.Equal(t, c.kind, kind, "%+v", fs)
		})
	}
}
