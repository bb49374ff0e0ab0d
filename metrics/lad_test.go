package metrics

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The expected values below were computed independently with Python's
// datetime and LAD's own escape_nonalphanumerics expression
// (Diagnostic/Utils/misc_helpers.py), not with this package.

func TestTenDayRule(t *testing.T) {
	cases := map[string]string{
		"2024-05-12T10:01:00Z": "20240503", // the example
		"2024-05-03T00:00:00Z": "20240503", // first second of a period
		"2024-05-02T23:59:59Z": "20240423", // last second of the one before
		"2017-04-10T12:00:00Z": "20170410", // LAD docs: WADMetricsPT1HP10DV2S20170410
		"2017-06-18T23:59:59Z": "20170609", // LAD docs: WADMetricsPT1MP10DV2S20170609
		"1601-01-05T00:00:00Z": "16010101", // day 0 of the count
	}
	for in, want := range cases {
		tm, err := time.Parse(time.RFC3339, in)
		require.NoError(t, err)
		assert.Equal(t, want, TenDayStart(tm).Format("20060102"), in)
	}
	name, err := TableName(time.Minute, time.Date(2024, 5, 12, 10, 1, 0, 0, time.UTC))
	require.NoError(t, err)
	assert.Equal(t, "WADMetricsPT1MP10DV2S20240503", name)
	name, err = TableName(time.Hour, time.Date(2017, 4, 10, 1, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	assert.Equal(t, "WADMetricsPT1HP10DV2S20170410", name)
	_, err = TableName(1500*time.Millisecond, time.Now())
	assert.ErrorContains(t, err, "whole number of seconds")
}

func TestISO8601Period(t *testing.T) {
	for d, want := range map[time.Duration]string{
		15 * time.Second: "PT15S", time.Minute: "PT1M", 90 * time.Second: "PT1M30S",
		time.Hour: "PT1H", 90 * time.Minute: "PT1H30M", 25 * time.Hour: "PT25H", 3661 * time.Second: "PT1H1M1S",
	} {
		got, err := ISO8601Period(d)
		require.NoError(t, err)
		assert.Equal(t, want, got, d.String())
	}
	for _, d := range []time.Duration{0, -time.Minute, time.Millisecond} {
		_, err := ISO8601Period(d)
		assert.Error(t, err, d.String())
	}
}

func TestEscapePartitionKey(t *testing.T) {
	in := "/subscriptions/ab-12/resourceGroups/my_rg/providers/Microsoft.Compute/virtualMachines/vmé€1"
	want := ":002Fsubscriptions:002Fab:002D12:002FresourceGroups:002Fmy:005Frg:002Fproviders:002FMicrosoft:002ECompute:002FvirtualMachines:002Fvmé:20AC1"
	assert.Equal(t, want, EscapePartitionKey(in))
	assert.Equal(t, "", EscapePartitionKey(""))
	assert.Equal(t, ":0020:003A", EscapePartitionKey(" :"))
}

func TestRowKeys(t *testing.T) {
	enc, err := EncodeRowKeyMetric(CounterAvailableMemory)
	require.NoError(t, err)
	assert.Equal(t, ":002Fbuiltin:002Fmemory:002Favailablememory", enc)
	start := time.Date(2024, 5, 12, 10, 1, 0, 0, time.UTC)
	assert.Equal(t, "2516867927399999999", DescendingTicks(start))
	assert.Equal(t, uint64(638511048600000000), DateTimeTicks(start))
	k1, k2 := RowKeys(enc, start, "")
	assert.Equal(t, "2516867927399999999__:002Fbuiltin:002Fmemory:002Favailablememory", k1)
	assert.Equal(t, ":002Fbuiltin:002Fmemory:002Favailablememory__2516867927399999999", k2)
	k1, k2 = RowKeys(enc, start, "uuid-1")
	assert.Equal(t, "2516867927399999999__:002Fbuiltin:002Fmemory:002Favailablememory__uuid-1", k1)
	assert.Equal(t, ":002Fbuiltin:002Fmemory:002Favailablememory__2516867927399999999__uuid-1", k2)
	// 19 digits, zero-filled, for the far future too.
	assert.Len(t, DescendingTicks(time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)), 19)
	assert.Equal(t, "0", DescendingTicks(time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC))[:1])
	// Bytes above 0x7F: LAD's signed char becomes FFxx.
	enc, err = EncodeRowKeyMetric("a\xc3")
	require.NoError(t, err)
	assert.Equal(t, "a:FFC3", enc)
	long := make([]byte, 100)
	for i := range long {
		long[i] = '/'
	}
	_, err = EncodeRowKeyMetric(string(long))
	assert.ErrorContains(t, err, "above LAD's 256")
}

func TestAggregateLAD(t *testing.T) {
	var a Aggregate
	assert.Equal(t, 0.0, a.Average())
	for _, v := range []float64{5, 2, 9, 4} {
		a.Add(v)
	}
	assert.Equal(t, Aggregate{Count: 4, Total: 20, Minimum: 2, Maximum: 9, Last: 4}, a)
	assert.Equal(t, 5.0, a.Average())
	// A first sample sets min and max even when negative or zero.
	var b Aggregate
	b.Add(-3)
	assert.Equal(t, Aggregate{Count: 1, Total: -3, Minimum: -3, Maximum: -3, Last: -3}, b)
}

func TestVMAggregatorWindows(t *testing.T) {
	a, err := NewVMAggregator(time.Minute)
	require.NoError(t, err)
	base := time.Date(2024, 5, 12, 10, 0, 50, 0, time.UTC)
	const gib = 1 << 30
	s := func(off time.Duration, avail uint64) MemorySample {
		return MemorySample{Time: base.Add(off), TotalBytes: 4 * gib, AvailableBytes: avail, Source: SourceBalloon}
	}
	// 10:00:50 opens the 10:00 window.
	_, done := a.Add(s(0, 3*gib))
	assert.False(t, done)
	// 10:01:05 closes it: one sample.
	w, done := a.Add(s(15*time.Second, 2*gib))
	require.True(t, done)
	assert.Equal(t, time.Date(2024, 5, 12, 10, 0, 0, 0, time.UTC), w.Start)
	assert.Equal(t, int64(1), w.Count())
	assert.Equal(t, float64(3*gib), w.Aggregates[IdxAvailable].Last)
	assert.Equal(t, 75.0, w.Aggregates[IdxPercentAvailable].Last)
	assert.Equal(t, float64(gib), w.Aggregates[IdxUsed].Last)
	assert.Equal(t, 25.0, w.Aggregates[IdxPercentUsed].Last)
	// 10:01:20, 10:01:35, 10:01:50 and a late 10:00:59 (dropped).
	for i, av := range []uint64{1 * gib, 4 * gib, 2 * gib} {
		_, done = a.Add(s(time.Duration(30+15*i)*time.Second, av))
		assert.False(t, done)
	}
	_, done = a.Add(s(9*time.Second, gib))
	assert.False(t, done)
	assert.Equal(t, uint64(1), a.Late())
	_, done = a.Add(MemorySample{Time: base.Add(61 * time.Second), TotalBytes: 0})
	assert.False(t, done)
	assert.Equal(t, uint64(1), a.Invalid())
	// Not yet at the end: no flush.
	_, done = a.Flush(base.Add(69 * time.Second))
	assert.False(t, done)
	w, done = a.Flush(base.Add(70 * time.Second)) // 10:02:00
	require.True(t, done)
	assert.Equal(t, time.Date(2024, 5, 12, 10, 1, 0, 0, time.UTC), w.Start)
	assert.Equal(t, time.Date(2024, 5, 12, 10, 2, 0, 0, time.UTC), w.End())
	av := w.Aggregates[IdxAvailable]
	assert.Equal(t, Aggregate{Count: 4, Total: 9 * gib, Minimum: gib, Maximum: 4 * gib, Last: 2 * gib}, av)
	assert.Equal(t, Aggregate{Count: 4, Total: 400 - 225, Minimum: 0, Maximum: 75, Last: 50}, w.Aggregates[IdxPercentUsed])
	_, done = a.Flush(base.Add(time.Hour))
	assert.False(t, done, "flushed once")
	_, err = NewVMAggregator(1500 * time.Millisecond)
	assert.Error(t, err)
}

func TestEntitiesShape(t *testing.T) {
	var w Window
	w.Start = time.Date(2024, 5, 12, 10, 1, 0, 0, time.UTC)
	w.Period = time.Minute
	w.Aggregates[IdxAvailable] = Aggregate{Count: 4, Total: 4096, Minimum: 512, Maximum: 2048, Last: 1024}
	w.Aggregates[IdxUsed] = Aggregate{Count: 4, Total: 10, Minimum: 1, Maximum: 4, Last: 2}
	es, err := Entities(w, Identity{ResourceID: "/subscriptions/s/vm-1", Host: "vm-1", DeploymentID: "unknown"})
	require.NoError(t, err)
	require.Len(t, es, 4, "two counters with samples, two rows each")
	assert.Equal(t, ":002Fsubscriptions:002Fs:002Fvm:002D1", es[0].PartitionKey)
	assert.Equal(t, "2516867927399999999__:002Fbuiltin:002Fmemory:002Favailablememory", es[0].RowKey)
	assert.Equal(t, ":002Fbuiltin:002Fmemory:002Favailablememory__2516867927399999999", es[1].RowKey)
	assert.Equal(t, CounterUsedMemory, es[2].CounterName)
	assert.Equal(t, 1024.0, es[0].Average)

	b, err := json.Marshal(es[0])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, "Edm.Double", m["Total@odata.type"])
	assert.Equal(t, "Edm.Int64", m["Count@odata.type"])
	assert.Equal(t, "4", m["Count"])
	assert.Equal(t, "Edm.DateTime", m["TIMESTAMP@odata.type"])
	assert.Equal(t, "2024-05-12T10:01:00.0000000Z", m["TIMESTAMP"])
	back, err := ParseEntity(b)
	require.NoError(t, err)
	assert.Equal(t, es[0], back)

	_, err = ParseEntity([]byte(`{"PartitionKey":"p","RowKey":"r","CounterName":"c","DeploymentId":"d","Host":"h","Total":"1","Total@odata.type":"Edm.Int64"}`))
	assert.ErrorContains(t, err, `"Total": type "Edm.Int64", want Edm.Double`)
	_, err = ParseEntity([]byte(`{"PartitionKey":1}`))
	assert.ErrorContains(t, err, `"PartitionKey": not a string`)
	_, err = ParseEntity([]byte(`[`))
	assert.Error(t, err)
}

func FuzzParseEntity(f *testing.F) {
	var w Window
	w.Start = time.Date(2024, 5, 12, 10, 1, 0, 0, time.UTC)
	w.Aggregates[0] = Aggregate{Count: 1, Total: 1, Minimum: 1, Maximum: 1, Last: 1}
	es, _ := Entities(w, Identity{ResourceID: "r"})
	b, _ := json.Marshal(es[0])
	f.Add(b)
	f.Add([]byte(`{"Count":"x","Count@odata.type":"Edm.Int64"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEntity(b)
		if err != nil {
			return
		}
		// What parses re-encodes and parses to the same entity.
		b2, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := ParseEntity(b2)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if e2.Count != e.Count || e2.RowKey != e.RowKey || !e2.Timestamp.Equal(e.Timestamp.Truncate(100)) && !e2.Timestamp.Equal(e.Timestamp) {
			t.Fatalf("round trip changed %+v to %+v", e, e2)
		}
	})
}
