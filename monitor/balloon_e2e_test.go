//go:build e2e

package monitor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/internal/testguest"
)

// TestE2EBalloonProbe: the real test guest, whose stock virtio_balloon
// driver answers QEMU's statistics polls, under a monitor with the azure
// tuple and a balloon probe. The probe passes while last-update advances
// and the pipeline's memory gauges are scraped with source="balloon"; when
// the guest's vCPUs are stopped (QMP stop: the guest kernel cannot answer
// any more), last-update freezes and the probe fails within max_age plus
// a probe period.
func TestE2EBalloonProbe(t *testing.T) {
	_, vm := bootGuest(t, testguest.BootArgs("alive", 0))
	c := Config{VMs: []VMConfig{vm}, Scenarios: []ScenarioConfig{{Name: "balloon", VMs: []string{"guest"},
		Probe: ProbeConfig{Kind: ProbeBalloon, MaxAge: "6s"}, Every: "1s", Timeout: "1s", Failures: 1000}},
		Sinks: []SinkConfig{{Kind: "dir", Path: t.TempDir()}}}
	cfg, err := ParseConfig([]byte(`{"azure": ` + azureJSON("15") + `}`))
	require.NoError(t, err)
	c.Azure = cfg.Azure
	p, err := Check(c, CheckOptions{})
	require.NoError(t, err)
	m, url := startScraped(t, p, 0)
	require.Eventually(t, func() bool {
		rv, ok := m.RegionVerdict("guest")
		return ok && rv.State == hostreader.StateAlive
	}, 120*time.Second, 100*time.Millisecond, "guest boots")

	last := func() *Result { st, _ := m.State("guest", "balloon"); return st.Last }
	var first string
	require.Eventually(t, func() bool {
		r := last()
		if r == nil || !r.OK || !strings.HasPrefix(r.Detail, "balloon last-update ") {
			return false
		}
		if first == "" {
			first = r.Detail
		}
		return r.Detail != first
	}, 60*time.Second, 100*time.Millisecond, "last-update advances (the driver answers)")
	var s map[string]float64
	require.Eventually(t, func() bool {
		s = scrape(t, url)
		return s[`acpidiag_vm_memory_total_bytes{source="balloon",vm="guest"}`] > 0
	}, 40*time.Second, 200*time.Millisecond, "balloon gauges scraped")
	total := s[`acpidiag_vm_memory_total_bytes{source="balloon",vm="guest"}`]
	require.Greater(t, total, float64(128<<20))
	require.LessOrEqual(t, total, float64(256<<20))
	require.Greater(t, s[`acpidiag_vm_memory_available_bytes{source="balloon",vm="guest"}`], 0.0)
	require.Equal(t, 1.0, s[`acpidiag_scenario_probe_success{scenario="balloon",vm="guest"}`])

	m.mu.Lock()
	v := m.vms["guest"]
	m.mu.Unlock()
	q := v.qmp()
	require.NotNil(t, q)
	require.NoError(t, q.Execute(context.Background(), "stop", nil, nil))
	stopped := time.Now()
	require.Eventually(t, func() bool { r := last(); return r != nil && !r.OK }, 30*time.Second, 100*time.Millisecond)
	took := time.Since(stopped)
	t.Logf("stop → balloon probe failed after %s: %s", took.Round(time.Millisecond), last().Error)
	require.Contains(t, last().Error, "last-update stuck at")
	require.Less(t, took, 6*time.Second+3*time.Second+2*time.Second, "max_age + polling interval + probe period")
}
