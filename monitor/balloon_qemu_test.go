package monitor

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/metrics"
)

// TestQEMUBalloonProbeAndPipeline runs the monitor against real QEMUs
// without a guest OS (SeaBIOS only), so nothing in the guest answers the
// balloon's statistics polls: the balloon probe on a VM with a
// virtio-balloon device fails once last-update has not advanced for
// max_age, and on a VM without one it fails at once. With the azure tuple
// the metrics pipeline samples both VMs through the host view (QEMU's
// RSS), warns once per VM, and the memory gauges are scraped with
// source="host".
func TestQEMUBalloonProbeAndPipeline(t *testing.T) {
	dir, err := os.MkdirTemp("", "mb")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	withBalloon, without := filepath.Join(dir, "b.qmp"), filepath.Join(dir, "n.qmp")
	startBareQEMU(t, withBalloon, "-device", "virtio-balloon-pci,id=balloon0")
	startBareQEMU(t, without)

	c, err := ParseConfig([]byte(`{"vms": [{"name": "b", "qmp": "` + withBalloon + `"}, {"name": "n", "qmp": "` + without + `", "resource_id": "/r/n"}],
	  "scenarios": [{"name": "balloon", "vms": ["b", "n"], "probe": {"kind": "balloon", "max_age": "3s"}, "every": "1s", "timeout": "1s", "failures": 1000}],
	  ` + sinkOK + `, "azure": ` + azureJSON("15") + `}`))
	require.NoError(t, err)
	p, err := Check(c, CheckOptions{})
	require.NoError(t, err)
	ex := metrics.NewExporter(nil)
	m, err := New(context.Background(), p, Options{Workdir: t.TempDir(), Sinks: []Sink{}, Exporter: ex})
	require.NoError(t, err)
	defer m.Close()
	var warnings []string
	evs := make(chan struct{})
	go func() {
		defer close(evs)
		for e := range m.Events() {
			if e.Type == EventWarning {
				warnings = append(warnings, e.Detail)
			}
			if e.Type == EventVM && e.State == "removed" && e.VM == "n" {
				return
			}
		}
	}()
	srv := httptest.NewServer(m.MetricsHandler())
	defer srv.Close()

	last := func(vm string) *Result { st, _ := m.State(vm, "balloon"); return st.Last }
	require.Eventually(t, func() bool { r := last("n"); return r != nil && strings.Contains(r.Error, "no virtio-balloon device") }, 20*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool { r := last("b"); return r != nil && r.OK && strings.Contains(r.Detail, "not yet reported") },
		20*time.Second, 50*time.Millisecond, "before max_age the probe passes")
	require.Eventually(t, func() bool { r := last("b"); return r != nil && !r.OK }, 20*time.Second, 50*time.Millisecond)
	require.Contains(t, last("b").Error, "balloon statistics never updated")

	var s map[string]float64
	require.Eventually(t, func() bool {
		s = scrape(t, srv.URL)
		return s[`acpidiag_vm_memory_total_bytes{source="host",vm="b"}`] == 64<<20 && s[`acpidiag_vm_memory_total_bytes{source="host",vm="n"}`] == 64<<20
	}, 40*time.Second, 200*time.Millisecond, "last scrape: %v", s)
	avail := s[`acpidiag_vm_memory_available_bytes{source="host",vm="n"}`]
	require.Greater(t, avail, 0.0)
	require.Less(t, avail, float64(64<<20), "RAM minus QEMU's RSS")
	require.Equal(t, 0.0, s[`acpidiag_scenario_probe_success{scenario="balloon",vm="b"}`])

	require.NoError(t, m.RemoveVM("n"))
	<-evs
	hostView := 0
	for _, w := range warnings {
		if strings.Contains(w, "host's view of memory") {
			hostView++
		}
	}
	require.Equal(t, 2, hostView, "one host-view warning per VM: %q", warnings)
	require.Eventually(t, func() bool {
		s = scrape(t, srv.URL)
		_, ok := s[`acpidiag_vm_memory_total_bytes{source="host",vm="n"}`]
		return !ok
	}, 5*time.Second, 100*time.Millisecond, "a removed VM leaves the scrape")
}
