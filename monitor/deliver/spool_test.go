package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder is a real HTTP server on the loopback interface that records
// what it receives; fail makes it answer 503.
type recorder struct {
	mu      sync.Mutex
	got     []http.Header
	bodies  map[string]string
	fail    bool
	code    int
	seen    map[string]int
	srv     *httptest.Server
	arrival []string
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{bodies: map[string]string{}, seen: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		http.Error(w, "collector down", http.StatusServiceUnavailable)
		return
	}
	if r.code != 0 {
		http.Error(w, "refused", r.code)
		return
	}
	id := req.Header.Get(HeaderIdempotencyKey)
	r.got = append(r.got, req.Header.Clone())
	r.seen[id]++
	if r.seen[id] > 1 {
		w.WriteHeader(http.StatusOK)
		return
	}
	r.bodies[id] = string(body)
	r.arrival = append(r.arrival, req.Header.Get(HeaderVM)+"/"+id)
	w.WriteHeader(http.StatusCreated)
}

func (r *recorder) set(fail bool, code int) {
	r.mu.Lock()
	r.fail, r.code = fail, code
	r.mu.Unlock()
}

func (r *recorder) stored() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

func body(s string) func(io.Writer) error {
	return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
}

func fastConfig(url, dir string) Config {
	return Config{URL: url, Dir: dir, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, Timeout: 5 * time.Second}
}

func waitFor(t *testing.T, what string, d time.Duration, f func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !f() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeliverHeadersTokenOrder(t *testing.T) {
	rec := newRecorder(t)
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("s3cret\n"), 0o600)
	cfg := fastConfig(rec.srv.URL, filepath.Join(dir, "spool"))
	cfg.TokenFile = tok
	rec.set(true, 0) // queue everything first, then let it through
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 6; i++ {
		vm := []string{"a", "b"}[i%2]
		if err := s.Add(Meta{ID: fmt.Sprintf("id%d", i), VM: vm, Scenario: "sc"}, body(fmt.Sprintf("bundle %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(Meta{ID: "id0", VM: "a"}, body("again")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed attempt", 5*time.Second, func() bool { return s.Status().Retrying > 0 })
	st := s.Status()
	if st.Queued != 6 || !strings.Contains(st.LastError, "503") {
		t.Fatalf("status while down: %+v", st)
	}
	rec.set(false, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st = s.Status()
	if st.Delivered != 6 || st.Queued != 0 || st.Dropped != 0 {
		t.Fatalf("status: %+v", st)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, h := range rec.got {
		if h.Get("Authorization") != "Bearer s3cret" || h.Get(HeaderScenario) != "sc" || h.Get("Content-Type") != ContentType {
			t.Errorf("headers %v", h)
		}
	}
	if rec.bodies["id0"] != "bundle 0" || rec.bodies["id5"] != "bundle 5" {
		t.Errorf("bodies %q", rec.bodies)
	}
	// Per VM, arrival order is spool order.
	last := map[string]int{}
	for _, a := range rec.arrival {
		vm, id, _ := strings.Cut(a, "/")
		n, _ := strconv.Atoi(strings.TrimPrefix(id, "id"))
		if p, ok := last[vm]; ok && n < p {
			t.Errorf("vm %s: %s arrived after id%d (arrival %v)", vm, id, p, rec.arrival)
		}
		last[vm] = n
	}
}

func TestSpoolSurvivesRestartAndCountsPersist(t *testing.T) {
	rec := newRecorder(t)
	rec.set(true, 0)
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := Open(fastConfig(rec.srv.URL, dir))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := s.Add(Meta{ID: fmt.Sprint("r", i), VM: "v"}, body("x")); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	st, err := ReadStatus(dir)
	if err != nil || st.Queued != 3 {
		t.Fatalf("ReadStatus after close: %+v %v", st, err)
	}
	rec.set(false, 0)
	s2, err := Open(fastConfig(rec.srv.URL, dir))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	st, _ = ReadStatus(dir)
	if st.Delivered != 3 || st.Queued != 0 {
		t.Fatalf("after restart: %+v", st)
	}
	s3, _ := Open(fastConfig(rec.srv.URL, dir))
	if got := s3.Status().Delivered; got != 3 {
		t.Errorf("delivered count after a second restart = %d, want 3 (kept in status.json)", got)
	}
	s3.Close()
}

func TestSpoolBoundsDropOldestCounted(t *testing.T) {
	rec := newRecorder(t)
	rec.set(true, 0)
	dir := filepath.Join(t.TempDir(), "spool")
	cfg := fastConfig(rec.srv.URL, dir)
	cfg.MaxBytes = 3 * 1100 // three 1000-byte bundles with their headers
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("z", 1000)
	for i := 0; i < 5; i++ {
		if err := s.Add(Meta{ID: fmt.Sprint("b", i), VM: "v"}, body(big)); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Status()
	if st.Queued != 3 || st.Dropped != 2 || !strings.HasPrefix(st.LastDropped, "b1: spool over its bound") {
		t.Fatalf("status: %+v", st)
	}
	if s.Has("b0") || s.Has("b1") || !s.Has("b4") {
		t.Error("the oldest were not the ones dropped")
	}
	if err := s.Add(Meta{ID: "huge", VM: "v"}, body(strings.Repeat("h", 4000))); err == nil || !strings.Contains(err.Error(), "exceed the spool's bound") {
		t.Errorf("a bundle larger than the spool: %v", err)
	}
	s.Close()

	// Age: a bundle spooled long ago is dropped at the next Open.
	cfg.MaxBytes, cfg.MaxAge = 0, time.Hour
	s, _ = Open(cfg)
	old := Meta{ID: "old", VM: "w", Spooled: time.Now().Add(-2 * time.Hour)}
	if err := s.Add(old, body("o")); err != nil {
		t.Fatal(err)
	}
	st = s.Status()
	if s.Has("old") || st.Dropped != 3 || !strings.Contains(st.LastDropped, "max age") {
		t.Fatalf("age bound: %+v", st)
	}
	s.Close()
}

func TestPermanentRefusalDroppedCounted(t *testing.T) {
	rec := newRecorder(t)
	rec.set(false, http.StatusBadRequest)
	s, err := Open(fastConfig(rec.srv.URL, filepath.Join(t.TempDir(), "spool")))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Add(Meta{ID: "bad", VM: "v"}, body("not a bundle"))
	waitFor(t, "the drop", 5*time.Second, func() bool { return s.Status().Dropped == 1 })
	if st := s.Status(); !strings.Contains(st.LastDropped, "HTTP 400") || st.Queued != 0 {
		t.Errorf("status %+v", st)
	}
}

func TestClientTLSWithCAFile(t *testing.T) {
	var got string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			got = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		w.WriteHeader(http.StatusCreated)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	cfg := fastConfig(srv.URL, filepath.Join(dir, "spool"))
	cfg.CAFile = ca
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Add(Meta{ID: "tls", VM: "v"}, body("x"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err, s.Status().LastError)
	}
	_ = got
	// Without the CA file the server's certificate is refused.
	cfg.CAFile, cfg.Dir = "", filepath.Join(dir, "spool2")
	s2, _ := Open(cfg)
	defer s2.Close()
	s2.Add(Meta{ID: "tls2", VM: "v"}, body("x"))
	waitFor(t, "a refused certificate", 5*time.Second, func() bool { return strings.Contains(s2.Status().LastError, "certificate") })
	if _, err := NewClient(filepath.Join(dir, "spool", "status.json"), "", ""); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Errorf("bad CA file: %v", err)
	}
}

// TestKill9WhileSpooling kills (SIGKILL) a process that spools bundles
// and delivers them, at several points, then reopens the spool: every
// bundle whose Add returned is delivered, none twice into the store.
func TestKill9WhileSpooling(t *testing.T) {
	if os.Getenv("DELIVER_KILL_CHILD") != "" {
		t.Skip("child")
	}
	rec := newRecorder(t)
	dir := filepath.Join(t.TempDir(), "spool")
	added := map[string]bool{}
	for round := 0; round < 4; round++ {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestKillChild$", "-test.v")
		cmd.Env = append(os.Environ(), "DELIVER_KILL_CHILD="+dir, "DELIVER_URL="+rec.srv.URL, fmt.Sprintf("DELIVER_ROUND=%d", round))
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "added "); ok {
				added[id] = true
				n++
				if n == 15+round*7 {
					cmd.Process.Signal(syscall.SIGKILL)
					break
				}
			}
		}
		cmd.Wait()
	}
	s, err := Open(fastConfig(rec.srv.URL, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for id := range added {
		if rec.seen[id] == 0 {
			t.Errorf("%s: Add returned but it never arrived", id)
		}
	}
	if len(added) < 40 {
		t.Errorf("only %d bundles added", len(added))
	}
	t.Logf("%d added, %d stored, %d POSTs", len(added), len(rec.bodies), len(rec.got))
}

// TestKillChild is the process TestKill9WhileSpooling kills.
func TestKillChild(t *testing.T) {
	dir := os.Getenv("DELIVER_KILL_CHILD")
	if dir == "" {
		t.Skip("run by TestKill9WhileSpooling")
	}
	s, err := Open(fastConfig(os.Getenv("DELIVER_URL"), dir))
	if err != nil {
		t.Fatal(err)
	}
	round := os.Getenv("DELIVER_ROUND")
	for i := 0; ; i++ {
		id := fmt.Sprintf("k%s-%d", round, i)
		if err := s.Add(Meta{ID: id, VM: fmt.Sprint("vm", i%3)}, body(strings.Repeat(id, 2000))); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("added %s\n", id)
	}
}
