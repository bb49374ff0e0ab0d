package collector

import (
	"bytes"
	"context"
	"image/png"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/monitor"
)

// chromium runs headless Chromium (Debian package chromium) with args
// and returns its stdout.
func chromium(t *testing.T, exe string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--no-first-run", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, exe, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestChromiumIncidentPage renders the fleet and incident pages of a
// collector on 127.0.0.1 holding the real guest bundles of
// fixtures/bundles in a real headless Chromium: the DOM Chromium built
// holds the diagnosis of the panic bundle, and the screenshot is a real
// picture. With
// ACPIDIAG_SCREENSHOT=PATH the incident page's screenshot is kept there
// (docs/collector-incident.png was made so).
func TestChromiumIncidentPage(t *testing.T) {
	exe := fixtures.RequireTool(t, "chromium")
	st, err := OpenStore(t.TempDir(), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The bundles of real guest runs (fixtures/bundles), POSTed as the
	// monitor's sink does, and one more VM's.
	dir := filepath.Join(fixtures.Dir(), "bundles")
	ents, _ := os.ReadDir(dir)
	var panicID string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		var buf bytes.Buffer
		if err := monitor.PackBundle(filepath.Join(dir, e.Name()), &buf); err != nil {
			t.Fatal(err)
		}
		inc, _, err := st.Put(context.Background(), &buf, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if inc.Class == ClassPanic {
			panicID = inc.ID
		}
	}
	if panicID == "" {
		t.Fatal("no kernel-panic bundle in fixtures/bundles")
	}
	created := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	other := testBundle{ID: "20261129T093000.000Z-db1-uptime-77aa00", VM: "db1", Created: created, Files: map[string]string{
		"region.json": `{"monitor": {"state": "alive", "slots": [{"state": "stale"}]}}`, "console.txt": fixtures.HostileLine + "\n"}}
	other.History = []monitor.Result{{Start: created.Add(-time.Minute), OK: false, Error: "console probe: timed out"}}
	if _, _, err := st.Put(context.Background(), bytes.NewReader(other.pack(t)), ""); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewServer(st, ServerOptions{}))
	defer srv.Close()

	dom := string(chromium(t, exe, "--dump-dom", srv.URL+"/incidents/"+panicID))
	for _, want := range []string{`id="diagnosis-class">kernel-panic<`, "kernel panic: sysrq triggered crash in sysrq_handle_crash+0x16/0x20",
		"Kernel panic - not syncing: sysrq triggered crash", "<svg", "polyline"} {
		if !strings.Contains(dom, want) {
			t.Errorf("incident DOM lacks %q", want)
		}
	}
	fleet := string(chromium(t, exe, "--dump-dom", srv.URL+"/"))
	for _, want := range []string{"guest", "db1", "kernel-panic", "userspace-hang"} {
		if !strings.Contains(fleet, want) {
			t.Errorf("fleet DOM lacks %q", want)
		}
	}
	shot := filepath.Join(t.TempDir(), "incident.png")
	chromium(t, exe, "--screenshot="+shot, "--window-size=1100,1900", srv.URL+"/incidents/"+panicID)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// A rendered page, not a blank one: many distinct colours.
	colours := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	if b.Dx() != 1100 || len(colours) < 20 {
		t.Errorf("screenshot %v with %d colours: not a rendered page", b, len(colours))
	}
	if keep := os.Getenv("ACPIDIAG_SCREENSHOT"); keep != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(keep, b, 0o644)
	}
}
