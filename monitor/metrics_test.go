package monitor

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/metrics"
)

// testSAS is a well-formed SAS that expires in a year (never sent
// anywhere: the endpoint is a closed port).
func testSAS() string {
	return "sv=2022-11-02&ss=t&srt=sco&sp=rwdlacu&se=" + time.Now().Add(365*24*time.Hour).UTC().Format("2006-01-02T15:04:05Z") + "&sig=c2lnbmF0dXJl"
}

func azureJSON(sample string) string {
	return `{"diagnostics": {"storage_account": "devstoreaccount1", "storage_account_sas": "` + testSAS() +
		`", "endpoint": "http://127.0.0.1:1/devstoreaccount1", "metrics": {"sample_interval": "` + sample + `", "transfer_interval": "60"}}}`
}

func TestAzureConfigAccepted(t *testing.T) {
	vms := `"vms": [{"name": "web", "qmp": "/run/web.qmp", "resource_id": "/subscriptions/x/vm/web", "host": "h1", "deployment_id": "d1"},
	                {"name": "db", "qmp": "/run/db.qmp"}]`
	for _, tc := range []struct{ name, cfg string }{
		{"top level", `{` + vms + `, ` + sinkOK + `, "azure": ` + azureJSON("15") + `}`},
		{"ManifestPassthrough", `{` + vms + `, ` + sinkOK + `, "ManifestPassthrough": {"azure": ` + azureJSON("15") + `}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.cfg))
			require.NoError(t, err)
			p, err := Check(c, CheckOptions{NoFileChecks: true})
			require.NoError(t, err)
			require.True(t, p.Azure.Enabled())
			require.Equal(t, 15*time.Second, p.Azure.Diagnostics.Metrics.Sample())
			require.Equal(t, metrics.Identity{ResourceID: "/subscriptions/x/vm/web", Host: "h1", DeploymentID: "d1"}, c.VMs[0].Azure().Identity("web"))
			require.Equal(t, metrics.Identity{ResourceID: "db", Host: "db", DeploymentID: "unknown"}, c.VMs[1].Azure().Identity("db"))
		})
	}
	// Without the tuple: no metrics.
	c, err := ParseConfig([]byte(`{` + vms + `, ` + sinkOK + `}`))
	require.NoError(t, err)
	p, err := Check(c, CheckOptions{NoFileChecks: true})
	require.NoError(t, err)
	require.False(t, p.Azure.Enabled())
}

func TestAzureConfigErrorsNameKeyPaths(t *testing.T) {
	vm := `"vms": [{"name": "a", "qmp": "/run/a.qmp"}], ` + sinkOK
	for _, tc := range []struct{ name, cfg, path, msg string }{
		{"sample below LAD minimum", `{` + vm + `, "azure": ` + azureJSON("5") + `}`, "azure.diagnostics.metrics.sample_interval", "below LAD's minimum"},
		{"wrapped sample below minimum", `{` + vm + `, "ManifestPassthrough": {"azure": ` + azureJSON("5") + `}}`, "ManifestPassthrough.azure.diagnostics.metrics.sample_interval", "below LAD's minimum"},
		{"both", `{` + vm + `, "azure": ` + azureJSON("15") + `, "ManifestPassthrough": {"azure": ` + azureJSON("15") + `}}`, "ManifestPassthrough.azure", "given as well"},
		{"unknown key", `{` + vm + `, "azure": {"diagnostics": {"storage_acount": "x"}}}`, "azure", "unknown key"},
		{"bad account", `{` + vm + `, "azure": {"diagnostics": {"storage_account": "Bad_Name", "storage_account_sas": "` + testSAS() + `", "metrics": {}}}}`, "azure.diagnostics.storage_account", "lower-case"},
		{"expired SAS", `{` + vm + `, "azure": {"diagnostics": {"storage_account": "abc", "storage_account_sas": "sv=1&se=2020-01-01&sig=c2VjcmV0", "metrics": {}}}}`, "azure.diagnostics.storage_account_sas", "expired"},
		{"passthrough not an object", `{` + vm + `, "ManifestPassthrough": 3}`, "ManifestPassthrough", "want an object"},
		{"balloon max_age", `{` + vm + `, "scenarios": [{"name": "b", "vms": ["a"], "probe": {"kind": "balloon", "max_age": "1s"}, "every": "5s", "timeout": "2s"}]}`, "scenarios[0].probe.max_age", "at least 3s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := checkErr(t, tc.cfg)
			require.Contains(t, errs, tc.path, "errors: %v", errs)
			require.Contains(t, errs[tc.path], tc.msg)
			for _, m := range errs {
				require.NotContains(t, m, "c2VjcmV0", "the SAS signature is never printed")
			}
		})
	}
	// Per-VM keys still refuse their misspellings.
	errs := checkErr(t, `{"vms": [{"name": "a", "resourceid": "x"}], `+sinkOK+`}`)
	require.Contains(t, errs, "vms[0].resourceid")
	// The balloon probe needs a QMP socket.
	errs = checkErr(t, `{"vms": [{"name": "a"}], `+sinkOK+`, "scenarios": [{"name": "b", "vms": ["a"], "probe": {"kind": "balloon"}, "every": "5s", "timeout": "2s"}]}`)
	require.Contains(t, errs["scenarios[0].probe"], `needs "qmp"`)
}

// scrape fetches url and returns the sample lines by series
// (name{labels} -> value).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := map[string]float64{}
	line := regexp.MustCompile(`^(acpidiag_[a-z_]+(?:\{[^}]*\})?) (\S+)$`)
	for _, l := range strings.Split(string(b), "\n") {
		if m := line.FindStringSubmatch(l); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			require.NoError(t, err, l)
			out[m[1]] = v
		}
	}
	return out
}

// startScraped starts a monitor for p with an Exporter, drains its
// events, and serves MetricsHandler; it returns the monitor and the URL.
func startScraped(t *testing.T, p *Plan, watch time.Duration) (*Monitor, string) {
	t.Helper()
	m, err := New(context.Background(), p, Options{Workdir: t.TempDir(), WatchInterval: watch, Exporter: metrics.NewExporter(nil)})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	go func() {
		for range m.Events() {
		}
	}()
	srv := httptest.NewServer(m.MetricsHandler())
	t.Cleanup(srv.Close)
	return m, srv.URL
}

// TestMetricsScrape runs a monitor with a region VM (the region file
// written the way the guest's SSDT does) and exec probes, serves its
// Exporter over HTTP and scrapes it: per-scenario probe results and
// incidents, per-VM verdict, ticks, boots and seconds since the last tick.
func TestMetricsScrape(t *testing.T) {
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "r0")}
	w, err := openRegionWriter(paths)
	require.NoError(t, err)
	defer w.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.run(ctx, 100*time.Millisecond)

	cfg := Config{VMs: []VMConfig{{Name: "a", Region: paths[0]}, {Name: "b"}}, Scenarios: []ScenarioConfig{
		{Name: "region", VMs: []string{"a"}, Probe: ProbeConfig{Kind: ProbeRegion}, Every: "100ms", Timeout: "100ms", Failures: 100},
		{Name: "ok", VMs: []string{"a", "b"}, Probe: ProbeConfig{Kind: ProbeExec, Command: []string{"/bin/true"}}, Every: "300ms", Timeout: "300ms"},
		{Name: "bad", VMs: []string{"b"}, Probe: ProbeConfig{Kind: ProbeExec, Command: []string{"/bin/false"}}, Every: "300ms", Timeout: "300ms", Failures: 2, Cooldown: "1h"},
	}, Sinks: []SinkConfig{{Kind: "dir", Path: t.TempDir()}}}
	p, err := Check(cfg, CheckOptions{})
	require.NoError(t, err)
	m, url := startScraped(t, p, 100*time.Millisecond)

	var s map[string]float64
	require.Eventually(t, func() bool {
		s = scrape(t, url)
		return s[`acpidiag_scenario_incidents_total{scenario="bad",vm="b"}`] == 1 &&
			s[`acpidiag_scenario_probes_total{result="pass",scenario="ok",vm="b"}`] >= 3 &&
			s[`acpidiag_scenario_probe_success{scenario="region",vm="a"}`] == 1 &&
			s[`acpidiag_vm_ticks{vm="a"}`] >= 3
	}, 10*time.Second, 50*time.Millisecond, "last scrape: %v", s)
	require.Equal(t, 0.0, s[`acpidiag_scenario_probe_success{scenario="bad",vm="b"}`])
	require.Equal(t, 0.0, s[`acpidiag_scenario_probes_total{result="pass",scenario="bad",vm="b"}`])
	require.GreaterOrEqual(t, s[`acpidiag_scenario_probes_total{result="fail",scenario="bad",vm="b"}`], 2.0)
	require.Equal(t, 0.0, s[`acpidiag_scenario_probes_total{result="fail",scenario="ok",vm="a"}`])
	require.Equal(t, 1.0, s[`acpidiag_vm_verdict{state="alive",vm="a"}`])
	require.Contains(t, s, `acpidiag_vm_boots{vm="a"}`)
	require.Less(t, s[`acpidiag_vm_seconds_since_last_tick{vm="a"}`], 5.0)
	require.Equal(t, 0.0, s[`acpidiag_vm_panics_total{vm="a"}`])
	require.Contains(t, s, `acpidiag_vm_panics_total{vm="b"}`, "a VM without a region is scraped too")

	// The guest stops ticking: the verdict goes stale and the age grows.
	w.paused[0].Store(true)
	require.Eventually(t, func() bool {
		s = scrape(t, url)
		return s[`acpidiag_vm_verdict{state="stale",vm="a"}`] == 1 && s[`acpidiag_vm_verdict{state="alive",vm="a"}`] == 0
	}, 10*time.Second, 50*time.Millisecond, "last scrape: %v", s)
	require.Greater(t, s[`acpidiag_vm_seconds_since_last_tick{vm="a"}`], 0.2)

	// A VM removed from the configuration leaves the scrape.
	require.NoError(t, m.RemoveVM("b"))
	s = scrape(t, url)
	for k := range s {
		require.NotContains(t, k, `vm="b"`)
	}
}

// TestMetricsPipelineFollowsReload checks that the azure tuple starts the
// metrics pipeline and that a reload without it stops it.
func TestMetricsPipelineFollowsReload(t *testing.T) {
	doc := func(azure bool) *Plan {
		s := `{"vms": [{"name": "a", "qmp": "/nonexistent/a.qmp"}], ` + sinkOK
		if azure {
			s += `, "azure": ` + azureJSON("15")
		}
		c, err := ParseConfig([]byte(s + `}`))
		require.NoError(t, err)
		p, err := Check(c, CheckOptions{NoFileChecks: true})
		require.NoError(t, err)
		return p
	}
	running := func(m *Monitor) bool { m.mu.Lock(); defer m.mu.Unlock(); return m.metrics != nil }
	m, err := New(context.Background(), doc(true), Options{Workdir: t.TempDir(), Sinks: []Sink{}})
	require.NoError(t, err)
	defer m.Close()
	require.True(t, running(m))
	m.mu.Lock()
	first := m.metrics
	m.mu.Unlock()
	require.NoError(t, m.Apply(doc(true)))
	m.mu.Lock()
	same := m.metrics == first
	m.mu.Unlock()
	require.True(t, same, "an unchanged tuple keeps the pipeline (and its open windows)")
	// A reload that changes only a VM's identity keeps its connections
	// and the pipeline, and the pipeline gets the new identity.
	before := m.vms["a"]
	p2 := doc(true)
	p2.Config.VMs[0].ResourceID = "/subscriptions/s/vm/a2"
	require.NoError(t, m.Apply(p2))
	m.mu.Lock()
	same = m.metrics == first && m.vms["a"] == before
	ids := m.azureIdentitiesLocked()
	m.mu.Unlock()
	require.True(t, same)
	require.Equal(t, "/subscriptions/s/vm/a2", ids["a"].Identity("a").ResourceID)
	require.NoError(t, m.Apply(doc(false)))
	require.False(t, running(m))
	require.NoError(t, m.Apply(doc(true)))
	require.True(t, running(m))
	require.NoError(t, m.Close())
	require.False(t, running(m))
}

// BenchmarkMetricsScrape1000VMs: one Prometheus scrape of a monitor with
// 1,000 VMs (regions ticked once, region verdicts) and 1,000 region-probe
// bindings: ExportState plus the exposition of ~10,000 series.
func BenchmarkMetricsScrape1000VMs(b *testing.B) {
	dir := b.TempDir()
	var paths []string
	cfg := Config{Sinks: []SinkConfig{{Kind: "dir", Path: b.TempDir()}}}
	for i := 0; i < 1000; i++ {
		p := filepath.Join(dir, strconv.Itoa(i))
		newRegionFile(b, p)
		paths = append(paths, p)
		cfg.VMs = append(cfg.VMs, VMConfig{Name: "vm" + strconv.Itoa(i), Region: p, Labels: map[string]string{"all": "1"}})
	}
	cfg.Scenarios = []ScenarioConfig{{Name: "region", Match: map[string]string{"all": "1"}, Probe: ProbeConfig{Kind: ProbeRegion}, Every: "1s", Timeout: "1s", Failures: 1000}}
	w, err := openRegionWriter(paths)
	require.NoError(b, err)
	defer w.close()
	w.tick()
	p, err := Check(cfg, CheckOptions{})
	require.NoError(b, err)
	m, err := New(context.Background(), p, Options{Workdir: b.TempDir(), Exporter: metrics.NewExporter(nil)})
	require.NoError(b, err)
	defer m.Close()
	go func() {
		for range m.Events() {
		}
	}()
	require.Eventually(b, func() bool {
		for _, st := range m.States() {
			if st.Last == nil {
				return false
			}
		}
		return len(m.States()) == 1000
	}, 30*time.Second, 100*time.Millisecond)
	h := m.MetricsHandler()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	b.ResetTimer()
	var n int
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		n = rec.Body.Len()
	}
	b.ReportMetric(float64(n), "bytes/scrape")
}
