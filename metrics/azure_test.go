package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testWindow is a full window with distinct values per counter.
func testWindow(start time.Time, seed float64) Window {
	w := Window{Start: start, Period: time.Minute}
	agg, _ := NewVMAggregator(time.Minute)
	for i := 0; i < 4; i++ {
		avail := uint64((1 + seed + float64(i)) * (1 << 28))
		agg.Add(MemorySample{Time: start.Add(time.Duration(15*i) * time.Second), TotalBytes: 4 << 30, AvailableBytes: avail})
	}
	w2, ok := agg.Flush(start.Add(time.Minute))
	if !ok {
		panic("no window")
	}
	w.Aggregates = w2.Aggregates
	return w
}

// readBack reads every entity of a partition and parses it (LAD shape
// checked by ParseEntity), keyed by row key.
func readBack(t *testing.T, c *aztables.Client, pk string) map[string]Entity {
	t.Helper()
	filter := fmt.Sprintf("PartitionKey eq '%s'", pk)
	pager := c.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter, Format: toPtr(aztables.MetadataFormatFull)})
	out := map[string]Entity{}
	for pager.More() {
		page, err := pager.NextPage(ctxT(t, 30*time.Second))
		require.NoError(t, err)
		for _, raw := range page.Entities {
			e, err := ParseEntity(raw)
			require.NoError(t, err, "entity %s", raw)
			out[e.RowKey] = e
		}
	}
	return out
}

func TestAzuriteUploadLADShape(t *testing.T) {
	az := startAzurite(t)
	now := time.Date(2024, 5, 12, 10, 3, 0, 0, time.UTC)
	sink, err := NewTableSink(az.diagnostics(t, az.SAS(t, allPerms, time.Hour)), SinkOptions{Now: func() time.Time { return now }})
	require.NoError(t, err)
	q, err := OpenQueue(t.TempDir(), 100)
	require.NoError(t, err)
	u := &Uploader{Queue: q, Sink: sink}
	id := Identity{ResourceID: "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-1", Host: "vm-1", DeploymentID: "unknown"}
	w1 := testWindow(time.Date(2024, 5, 12, 10, 1, 0, 0, time.UTC), 0)
	w2 := testWindow(time.Date(2024, 5, 12, 10, 2, 0, 0, time.UTC), 1)
	require.NoError(t, u.Enqueue("vm-1", id, w1))
	require.NoError(t, u.Enqueue("vm-1", id, w2))
	n, err := u.Drain(ctxT(t, time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, 0, q.Len())

	// The table already exists now: a second sink creating it again gets
	// 409 and carries on.
	sink2, err := NewTableSink(az.diagnostics(t, az.SAS(t, allPerms, time.Hour)), SinkOptions{Now: func() time.Time { return now }})
	require.NoError(t, err)
	require.NoError(t, sink2.EnsureTable(ctxT(t, time.Minute), "WADMetricsPT1MP10DV2S20240503"))

	got := readBack(t, sink.Client("WADMetricsPT1MP10DV2S20240503"), EscapePartitionKey(id.ResourceID))
	require.Len(t, got, 16, "2 windows x 4 counters x 2 row keys")
	for _, w := range []Window{w1, w2} {
		want, err := Entities(w, id)
		require.NoError(t, err)
		for _, e := range want {
			g, ok := got[e.RowKey]
			require.True(t, ok, "row %s missing", e.RowKey)
			// Field by field, exactly.
			assert.Equal(t, e.PartitionKey, g.PartitionKey)
			assert.Equal(t, e.RowKey, g.RowKey)
			assert.Equal(t, e.CounterName, g.CounterName)
			assert.Equal(t, e.Total, g.Total, e.RowKey)
			assert.Equal(t, e.Minimum, g.Minimum, e.RowKey)
			assert.Equal(t, e.Maximum, g.Maximum, e.RowKey)
			assert.Equal(t, e.Average, g.Average, e.RowKey)
			assert.Equal(t, e.Last, g.Last, e.RowKey)
			assert.Equal(t, e.Count, g.Count, e.RowKey)
			assert.True(t, e.Timestamp.Equal(g.Timestamp), "%s: TIMESTAMP %s, want %s", e.RowKey, g.Timestamp, e.Timestamp)
			assert.Equal(t, e.DeploymentID, g.DeploymentID)
			assert.Equal(t, e.Host, g.Host)
		}
	}
	// Spot-check the literal LAD forms in what the service stored.
	_, ok := got["2516867927399999999__:002Fbuiltin:002Fmemory:002Fusedmemory"]
	assert.True(t, ok, "ticks-first row of 10:01")
	_, ok = got[":002Fbuiltin:002Fmemory:002Fusedmemory__2516867927399999999"]
	assert.True(t, ok, "metric-first twin of 10:01")

	// The raw stored entity carries LAD's Edm types.
	ge, err := sink.Client("WADMetricsPT1MP10DV2S20240503").GetEntity(ctxT(t, 30*time.Second), EscapePartitionKey(id.ResourceID),
		"2516867927399999999__:002Fbuiltin:002Fmemory:002Fusedmemory", &aztables.GetEntityOptions{Format: toPtr(aztables.MetadataFormatFull)})
	require.NoError(t, err)
	for _, want := range []string{`"Count@odata.type":"Edm.Int64"`, `"TIMESTAMP@odata.type":"Edm.DateTime"`} {
		assert.Contains(t, string(ge.Value), want)
	}
	// Responses leave Edm.Double unannotated (the default for numbers); a
	// whole double above 2^31 stored intact shows it was not an Int32.
	assert.NotContains(t, string(ge.Value), `"Total@odata.type":"Edm.Int`)
	assert.Contains(t, string(ge.Value), `"Total":14495514624`)

	// Retrying the same window (unknown outcome) stores it once.
	require.NoError(t, u.Enqueue("vm-1", id, w1))
	_, err = u.Drain(ctxT(t, time.Minute))
	require.NoError(t, err)
	assert.Len(t, readBack(t, sink.Client("WADMetricsPT1MP10DV2S20240503"), EscapePartitionKey(id.ResourceID)), 16)
}

func toPtr[T any](v T) *T { return &v }

// TestAzuriteQueueSurvivesOutageAndRestart: the table endpoint is down (a
// real closed port), windows queue on disk; the process "restarts" (a new
// Queue on the same directory); when the endpoint is up every window is
// uploaded, in order, none lost.
func TestAzuriteQueueSurvivesOutageAndRestart(t *testing.T) {
	az := startAzurite(t)
	sas := az.SAS(t, allPerms, time.Hour)
	now := time.Date(2024, 5, 12, 10, 30, 0, 0, time.UTC)
	dir := t.TempDir()
	// A loopback port with nothing listening: a real connection refusal.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := fmt.Sprintf("http://%s/%s", l.Addr(), azuriteAccount)
	l.Close()
	d := az.diagnostics(t, sas)
	d.Endpoint = dead
	down, err := NewTableSink(d, SinkOptions{Now: func() time.Time { return now }, Retries: -1, Timeout: 2 * time.Second})
	require.NoError(t, err)
	q, err := OpenQueue(dir, 100)
	require.NoError(t, err)
	var seen []error
	u := &Uploader{Queue: q, Sink: down, OnError: func(err error) { seen = append(seen, err) }}
	id := Identity{ResourceID: "vm-2", Host: "vm-2", DeploymentID: "unknown"}
	base := time.Date(2024, 5, 12, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 5; i++ {
		require.NoError(t, u.Enqueue("vm-2", id, testWindow(base.Add(time.Duration(i)*time.Minute), float64(i))))
		n, err := u.Drain(ctxT(t, 30*time.Second))
		require.Error(t, err)
		assert.Equal(t, 0, n)
		var ue *UploadError
		require.True(t, errors.As(err, &ue), "%v", err)
		assert.Contains(t, err.Error(), "no answer from the table endpoint")
		assert.NotContains(t, err.Error(), "sig=")
	}
	assert.Len(t, seen, 5)
	assert.Equal(t, 5, q.Len())

	// Restart: a new queue on the same directory, the endpoint back up.
	q2, err := OpenQueue(dir, 100)
	require.NoError(t, err)
	require.Equal(t, 5, q2.Len())
	up, err := NewTableSink(az.diagnostics(t, sas), SinkOptions{Now: func() time.Time { return now }})
	require.NoError(t, err)
	u2 := &Uploader{Queue: q2, Sink: up}
	n, err := u2.Drain(ctxT(t, time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	got := readBack(t, up.Client("WADMetricsPT1MP10DV2S20240503"), "vm:002D2")
	assert.Len(t, got, 40)
	for i := 0; i < 5; i++ {
		k1, _ := RowKeys(":002Fbuiltin:002Fmemory:002Favailablememory", base.Add(time.Duration(i)*time.Minute), "")
		e, ok := got[k1]
		require.True(t, ok, "window %d", i)
		assert.Equal(t, testWindow(base.Add(time.Duration(i)*time.Minute), float64(i)).Aggregates[IdxAvailable].Total, e.Total)
	}
}

func TestAzuriteBadSAS(t *testing.T) {
	az := startAzurite(t)
	sas := az.SAS(t, allPerms, time.Hour)
	// A well-formed token with a wrong signature: Azurite refuses it (403).
	i := strings.Index(sas, "sig=")
	bad := sas[:i] + "sig=AAAA" + sas[i+len("sig=")+4:]
	sink, err := NewTableSink(az.diagnostics(t, bad), SinkOptions{Retries: -1})
	require.NoError(t, err)
	_, err = sink.Upload(ctxT(t, 30*time.Second), Batch{VM: "vm", Period: time.Minute, Entities: mustEntities(t)})
	require.Error(t, err)
	var ue *UploadError
	require.True(t, errors.As(err, &ue))
	assert.Equal(t, http.StatusForbidden, ue.Status)
	assert.Contains(t, err.Error(), "the SAS token was refused")
	assert.NotContains(t, err.Error(), bad[i:])
	assert.NotContains(t, err.Error(), sas[i:])
}

func mustEntities(t *testing.T) []Entity {
	es, err := Entities(testWindow(time.Date(2024, 5, 12, 10, 0, 0, 0, time.UTC), 0), Identity{ResourceID: "vm", Host: "vm", DeploymentID: "unknown"})
	require.NoError(t, err)
	return es
}

func TestQueueBoundAndOrder(t *testing.T) {
	dir := t.TempDir()
	q, err := OpenQueue(dir, 3)
	require.NoError(t, err)
	for i := 0; i < 5; i++ {
		require.NoError(t, q.Push(Batch{VM: fmt.Sprint(i), Period: time.Minute}))
	}
	assert.Equal(t, 3, q.Len())
	assert.Equal(t, uint64(2), q.Dropped())
	q2, err := OpenQueue(dir, 3)
	require.NoError(t, err)
	for _, want := range []string{"2", "3", "4"} {
		b, seq, ok, err := q2.Peek()
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, want, b.VM)
		require.NoError(t, q2.Remove(seq))
	}
	_, _, ok, err := q2.Peek()
	require.NoError(t, err)
	assert.False(t, ok)
	_, err = OpenQueue(dir, 0)
	assert.Error(t, err)

	// PushAll keeps order and the bound, and survives a reopen.
	dir = t.TempDir()
	q, err = OpenQueue(dir, 4)
	require.NoError(t, err)
	require.NoError(t, q.Push(Batch{VM: "a"}))
	var bs []Batch
	for i := 0; i < 5; i++ {
		bs = append(bs, Batch{VM: fmt.Sprint("b", i)})
	}
	require.NoError(t, q.PushAll(bs))
	assert.Equal(t, uint64(2), q.Dropped(), "a and b0")
	q2, err = OpenQueue(dir, 4)
	require.NoError(t, err)
	for _, want := range []string{"b1", "b2", "b3", "b4"} {
		b, seq, ok, err := q2.Peek()
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, want, b.VM)
		require.NoError(t, q2.Remove(seq))
	}
}

// TestAzuriteWorkersKeepVMOrder: with several workers, batches of different
// VMs go at once, but a failed window of one VM holds back that VM's later
// windows. The failure is real: a batch whose entities span two partitions
// cannot be one transaction and Upload refuses it.
func TestAzuriteWorkersKeepVMOrder(t *testing.T) {
	az := startAzurite(t)
	now := time.Date(2024, 5, 12, 10, 30, 0, 0, time.UTC)
	sink, err := NewTableSink(az.diagnostics(t, az.SAS(t, allPerms, time.Hour)), SinkOptions{Now: func() time.Time { return now }})
	require.NoError(t, err)
	q, err := OpenQueue(t.TempDir(), 100)
	require.NoError(t, err)
	u := &Uploader{Queue: q, Sink: sink, Workers: 4}
	base := time.Date(2024, 5, 12, 10, 0, 0, 0, time.UTC)
	batch := func(vm string, i int) Batch {
		es, err := Entities(testWindow(base.Add(time.Duration(i)*time.Minute), float64(i)), Identity{ResourceID: vm, Host: vm, DeploymentID: "unknown"})
		require.NoError(t, err)
		return Batch{VM: vm, WindowStart: base.Add(time.Duration(i) * time.Minute), Period: time.Minute, Entities: es}
	}
	a1 := batch("a", 0)
	a1.Entities[3].PartitionKey = "other"
	require.NoError(t, q.PushAll([]Batch{a1, batch("b", 0), batch("a", 1), batch("c", 0)}))
	n, err := u.Drain(ctxT(t, time.Minute))
	require.ErrorContains(t, err, "a transaction holds one partition")
	assert.Equal(t, 1, n, "b went with a's failing window; a's next window did not")
	assert.Equal(t, 3, q.Len())
	c := sink.Client("WADMetricsPT1MP10DV2S20240503")
	assert.Len(t, readBack(t, c, "b"), 8)
	assert.Empty(t, readBack(t, c, "a"))
	// Drop the bad window: a's second window and c's follow.
	b, seq, ok, err := q.Peek()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "a", b.VM)
	require.NoError(t, q.Remove(seq))
	n, err = u.Drain(ctxT(t, time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Len(t, readBack(t, c, "a"), 8)
	assert.Len(t, readBack(t, c, "c"), 8)
}

// A queue file that cannot be read back (a torn disk, a bad edit) is
// reported as a *QueueError naming it and removed; the batches behind it
// go on.
func TestDrainCorruptQueueFile(t *testing.T) {
	dir := t.TempDir()
	q, err := OpenQueue(dir, 10)
	require.NoError(t, err)
	require.NoError(t, q.Push(Batch{VM: "a", Period: time.Minute}))
	b, seq, ok, err := q.Peek()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "a", b.VM)
	require.NoError(t, os.WriteFile(q.path(seq), []byte("{not json"), 0o600))
	require.NoError(t, q.Push(Batch{VM: "b", Period: time.Minute}))
	u := &Uploader{Queue: q}
	n, err := u.Drain(context.Background())
	var qe *QueueError
	require.ErrorAs(t, err, &qe)
	assert.Equal(t, q.path(seq), qe.Path)
	assert.Equal(t, 0, n)
	assert.Equal(t, 1, q.Len())
	b, _, ok, err = q.Peek()
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "b", b.VM)
}
