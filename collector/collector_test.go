package collector

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/monitor"
)

// testBundle writes a bundle directory the way the monitor's bundle
// writer lays it out (manifest.json with sizes and SHA-256 of every
// artifact) and returns it packed with monitor.PackBundle.
type testBundle struct {
	ID       string
	VM       string
	Files    map[string]string
	Timeline []monitor.TimelineEntry
	History  []monitor.Result
	Created  time.Time
}

func (tb testBundle) dir(t testing.TB) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), tb.ID)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if tb.Created.IsZero() {
		tb.Created = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	}
	m := monitor.Manifest{Schema: 1, ID: tb.ID, Created: tb.Created, Finished: tb.Created.Add(3 * time.Second), Trigger: "scenario",
		VM: monitor.ManifestVM{Name: tb.VM}, Scenario: &monitor.ManifestScenario{Name: "check"}, Timeline: tb.Timeline, ProbeHistory: tb.History}
	for name, body := range tb.Files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(body))
		m.Artifacts = append(m.Artifacts, monitor.Artifact{Name: name, Diagnostic: strings.TrimSuffix(name, filepath.Ext(name)), Size: int64(len(body)),
			SHA256: hex.EncodeToString(sum[:]), Guest: strings.HasSuffix(name, ".txt")})
	}
	b, _ := json.MarshalIndent(&m, "", "  ")
	os.WriteFile(filepath.Join(d, "manifest.json"), b, 0o644)
	return d
}

func (tb testBundle) pack(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := monitor.PackBundle(tb.dir(t), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// erstText is the erst.txt the monitor's erst diagnostic writes, from a
// real ERST store of a real guest (fixtures/erst).
func erstText(t testing.TB, fixture string) string {
	st, err := hostreader.ReadERSTFile(filepath.Join(fixtures.Dir(), "erst", fixture, "erst.backing"))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, ev := range st.Events() {
		fmt.Fprintf(&text, "==== %s#%d\n%s\n", ev.Reason, ev.Count, ev.Text())
	}
	return text.String()
}

func newServer(t *testing.T, opts StoreOptions) (*Store, *httptest.Server) {
	st, err := OpenStore(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewServer(st, ServerOptions{}))
	t.Cleanup(srv.Close)
	return st, srv
}

func post(t *testing.T, url string, body []byte, key string) (int, PostResult) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/api/bundles", bytes.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r PostResult
	json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

func get(t *testing.T, url string, v any) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return string(b)
}

func TestPostStoresOnceAndServes(t *testing.T) {
	st, srv := newServer(t, StoreOptions{})
	tb := testBundle{ID: "20261129T100000.000Z-web-check-abc123", VM: "web", Files: map[string]string{
		"erst.txt":    erstText(t, "q35_sysrq_none"),
		"console.txt": fixtures.HostileLine + "\n<script>alert(1)</script>\n",
	}, Timeline: []monitor.TimelineEntry{
		{Time: time.Date(2026, 11, 29, 9, 59, 50, 0, time.UTC), Source: "region", State: "alive"},
		{Time: time.Date(2026, 11, 29, 9, 59, 58, 0, time.UTC), Source: "qmp", State: "panicked", Reason: "GUEST_PANICKED"},
		{Time: time.Date(2026, 11, 29, 9, 59, 59, 0, time.UTC), Source: "region", State: "stale"},
	}}
	body := tb.pack(t)
	code, r := post(t, srv.URL, body, tb.ID)
	if code != http.StatusCreated || !r.Created || r.Class != ClassPanic {
		t.Fatalf("first POST: %d %+v", code, r)
	}
	code, r = post(t, srv.URL, body, tb.ID)
	if code != http.StatusOK || r.Created {
		t.Fatalf("second POST: %d %+v", code, r)
	}
	code, _ = post(t, srv.URL, body, "")
	if code != http.StatusOK || st.Len() != 1 || st.Stats() != (Stats{Bundles: 1, Stored: 1, Duplicates: 2}) {
		t.Fatalf("POST without key: %d, %d stored", code, st.Len())
	}
	var incs []Incident
	get(t, srv.URL+"/api/incidents?vm=web", &incs)
	if len(incs) != 1 || incs[0].Class != ClassPanic || incs[0].Scenario != "check" || incs[0].Verdict != "stale" {
		t.Fatalf("incidents: %+v", incs)
	}
	var none []Incident
	get(t, srv.URL+"/api/incidents?vm=web&class=oom", &none)
	get(t, srv.URL+"/api/incidents?class=kernel-panic", &incs)
	if len(none) != 0 || len(incs) != 1 {
		t.Fatalf("class filter: %d oom, %d kernel-panic", len(none), len(incs))
	}
	var d IncidentDetail
	get(t, srv.URL+"/api/incidents/"+tb.ID, &d)
	if !strings.Contains(d.Analysis.Diagnosis.Summary, "sysrq triggered crash") || len(d.Analysis.Diagnosis.Evidence) == 0 {
		t.Fatalf("diagnosis: %+v", d.Analysis.Diagnosis)
	}
	var vms []VMSummary
	get(t, srv.URL+"/api/vms", &vms)
	if len(vms) != 1 || vms[0].Last == nil || vms[0].Last.ID != tb.ID {
		t.Fatalf("vms: %+v", vms)
	}
	page := get(t, srv.URL+"/incidents/"+tb.ID, nil)
	for _, want := range []string{"sysrq triggered crash", "<svg", "Heartbeat gap", "console.txt"} {
		if !strings.Contains(page, want) {
			t.Errorf("incident page lacks %q", want)
		}
	}
	art := get(t, srv.URL+"/incidents/"+tb.ID+"/files/console.txt", nil)
	if strings.Contains(art, "<script>alert") || !strings.Contains(art, "&lt;script&gt;") || !strings.Contains(art, `\x1b[1m`) || strings.Contains(art, "\x1b") {
		t.Errorf("guest text not escaped once on the artifact page:\n%s", art)
	}
	fleet := get(t, srv.URL+"/", nil)
	if !strings.Contains(fleet, "web") || !strings.Contains(fleet, ClassPanic) {
		t.Errorf("fleet page: %s", fleet)
	}
	// A store reopened keeps the index.
	st2, err := OpenStore(st.Dir(), StoreOptions{})
	if err != nil || st2.Len() != 1 || st2.Incidents("web")[0].Class != ClassPanic {
		t.Fatalf("reopen: %v %d", err, st2.Len())
	}
}

// tarGz builds an archive from raw entries (for refused shapes).
func tarGz(t testing.TB, entries ...*tar.Header) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			tw.Write(bytes.Repeat([]byte("a"), int(h.Size)))
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestRefusedBundles(t *testing.T) {
	st, srv := newServer(t, StoreOptions{Limits: Limits{Unpacked: 1 << 20}})
	good := testBundle{ID: "b1", VM: "v", Files: map[string]string{"console.txt": "hello\n"}}
	d := good.dir(t)
	var okBuf bytes.Buffer
	monitor.PackBundle(d, &okBuf)
	// Tamper with an artifact after the manifest was written.
	os.WriteFile(filepath.Join(d, "console.txt"), []byte("HELLO\n"), 0o644)
	var tampered bytes.Buffer
	monitor.PackBundle(d, &tampered)
	os.WriteFile(filepath.Join(d, "extra.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(d, "console.txt"), []byte("hello\n"), 0o644)
	var extra bytes.Buffer
	monitor.PackBundle(d, &extra)
	// A gzip bomb: 64 MiB of zeros in one entry, 64 KiB compressed.
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "b1/console.txt", Size: 64 << 20, Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Write(make([]byte, 64<<20))
	tw.Close()
	zw.Close()

	cases := []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"traversal", tarGz(t, &tar.Header{Name: "b1/../../etc/passwd", Typeflag: tar.TypeReg, Size: 1}), 400, "name refused"},
		{"absolute", tarGz(t, &tar.Header{Name: "/etc/passwd", Typeflag: tar.TypeReg, Size: 1}), 400, "name refused"},
		{"symlink", tarGz(t, &tar.Header{Name: "b1/console.txt", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}), 400, "only regular files"},
		{"hardlink", tarGz(t, &tar.Header{Name: "b1/x", Typeflag: tar.TypeLink, Linkname: "b1/y"}), 400, "only regular files"},
		{"device", tarGz(t, &tar.Header{Name: "b1/x", Typeflag: tar.TypeChar}), 400, "only regular files"},
		{"two tops", tarGz(t, &tar.Header{Name: "b1/x", Typeflag: tar.TypeReg, Size: 1}, &tar.Header{Name: "b2/y", Typeflag: tar.TypeReg, Size: 1}), 400, "top directory"},
		{"no manifest", tarGz(t, &tar.Header{Name: "b1/x", Typeflag: tar.TypeReg, Size: 1}), 400, "manifest.json: missing"},
		{"not gzip", []byte("hello"), 400, "not gzip"},
		{"checksum", tampered.Bytes(), 400, "SHA-256"},
		{"unlisted", extra.Bytes(), 400, "not listed"},
		{"bomb", bomb.Bytes(), 413, "over the limit"},
	}
	for _, c := range cases {
		code, r := post(t, srv.URL, c.body, "")
		if code != c.code || !strings.Contains(r.Error, c.want) {
			t.Errorf("%s: %d %q, want %d and %q", c.name, code, r.Error, c.code, c.want)
		}
	}
	if code, r := post(t, srv.URL, okBuf.Bytes(), "other-id"); code != 400 || !strings.Contains(r.Error, "differs from the manifest's id") {
		t.Errorf("key mismatch: %d %q", code, r.Error)
	}
	if st.Len() != 0 {
		t.Errorf("%d bundles stored from refused posts", st.Len())
	}
	ents, _ := os.ReadDir(filepath.Join(st.Dir(), "tmp"))
	if len(ents) != 0 {
		t.Errorf("tmp not cleaned: %d entries", len(ents))
	}
	if code, _ := post(t, srv.URL, okBuf.Bytes(), "b1"); code != 201 {
		t.Errorf("the good bundle: %d", code)
	}
}

func TestParseManifestErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{`, "manifest.json: offset 1"},
		{`{"schema":2}`, "manifest.json: schema: 2"},
		{`{"id":"x"}`, "manifest.json: schema: missing"},
		{`{"schema":1,"id":"../x","vm":{"name":"v"}}`, "manifest.json: id"},
		{`{"schema":1,"id":"x","vm":{"name":"v"},"created":"2026-11-29T10:00:00Z","artifacts":[{"name":"a/../b","sha256":""}]}`, "artifacts[0].name"},
		{`{"schema":1,"id":"x","vm":{"name":"v"},"created":"2026-11-29T10:00:00Z","artifacts":[{"name":"a","sha256":"zz"}]}`, "artifacts[0].sha256"},
		{`{"schema":1,"id":"x","vm":{"name":5}}`, "manifest.json: vm.name"},
	} {
		_, err := ParseManifest([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.in, err, c.want)
		}
	}
}

// TestHTTPSinkToCollector: the monitor's http sink (spool) delivers to the
// real collector; a redelivery of the same bundle is stored once.
func TestHTTPSinkToCollector(t *testing.T) {
	st, srv := newServer(t, StoreOptions{})
	sink, err := monitor.NewHTTPSink(monitor.SinkConfig{Kind: "http", URL: srv.URL + "/api/bundles", Spool: filepath.Join(t.TempDir(), "spool")})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	for i := 0; i < 3; i++ {
		tb := testBundle{ID: fmt.Sprintf("inc-%d", i), VM: "vm1", Files: map[string]string{"console.txt": "x\n"}}
		d := tb.dir(t)
		m, _ := monitor.ReadManifest(d)
		b := &monitor.Bundle{ID: tb.ID, Dir: d, Manifest: m}
		for k := 0; k < 2; k++ { // a restart hands it over again
			if _, err := sink.Deliver(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sink.Spool().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st.Len() != 3 || sink.Status().Delivered != 3 {
		t.Fatalf("stored %d, status %+v", st.Len(), sink.Status())
	}
}

func TestExecAnalyzer(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755)
		return p
	}
	tb := testBundle{ID: "e1", VM: "v", Files: map[string]string{"console.txt": "a\nb\nc\n"}}
	b := &Bundle{Dir: tb.dir(t)}
	b.Manifest, _ = monitor.ReadManifest(b.Dir)
	good := ExecAnalyzer{Path: script("good", `test -f "$1/manifest.json" || exit 3
echo '{"findings":[{"class":"custom","confidence":0.99,"summary":"app wedged","evidence":[{"artifact":"console.txt","first_line":2,"last_line":3}]}]}'`)}
	slow := ExecAnalyzer{Path: script("slow", "sleep 30"), Timeout: 200 * time.Millisecond}
	bad := ExecAnalyzer{Path: script("bad", `echo '[{"class":"x","confidence":7}]'`)}
	start := time.Now()
	a := Analyze(context.Background(), b, []Analyzer{good, slow, bad})
	if time.Since(start) > 5*time.Second {
		t.Errorf("the timeout did not stop the slow analyzer")
	}
	if a.Diagnosis.Class != "custom" || a.Diagnosis.Analyzer != "exec:good" || len(a.Diagnosis.Evidence) != 1 || strings.Join(a.Diagnosis.Evidence[0].Lines, ",") != "b,c" {
		t.Fatalf("diagnosis %+v", a.Diagnosis)
	}
	errs := strings.Join(a.Errors, "\n")
	if !strings.Contains(errs, "exec:slow: timed out") || !strings.Contains(errs, "findings[0].confidence: 7") {
		t.Errorf("errors: %s", errs)
	}
}

func TestBearerToken(t *testing.T) {
	st, err := OpenStore(t.TempDir(), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewServer(st, ServerOptions{Token: "s3cret"}))
	defer srv.Close()
	body := testBundle{ID: "t1", VM: "v", Files: map[string]string{"console.txt": "x\n"}}.pack(t)
	if code, _ := post(t, srv.URL, body, "t1"); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/bundles", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || st.Len() != 1 {
		t.Errorf("with the token: %d, %d stored", resp.StatusCode, st.Len())
	}
}
