package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scrape fetches the exporter over real HTTP and parses the text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	require.NoError(t, err, "%s", b)
	return fams
}

// value returns the sample of family name with the given labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

func TestExporterScrape(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 10, 0, time.UTC)
	e := NewExporter(func() time.Time { return now })
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()

	e.SetMemory("vm1", MemorySample{TotalBytes: 4 << 30, AvailableBytes: 3 << 30, Source: SourceBalloon})
	e.SetMemory("vm2", MemorySample{TotalBytes: 1 << 30, AvailableBytes: 1<<30 - 200<<20, Source: SourceHost})
	e.SetBalloonUpdate("vm1", now.Add(-2*time.Second))
	e.SetVerdict("vm1", "alive")
	e.SetVerdict("vm1", "stale")
	e.SetTick("vm1", 1234, 3, now.Add(-4500*time.Millisecond))
	e.AddPanic("vm1")
	e.AddPanic("vm1")
	e.ProbeResult("web", "vm1", true, 150*time.Millisecond)
	e.ProbeResult("web", "vm1", false, 2*time.Second)
	e.Incident("web", "vm1")

	fams := scrape(t, srv.URL)
	check := func(name string, labels map[string]string, want float64) {
		t.Helper()
		got, ok := value(t, fams, name, labels)
		require.True(t, ok, "%s%v missing", name, labels)
		assert.Equal(t, want, got, "%s%v", name, labels)
	}
	check("acpidiag_vm_memory_total_bytes", map[string]string{"vm": "vm1", "source": "balloon"}, 4<<30)
	check("acpidiag_vm_memory_available_bytes", map[string]string{"vm": "vm1", "source": "balloon"}, 3<<30)
	check("acpidiag_vm_memory_used_bytes", map[string]string{"vm": "vm1", "source": "balloon"}, 1<<30)
	check("acpidiag_vm_memory_used_bytes", map[string]string{"vm": "vm2", "source": "host"}, 200<<20)
	check("acpidiag_vm_balloon_last_update_timestamp_seconds", map[string]string{"vm": "vm1"}, float64(now.Unix()-2))
	check("acpidiag_vm_verdict", map[string]string{"vm": "vm1", "state": "stale"}, 1)
	check("acpidiag_vm_verdict", map[string]string{"vm": "vm1", "state": "alive"}, 0)
	check("acpidiag_vm_seconds_since_last_tick", map[string]string{"vm": "vm1"}, 4.5)
	check("acpidiag_vm_ticks", map[string]string{"vm": "vm1"}, 1234)
	check("acpidiag_vm_boots", map[string]string{"vm": "vm1"}, 3)
	check("acpidiag_vm_panics_total", map[string]string{"vm": "vm1"}, 2)
	check("acpidiag_vm_panics_total", map[string]string{"vm": "vm2"}, 0)
	check("acpidiag_scenario_probe_success", map[string]string{"scenario": "web", "vm": "vm1"}, 0)
	check("acpidiag_scenario_probe_duration_seconds", map[string]string{"scenario": "web", "vm": "vm1"}, 2)
	check("acpidiag_scenario_probes_total", map[string]string{"scenario": "web", "vm": "vm1", "result": "pass"}, 1)
	check("acpidiag_scenario_probes_total", map[string]string{"scenario": "web", "vm": "vm1", "result": "fail"}, 1)
	check("acpidiag_scenario_incidents_total", map[string]string{"scenario": "web", "vm": "vm1"}, 1)
	assert.Equal(t, dto.MetricType_COUNTER, fams["acpidiag_vm_panics_total"].GetType())
	assert.Equal(t, dto.MetricType_GAUGE, fams["acpidiag_vm_ticks"].GetType())
	_, ok := fams["process_resident_memory_bytes"]
	assert.True(t, ok, "process collector registered")

	// Seconds since the last tick is computed at scrape time.
	now = now.Add(10 * time.Second)
	check2, _ := value(t, scrape(t, srv.URL), "acpidiag_vm_seconds_since_last_tick", map[string]string{"vm": "vm1"})
	assert.Equal(t, 14.5, check2)

	e.RemoveVM("vm1")
	fams = scrape(t, srv.URL)
	_, ok = value(t, fams, "acpidiag_vm_ticks", map[string]string{"vm": "vm1"})
	assert.False(t, ok)
	_, ok = value(t, fams, "acpidiag_scenario_incidents_total", map[string]string{"vm": "vm1"})
	assert.False(t, ok)

	// Prometheus naming conventions (promlint).
	e.SetTick("vm3", 1, 1, now)
	e.ProbeResult("s", "vm3", true, time.Second)
	problems, err := testutil.CollectAndLint(e)
	require.NoError(t, err)
	assert.Empty(t, problems)
}
