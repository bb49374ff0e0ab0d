package monitor

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCheckHTTPSinkKeys(t *testing.T) {
	c, err := ParseConfig([]byte(`{"vms":[],"scenarios":[],"sinks":[
		{"kind":"http","url":"http://127.0.0.1:9/api/bundles","spool":"/tmp/s","token_file":"/t","ca_file":"/c"},
		{"kind":"http","url":"ftp://x","cert_file":"/c","spool_max_age":"-1h"},
		{"kind":"http","url":"http://x","spool":"/s","path":"/p"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Check(c, CheckOptions{})
	if err == nil {
		t.Fatal("bad http sinks accepted")
	}
	msg := err.Error()
	for _, want := range []string{`sinks[1].url: "ftp://x": want an http:// or https:// URL`, "sinks[1].spool: empty", "sinks[1].cert_file: cert_file and key_file go together",
		`sinks[1].spool_max_age: "-1h": want a positive duration`, "sinks[2]: path and pack belong to the dir sink"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "sinks[0]") {
		t.Errorf("the valid sink was refused:\n%s", msg)
	}
	if _, err := ParseConfig([]byte(`{"sinks":[{"kind":"http","uri":"x"}]}`)); err == nil || !strings.Contains(err.Error(), "sinks[0]") {
		t.Errorf("unknown key: %v", err)
	}
}

// TestRedeliveryAfterKillBetweenSinks: a process killed after the first
// sink (dir) took a bundle and before the second (http) did leaves the
// finished bundle in its workdir, and an incident whose diagnostics were
// cut leaves an unfinished one. A new monitor on the same workdir hands
// the finished bundle to both sinks again (the dir sink keeps its copy,
// the http sink POSTs it once) and removes both directories. The kill
// itself is simulated by laying out the workdir as it leaves it; the
// process-level kill is TestE2ESoakDelivery (cmd/diagcollect).
func TestRedeliveryAfterKillBetweenSinks(t *testing.T) {
	var mu sync.Mutex
	posts := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		posts[r.Header.Get("Idempotency-Key")]++
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	work, reports := t.TempDir(), t.TempDir()
	const id = "20261129T100000.000Z-vm1-s-abcdef"
	bw, err := newBundleWriter(filepath.Join(work, id), Manifest{ID: id, Created: time.Now().UTC(), Trigger: "scenario", VM: ManifestVM{Name: "vm1"}},
		Limits{BundleBytes: 1 << 20, ArtifactBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	bw.add(Artifact{Name: "console.txt", Diagnostic: "console"}, []byte("hello\n"))
	if _, err := bw.finish(); err != nil {
		t.Fatal(err)
	}
	dir := &DirSink{Path: reports}
	m0, _ := ReadManifest(filepath.Join(work, id))
	if _, err := dir.Deliver(context.Background(), &Bundle{ID: id, Dir: filepath.Join(work, id), Manifest: m0}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(work, "20261129T100001.000Z-vm1-s-000000"), 0o755) // diagnostics cut: no manifest
	httpSink, err := NewHTTPSink(SinkConfig{Kind: "http", URL: srv.URL, Spool: filepath.Join(t.TempDir(), "spool")})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Check(Config{}, CheckOptions{SinksGiven: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(context.Background(), p, Options{Workdir: work, Sinks: []Sink{dir, httpSink}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var events []Event
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case e := <-m.Events():
			events = append(events, e)
		case <-time.After(20 * time.Millisecond):
		}
		mu.Lock()
		n := posts[id]
		mu.Unlock()
		ents, _ := os.ReadDir(work)
		if n == 1 && len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("posts %v, workdir %d entries, events %+v", posts, len(ents), events)
		}
	}
	if _, err := os.Stat(filepath.Join(reports, id, "console.txt")); err != nil {
		t.Errorf("dir sink copy: %v", err)
	}
	ents, _ := os.ReadDir(reports)
	if len(ents) != 1 {
		t.Errorf("dir sink has %d entries, want 1", len(ents))
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 || posts[id] != 1 {
		t.Errorf("posts %v", posts)
	}
}

// TestReloadChangingSinksWhileDiagnosticsRun: a reload that replaces the
// http sink while an incident's diagnostics run. The incident's bundle
// goes to the sinks in force when it is delivered (the new one); it used
// to go to the sink captured when the diagnostics started, closed by the
// reload meanwhile ("deliver: spool closed"), and was lost.
func TestReloadChangingSinksWhileDiagnosticsRun(t *testing.T) {
	type server struct {
		*httptest.Server
		mu    sync.Mutex
		posts map[string]int
	}
	newServer := func() *server {
		s := &server{posts: map[string]int{}}
		s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			s.mu.Lock()
			s.posts[r.Header.Get("Idempotency-Key")]++
			s.mu.Unlock()
			w.WriteHeader(http.StatusCreated)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := newServer(), newServer()
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	proceed := filepath.Join(dir, "proceed")
	// The diagnostic runs until the test has reloaded (at most 30 s).
	slow := script(t, dir, "slow.sh", "touch "+started+"; i=0; while [ ! -e "+proceed+" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo done")
	fail := []string{script(t, dir, "fail.sh", "exit 1")}
	sc := execScenario("f", "v", fail, "100ms", 1, "1h", "script:"+slow)
	cfg := Config{VMs: []VMConfig{{Name: "v"}}, Scenarios: []ScenarioConfig{sc},
		Sinks: []SinkConfig{{Kind: "http", URL: a.URL, Spool: filepath.Join(dir, "spool-a")}}}
	p, err := Check(cfg, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(context.Background(), p, Options{Workdir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var mu sync.Mutex
	var events []Event
	go func() {
		for e := range m.Events() {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the incident's diagnostics did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cfg.Sinks = []SinkConfig{{Kind: "http", URL: b.URL, Spool: filepath.Join(dir, "spool-b")}}
	p2, err := Check(cfg, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(p2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(proceed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var bundle *Event
	for deadline = time.Now().Add(40 * time.Second); bundle == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("no bundle event: %+v", events)
		}
		mu.Lock()
		for i := range events {
			if events[i].Type == EventBundle {
				bundle = &events[i]
			}
		}
		mu.Unlock()
	}
	mu.Lock()
	for _, e := range events {
		if e.Type == EventError {
			t.Errorf("error event: %+v", e)
		}
	}
	mu.Unlock()
	if !strings.Contains(bundle.Path, b.URL) {
		t.Errorf("bundle went to %q, want the new sink %s", bundle.Path, b.URL)
	}
	for deadline = time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b.mu.Lock()
		n := b.posts[bundle.Incident]
		b.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new sink got %d POSTs of %s (old sink: %v)", n, bundle.Incident, a.posts)
		}
	}
}
