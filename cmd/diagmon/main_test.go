package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func writeConfig(t *testing.T, dir string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	p := filepath.Join(dir, "diagmon.json")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

func TestUsageAndCheck(t *testing.T) {
	var out, errb bytes.Buffer
	ctx := context.Background()
	require.Equal(t, exitUsage, run(ctx, nil, &out, &errb, nil))
	require.Equal(t, exitUsage, run(ctx, []string{"bogus"}, &out, &errb, nil))
	require.Equal(t, exitUsage, run(ctx, []string{"check"}, &out, &errb, nil))
	require.Equal(t, exitUsage, run(ctx, []string{"check", "--nope"}, &out, &errb, nil))
	require.Equal(t, exitUsage, run(ctx, []string{"diag", "--config", "x"}, &out, &errb, nil))

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"vms":[{"name":"a"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"tcp","address":"127.0.0.1:1"},"every":"-1s","timeout":"1s"}],"sinks":[{"kind":"dir","path":"/tmp"}]}`), 0o644))
	errb.Reset()
	require.Equal(t, exitError, run(ctx, []string{"check", "--config", bad}, &out, &errb, nil))
	require.Contains(t, errb.String(), "scenarios[0].every")
	require.Contains(t, errb.String(), bad)

	good := writeConfig(t, dir, map[string]any{
		"vms":       []any{map[string]any{"name": "a", "labels": map[string]string{"x": "1"}}},
		"scenarios": []any{map[string]any{"name": "s", "match": map[string]string{"x": "2"}, "probe": map[string]any{"kind": "tcp", "address": "127.0.0.1:1"}, "every": "1s", "timeout": "1s"}},
		"sinks":     []any{map[string]any{"kind": "dir", "path": dir}},
	})
	out.Reset()
	require.Equal(t, exitOK, run(ctx, []string{"check", "--config", good}, &out, &errb, nil))
	require.Contains(t, out.String(), "warning: scenarios[0].match: selector matches no VM")
	require.Contains(t, out.String(), "ok: 1 VMs, 1 scenarios, 0 bindings")
}

// TestRunReloadOnSIGHUP: diagmon run prints probe changes and incidents,
// reloads on a real SIGHUP (adding and removing a VM) and stops on
// cancellation; the failing VM's bundle lands in the dir sink.
func TestRunReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	sinkDir := filepath.Join(dir, "reports")
	fail := filepath.Join(dir, "fail.sh")
	require.NoError(t, os.WriteFile(fail, []byte("#!/bin/sh\nexit 1\n"), 0o755))
	cfg := func(vms ...string) map[string]any {
		var vs []any
		for _, v := range vms {
			vs = append(vs, map[string]any{"name": v, "labels": map[string]string{"role": "t"}})
		}
		return map[string]any{
			"vms": vs,
			"scenarios": []any{map[string]any{"name": "down", "match": map[string]string{"role": "t"},
				"probe": map[string]any{"kind": "exec", "command": []string{fail}},
				"every": "100ms", "timeout": "100ms", "failures": 2, "cooldown": "1h", "diagnostics": []string{"host"}}},
			"sinks": []any{map[string]any{"kind": "dir", "path": sinkDir}},
		}
	}
	path := writeConfig(t, dir, cfg("a"))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuf
	done := make(chan int)
	go func() { done <- run(ctx, []string{"run", "--config", path, "--json"}, &out, &errb, hup) }()
	has := func(s string) func() bool { return func() bool { return strings.Contains(out.String(), s) } }
	require.Eventually(t, has(`"type":"bundle","vm":"a"`), 15*time.Second, 20*time.Millisecond, "%s", &out)

	writeConfig(t, dir, cfg("b"))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, has(`"type":"reload"`), 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, has(`"type":"vm","vm":"a","state":"removed"`), 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, has(`"type":"bundle","vm":"b"`), 15*time.Second, 20*time.Millisecond, "%s", &out)

	// A broken reload keeps the running configuration.
	require.NoError(t, os.WriteFile(path, []byte(`{"vms": [`), 0o644))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, has("reload refused"), 5*time.Second, 20*time.Millisecond)

	cancel()
	select {
	case code := <-done:
		require.Equal(t, exitOK, code, "stderr: %s", &errb)
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
	ents, err := os.ReadDir(sinkDir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.Len(t, names, 2, "%v", names)
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		require.True(t, json.Valid([]byte(line)), "JSON lines: %q", line)
	}
}

func TestDiagCommand(t *testing.T) {
	dir := t.TempDir()
	sinkDir := filepath.Join(dir, "reports")
	path := writeConfig(t, dir, map[string]any{
		"vms":   []any{map[string]any{"name": "solo"}},
		"sinks": []any{map[string]any{"kind": "dir", "path": sinkDir, "pack": true}},
	})
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"diag", "--config", path, "--vm", "solo"}, &out, &errb, nil)
	require.Equal(t, exitOK, code, "stderr: %s", errb.String())
	require.Contains(t, out.String(), "host.json")
	ents, err := os.ReadDir(sinkDir)
	require.NoError(t, err)
	require.Len(t, ents, 2, "directory and .tar.gz")

	errb.Reset()
	code = run(context.Background(), []string{"diag", "--config", path, "--vm", "solo", "--only", "sysrq:t"}, &out, &errb, nil)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errb.String(), `needs "qmp"`)
	code = run(context.Background(), []string{"diag", "--config", path, "--vm", "nobody"}, &out, &errb, nil)
	require.Equal(t, exitUsage, code)
	_ = fmt.Sprint
}

// TestRunMetricsListen: diagmon run --metrics-listen serves the
// Prometheus exporter; a scrape over HTTP shows the per-scenario and
// per-VM series of a failing exec probe. check reports the azure tuple's
// problems by key path and prints its settings when valid.
func TestRunMetricsListen(t *testing.T) {
	dir := t.TempDir()
	good := writeConfig(t, dir, map[string]any{
		"vms": []any{map[string]any{"name": "a", "resource_id": "/subscriptions/s/vm/a", "host": "h", "deployment_id": "d"}},
		"scenarios": []any{map[string]any{"name": "down", "vms": []string{"a"},
			"probe": map[string]any{"kind": "exec", "command": []string{"/bin/false"}}, "every": "200ms", "timeout": "200ms", "failures": 1, "cooldown": "1h"}},
		"sinks": []any{map[string]any{"kind": "dir", "path": filepath.Join(dir, "reports")}},
	})
	var out, errb syncBuf
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"run", "--config", good, "--metrics-listen", "127.0.0.1:0"}, &out, &errb, nil)
	}()
	var url string
	require.Eventually(t, func() bool {
		_, rest, ok := strings.Cut(errb.String(), "metrics on ")
		url, _, _ = strings.Cut(rest, "\n")
		return ok && strings.HasSuffix(url, "/metrics")
	}, 10*time.Second, 20*time.Millisecond, "stderr: %s", errb.String())
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return strings.Contains(body, `acpidiag_scenario_incidents_total{scenario="down",vm="a"} 1`)
	}, 10*time.Second, 50*time.Millisecond, "scrape: %s", body)
	require.Contains(t, body, `acpidiag_scenario_probe_success{scenario="down",vm="a"} 0`)
	require.Contains(t, body, `acpidiag_vm_panics_total{vm="a"} 0`)
	require.Contains(t, body, "# TYPE acpidiag_scenario_probes_total counter")
	cancel()
	require.Equal(t, exitOK, <-done)

	var o, e bytes.Buffer
	require.Equal(t, exitUsage, run(context.Background(), []string{"run", "--config", good, "--metrics-listen"}, &o, &e, nil))
	require.Equal(t, exitError, run(context.Background(), []string{"run", "--config", good, "--metrics-listen", "256.0.0.1:99999"}, &o, &e, nil))
	require.Contains(t, e.String(), "--metrics-listen")

	sas := "sv=2022-11-02&se=" + time.Now().Add(24*time.Hour).UTC().Format("2006-01-02T15:04:05Z") + "&sig=c2VjcmV0"
	azure := func(sample string) string {
		return writeConfig(t, dir, map[string]any{
			"vms":   []any{map[string]any{"name": "a"}},
			"sinks": []any{map[string]any{"kind": "dir", "path": dir}},
			"ManifestPassthrough": map[string]any{"azure": map[string]any{"diagnostics": map[string]any{
				"storage_account": "acct1", "storage_account_sas": sas,
				"metrics": map[string]any{"sample_interval": sample, "transfer_interval": "60"}}}},
		})
	}
	o.Reset()
	require.Equal(t, exitOK, run(context.Background(), []string{"check", "--config", azure("15")}, &o, &e, nil))
	require.Contains(t, o.String(), "azure metrics: account acct1, table endpoint https://acct1.table.core.windows.net, sample every 15s, transfer every 1m0s")
	e.Reset()
	require.Equal(t, exitError, run(context.Background(), []string{"check", "--config", azure("10")}, &o, &e, nil))
	require.Contains(t, e.String(), "ManifestPassthrough.azure.diagnostics.metrics.sample_interval: 10s is below LAD's minimum 15s")
	require.NotContains(t, e.String()+o.String(), "c2VjcmV0")
}
