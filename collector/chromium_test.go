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
// collector on 127.0.0.1 in a real headless Chromium: the DOM Chromium
// built holds the diagnosis, and the screenshot is a real picture. With
// ACPIDIAG_SCREENSHOT=PATH the incident page's screenshot is kept there
// (docs/collector-incident.png was made so).
func TestChromiumIncidentPage(t *testing.T) {
	exe := fixtures.RequireTool(t, "chromium")
	st, err := OpenStore(t.TempDir(), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	tb := testBundle{ID: "20261129T100000.000Z-web1-region-0a1b2c", VM: "web1", Created: created, Files: map[string]string{
		"erst.txt":    erstText(t, "q35_oops_none"),
		"console.txt": fixtures.HostileLine + "\n<b>not bold</b>\n",
		"region.json": `{"monitor": {"state": "panicked", "last_tick": "2026-11-29T09:59:57.5Z"}}`,
	}, Timeline: []monitor.TimelineEntry{
		{Time: created.Add(-30 * time.Second), Source: "region", State: "alive", Reason: "ticks moving"},
		{Time: created.Add(-2 * time.Second), Source: "qmp", State: "panicked", Reason: "GUEST_PANICKED"},
		{Time: created.Add(-1500 * time.Millisecond), Source: "region", State: "panicked", Reason: "pvpanic"},
		{Time: created.Add(-1 * time.Second), Source: "erst", State: "panicked", Reason: "new ERST panic record"},
	}}
	for i := 0; i < 10; i++ {
		tb.History = append(tb.History, monitor.Result{Start: created.Add(time.Duration(i-10) * 3 * time.Second), OK: i < 9, Detail: "alive", Error: map[bool]string{true: "", false: "region panicked"}[i < 9]})
	}
	data := tb.pack(t)
	if _, _, err := st.Put(context.Background(), bytes.NewReader(data), tb.ID); err != nil {
		t.Fatal(err)
	}
	other := testBundle{ID: "20261129T093000.000Z-db1-uptime-77aa00", VM: "db1", Created: created.Add(-30 * time.Minute), Files: map[string]string{
		"region.json": `{"monitor": {"state": "alive", "slots": [{"state": "stale"}]}}`}}
	other.History = []monitor.Result{{Start: created.Add(-31 * time.Minute), OK: false, Error: "console probe: timed out"}}
	st.Put(context.Background(), bytes.NewReader(other.pack(t)), "")
	srv := httptest.NewServer(NewServer(st, ServerOptions{}))
	defer srv.Close()

	dom := string(chromium(t, exe, "--dump-dom", srv.URL+"/incidents/"+tb.ID))
	for _, want := range []string{`id="diagnosis-class">kernel-panic<`, "BUG: kernel NULL pointer dereference", "spike_null_deref+0x5/0x1000", "<svg", "polyline"} {
		if !strings.Contains(dom, want) {
			t.Errorf("incident DOM lacks %q", want)
		}
	}
	fleet := string(chromium(t, exe, "--dump-dom", srv.URL+"/"))
	for _, want := range []string{"web1", "db1", "kernel-panic", "userspace-hang"} {
		if !strings.Contains(fleet, want) {
			t.Errorf("fleet DOM lacks %q", want)
		}
	}
	shot := filepath.Join(t.TempDir(), "incident.png")
	chromium(t, exe, "--screenshot="+shot, "--window-size=1100,1900", srv.URL+"/incidents/"+tb.ID)
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
