package metrics

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
)

// TestPipelineRealQEMUAzurite: the whole pipeline on a real QEMU (balloon
// device, no guest OS: the host view) and a real Azurite: samples, windows,
// queue, upload, read back, Prometheus gauges, one warning.
func TestPipelineRealQEMUAzurite(t *testing.T) {
	fixtures.RequireTool(t, "qemu-system-x86_64")
	az := startAzurite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm := startQEMU(ctx, t, 96, true)
	dir, p, q := vm.Dir, vm.P, vm.Q

	mc, err := ParseConfig([]byte(`{"diagnostics":{"storage_account":"devstoreaccount1","storage_account_sas":"` + az.SAS(t, allPerms, time.Hour) +
		`","endpoint":"` + az.Endpoint + `","metrics":{"sample_interval":"15","transfer_interval":"60"}}}`))
	require.NoError(t, err)
	var mu sync.Mutex
	var warnings []string
	exp := NewExporter(nil)
	tableTime := time.Date(2024, 5, 12, 12, 0, 0, 0, time.UTC)
	pl, err := NewPipeline(mc, PipelineOptions{QueueDir: filepath.Join(dir, "queue"), Exporter: exp,
		Warn:   func(s string) { mu.Lock(); warnings = append(warnings, s); mu.Unlock() },
		Sample: time.Second, Transfer: 2 * time.Second, Sink: SinkOptions{Now: func() time.Time { return tableTime }}})
	require.NoError(t, err)
	pl.SetVMs([]PipelineVM{{Name: "vm-a", QMP: q, Pid: p.Pid(), RAMBytes: 96 << 20, Azure: VMAzure{ResourceID: "/subscriptions/s/vm-a"}}})

	// Driven times in the past, so the Run below (real clock) follows on.
	t0 := time.Now().Truncate(2 * time.Second).Add(-10 * time.Second)
	queued := 0
	for i := 0; i <= 4; i++ {
		n, err := pl.SampleOnce(ctx, t0.Add(time.Duration(i)*time.Second))
		require.NoError(t, err)
		queued += n
	}
	assert.Equal(t, 2, queued, "windows [t0,t0+2s) and [t0+2s,t0+4s) closed")
	n, err := pl.Uploader.Drain(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	got := readBack(t, pl.Uploader.Sink.Client("WADMetricsPT2SP10DV2S20240503"), EscapePartitionKey("/subscriptions/s/vm-a"))
	require.Len(t, got, 16)
	k1, _ := RowKeys(":002Fbuiltin:002Fmemory:002Fusedmemory", t0, "")
	e, ok := got[k1]
	require.True(t, ok)
	assert.Equal(t, int64(2), e.Count)
	assert.Greater(t, e.Minimum, 0.0, "QEMU's RSS")
	assert.Equal(t, "vm-a", e.Host)
	assert.Equal(t, "unknown", e.DeploymentID)

	mu.Lock()
	require.Len(t, warnings, 1, "%q", warnings)
	assert.True(t, strings.Contains(warnings[0], "vm-a: metrics: using the host's view"), warnings[0])
	mu.Unlock()
	problems, err := exp.Registry().Gather()
	require.NoError(t, err)
	found := false
	for _, f := range problems {
		if f.GetName() == "acpidiag_vm_memory_used_bytes" {
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if l.GetName() == "source" && l.GetValue() == SourceHost {
						found = true
					}
				}
			}
		}
	}
	assert.True(t, found, "host-view gauge exported with source=host")

	// Run on the real clock for a few windows, then stop.
	rctx, rcancel := context.WithTimeout(ctx, 5500*time.Millisecond)
	defer rcancel()
	assert.ErrorIs(t, pl.Run(rctx), context.DeadlineExceeded)
	_, err = pl.Uploader.Drain(ctx)
	require.NoError(t, err)
	batches, _ := pl.Uploader.Uploaded()
	assert.GreaterOrEqual(t, batches, uint64(4), "the open window and at least one more closed during Run")

	// A VM leaving the configuration leaves the exporter too.
	pl.SetVMs(nil)
	fams, err := exp.Registry().Gather()
	require.NoError(t, err)
	for _, f := range fams {
		assert.NotEqual(t, "acpidiag_vm_memory_used_bytes", f.GetName())
	}
}

func TestPipelineConfigErrors(t *testing.T) {
	_, err := NewPipeline(Config{}, PipelineOptions{QueueDir: t.TempDir()})
	assert.ErrorContains(t, err, "metrics are not configured")
	cfg, err := ParseConfig([]byte(`{"diagnostics":{"storage_account":"abc","storage_account_sas":"se=2000-01-01&sig=x","metrics":{}}}`))
	require.NoError(t, err)
	_, err = NewPipeline(cfg, PipelineOptions{QueueDir: t.TempDir()})
	assert.ErrorIs(t, err, ErrSASExpired)
}

// TestPipelineSetVMsWhileSampling: the monitor calls SetVMs every second
// while Run samples; a VM whose identity changes is updated in place.
// Before SampleOnce took a copy of each VM's configuration under the lock
// this was a data race (go test -race fails). The host view of this test
// process stands in for a QEMU process (no QMP needed).
func TestPipelineSetVMsWhileSampling(t *testing.T) {
	cfg := Config{Diagnostics: &Diagnostics{StorageAccount: "acct1", StorageAccountSAS: SAS(sasToken(time.Now().Add(time.Hour))),
		Endpoint: "http://127.0.0.1:1/acct1", Metrics: &MetricsConfig{}}}
	pl, err := NewPipeline(cfg, PipelineOptions{QueueDir: t.TempDir(), Exporter: NewExporter(nil)})
	require.NoError(t, err)
	vm := func(i int) []PipelineVM {
		return []PipelineVM{{Name: "a", Pid: os.Getpid(), RAMBytes: 1 << 30, Azure: VMAzure{Host: strings.Repeat("h", i%3+1)}}}
	}
	pl.SetVMs(vm(0))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			pl.SetVMs(vm(i))
		}
	}()
	now := time.Now()
	for i := 0; i < 200; i++ {
		_, err := pl.SampleOnce(context.Background(), now.Add(time.Duration(i)*time.Second))
		require.NoError(t, err)
	}
	<-done
}
