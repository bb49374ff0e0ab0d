//go:build e2e

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/acpidiag/acpidiag/collector"
	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/monitor/deliver"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a running diagmon or diagcollect; its stdout lines are kept.
type proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func start(t *testing.T, exe string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(exe, args...), done: make(chan struct{})}
	out, _ := p.cmd.StdoutPipe()
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	return p
}

func (p *proc) stop(sig syscall.Signal) {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not come up", url)
}

// TestE2ESoakDelivery: diagmon raises incidents continuously (exec
// probes that always fail, 4 VMs, a short cooldown) into two sinks, a
// dir sink and the http sink to diagcollect. The collector is down for a
// while (ACPIDIAG_SOAK_DOWN, default 2m under CI=true, else 20s), and
// diagmon is killed with SIGKILL and restarted twice during that time.
// Then the collector comes back, incidents stop, and the spool drains.
// Every bundle that reached the first sink (the dir sink: it holds every
// finished bundle) is stored by the collector exactly once, and the
// collector stores nothing else: count in = count out, 0 lost, 0
// duplicated (a resend is answered 200 and not stored again).
func TestE2ESoakDelivery(t *testing.T) {
	down := 20 * time.Second
	if fixtures.InCI() {
		down = 2 * time.Minute
	}
	if v := os.Getenv("ACPIDIAG_SOAK_DOWN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("ACPIDIAG_SOAK_DOWN: %v", err)
		}
		down = d
	}
	diagmon, diagcollect := fixtures.BuildCommand(t, "diagmon"), fixtures.BuildCommand(t, "diagcollect")
	dir := t.TempDir()
	addr := freeAddr(t)
	store, spool, dirSink, work := filepath.Join(dir, "store"), filepath.Join(dir, "spool"), filepath.Join(dir, "reports"), filepath.Join(dir, "work")
	writeConfig := func(probe string) string {
		var vms, names []string
		for i := 0; i < 4; i++ {
			vms = append(vms, fmt.Sprintf(`{"name":"vm%d"}`, i))
			names = append(names, fmt.Sprintf(`"vm%d"`, i))
		}
		script := filepath.Join(dir, "diag.sh")
		os.WriteFile(script, []byte("#!/bin/sh\necho collected at $(date +%s.%N); head -c 20000 /dev/urandom | od -x | head -400\n"), 0o755)
		cfg := fmt.Sprintf(`{"vms":[%s],"scenarios":[{"name":"soak","vms":[%s],"probe":{"kind":"exec","command":[%q]},
"every":"100ms","timeout":"100ms","failures":1,"cooldown":"700ms","diagnostics":["host","script:%s"]}],
"sinks":[{"kind":"dir","path":%q},{"kind":"http","url":"http://%s/api/bundles","spool":%q,"max_backoff":"2s"}]}`,
			strings.Join(vms, ","), strings.Join(names, ","), probe, script, dirSink, addr, spool)
		p := filepath.Join(dir, filepath.Base(probe)+".json")
		os.WriteFile(p, []byte(cfg), 0o644)
		return p
	}
	failing, passing := writeConfig("/bin/false"), writeConfig("/bin/true")
	var mons []*proc
	runMon := func(cfg string) *proc {
		p := start(t, diagmon, "run", "--config", cfg, "--json", "--workdir", work)
		mons = append(mons, p)
		return p
	}
	runCol := func() *proc {
		p := start(t, diagcollect, "serve", "--listen", addr, "--store", store)
		waitHTTP(t, "http://"+addr+"/api/stats")
		return p
	}

	col := runCol()
	mon := runMon(failing)
	time.Sleep(4 * time.Second)
	col.stop(syscall.SIGKILL)
	t.Logf("collector down for %s", down)
	downAt := time.Now()
	for k := 1; k <= 2; k++ {
		time.Sleep(down / 3)
		mon.stop(syscall.SIGKILL)
		t.Logf("diagmon killed (SIGKILL) %d, restarted", k)
		mon = runMon(failing)
	}
	time.Sleep(time.Until(downAt.Add(down)))
	col = runCol()
	t.Logf("collector back after %s", time.Since(downAt).Round(time.Second))
	time.Sleep(4 * time.Second)
	mon.stop(syscall.SIGTERM)
	// Drain: a monitor whose probes pass delivers what is spooled and
	// what the kills left in the workdir, and raises nothing new.
	mon = runMon(passing)
	end := time.Now().Add(2 * time.Minute)
	for {
		st, err := deliver.ReadStatus(spool)
		ents, _ := os.ReadDir(work)
		if err == nil && st.Queued == 0 && len(ents) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("spool not drained: %+v, %d left in the workdir", st, len(ents))
		}
		time.Sleep(200 * time.Millisecond)
	}
	mon.stop(syscall.SIGTERM)

	in := map[string]bool{}
	ents, _ := os.ReadDir(dirSink)
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			in[e.Name()] = true
		}
	}
	out := map[string]bool{}
	ents, _ = os.ReadDir(filepath.Join(store, "bundles"))
	for _, e := range ents {
		out[e.Name()] = true
	}
	lost, extra := 0, 0
	for id := range in {
		if !out[id] {
			lost++
			t.Errorf("lost: %s", id)
		}
	}
	for id := range out {
		if !in[id] {
			extra++
			t.Errorf("stored but not in the dir sink: %s", id)
		}
	}
	resp, err := http.Get("http://" + addr + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats collector.Stats
	json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	st, _ := deliver.ReadStatus(spool)
	redelivered, unfinished := 0, 0
	for _, p := range mons {
		p.mu.Lock()
		for _, l := range p.lines {
			if strings.Contains(l, "redelivered: left by a previous run") {
				redelivered++
			}
			if strings.Contains(l, "removed the unfinished bundle") {
				unfinished++
			}
		}
		p.mu.Unlock()
	}
	t.Logf("after the kills: %d finished bundles redelivered from the workdir, %d unfinished ones removed", redelivered, unfinished)
	t.Logf("count in %d (dir sink), count out %d (collector store), lost %d, extra %d; collector since its restart: %+v; spool: delivered %d, dropped %d",
		len(in), len(out), lost, extra, stats, st.Delivered, st.Dropped)
	if len(in) < 20 {
		t.Errorf("only %d incidents: the soak did not run", len(in))
	}
	if st.Dropped != 0 || stats.Refused != 0 {
		t.Errorf("dropped %d, refused %d", st.Dropped, stats.Refused)
	}
	if stats.Bundles != len(out) {
		t.Errorf("collector index %d, store %d", stats.Bundles, len(out))
	}
}
