package metrics

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Identity names a VM in LAD's entities.
type Identity struct {
	// ResourceID is the VM's resource id; PartitionKey escapes it
	// (EscapePartitionKey).
	ResourceID string
	// Host is the Host column (LAD: the computer name).
	Host string
	// DeploymentID is the DeploymentId column (LAD: from the hosting
	// environment, "unknown" when it has none).
	DeploymentID string
	// InstanceID, when set, is appended to both row keys (LAD does so for
	// VM scale sets).
	InstanceID string
}

// Entity is one LAD metrics row: one aggregate of one counter in one
// window, under one of its two row keys.
type Entity struct {
	PartitionKey string
	RowKey       string
	CounterName  string
	Total        float64
	Minimum      float64
	Maximum      float64
	Average      float64
	Last         float64
	Count        int64
	// Timestamp is the TIMESTAMP column (Edm.DateTime): the window start
	// (mdsd BatchWriter adds TIMESTAMP = the query interval base).
	Timestamp    time.Time
	DeploymentID string
	Host         string
}

// Entities returns the LAD rows for a window: for every counter with
// samples, the ticks-first row and its metric-first twin, in Counters
// order (8 rows for a full window).
func Entities(w Window, id Identity) ([]Entity, error) {
	pk := EscapePartitionKey(id.ResourceID)
	out := make([]Entity, 0, 2*NumCounters)
	for i, name := range Counters {
		a := w.Aggregates[i]
		if a.Count == 0 {
			continue
		}
		for _, f := range []float64{a.Total, a.Minimum, a.Maximum, a.Last} {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("metrics: window %s counter %s: value %v cannot be stored", w.Start.Format(time.RFC3339), name, f)
			}
		}
		enc, err := EncodeRowKeyMetric(name)
		if err != nil {
			return nil, err
		}
		k1, k2 := RowKeys(enc, w.Start, id.InstanceID)
		e := Entity{
			PartitionKey: pk, CounterName: name,
			Total: a.Total, Minimum: a.Minimum, Maximum: a.Maximum, Average: a.Average(), Last: a.Last, Count: a.Count,
			Timestamp: w.Start.UTC(), DeploymentID: id.DeploymentID, Host: id.Host,
		}
		e.RowKey = k1
		out = append(out, e)
		e.RowKey = k2
		out = append(out, e)
	}
	return out, nil
}

// edmDateTime formats t as Azure Tables does for Edm.DateTime values
// (ISO 8601 UTC with 7 fractional digits, the .NET tick resolution).
func edmDateTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}

// MarshalJSON writes the entity in the Table service's JSON format with
// explicit types: the doubles as Edm.Double (a whole number would
// otherwise be stored as Edm.Int32 or rejected), Count as Edm.Int64 (a
// string, as OData requires) and TIMESTAMP as Edm.DateTime.
func (e Entity) MarshalJSON() ([]byte, error) {
	m := map[string]any{
		"PartitionKey": e.PartitionKey,
		"RowKey":       e.RowKey,
		"CounterName":  e.CounterName,
		"DeploymentId": e.DeploymentID,
		"Host":         e.Host,
		"Count":        strconv.FormatInt(e.Count, 10), "Count@odata.type": "Edm.Int64",
		"TIMESTAMP": edmDateTime(e.Timestamp), "TIMESTAMP@odata.type": "Edm.DateTime",
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"Total", e.Total}, {"Minimum", e.Minimum}, {"Maximum", e.Maximum}, {"Average", e.Average}, {"Last", e.Last}} {
		m[f.name] = f.v
		m[f.name+"@odata.type"] = "Edm.Double"
	}
	return json.Marshal(m)
}

// EntityFormatError reports a stored entity that is not in LAD's shape.
type EntityFormatError struct {
	Property string
	Msg      string
}

func (e *EntityFormatError) Error() string {
	return fmt.Sprintf("metrics: entity property %q: %s", e.Property, e.Msg)
}

// ParseEntity decodes an entity as the Table service returns it and checks that every LAD column is present
// with LAD's type: strings for the keys, CounterName, DeploymentId and
// Host; numbers (Edm.Double, which responses leave unannotated) for
// Total, Minimum, Maximum, Average and Last;
// Edm.Int64 for Count; Edm.DateTime for TIMESTAMP.
func ParseEntity(b []byte) (Entity, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return Entity{}, fmt.Errorf("metrics: entity: %w", err)
	}
	var e Entity
	str := func(name string, dst *string) error {
		v, ok := raw[name]
		if !ok {
			return &EntityFormatError{name, "missing"}
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return &EntityFormatError{name, "not a string: " + string(clip(v))}
		}
		return nil
	}
	typ := func(name string) string {
		var t string
		if v, ok := raw[name+"@odata.type"]; ok {
			_ = json.Unmarshal(v, &t)
		}
		return t
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"PartitionKey", &e.PartitionKey}, {"RowKey", &e.RowKey}, {"CounterName", &e.CounterName}, {"DeploymentId", &e.DeploymentID}, {"Host", &e.Host}} {
		if err := str(f.name, f.dst); err != nil {
			return Entity{}, err
		}
	}
	for _, f := range []struct {
		name string
		dst  *float64
	}{{"Total", &e.Total}, {"Minimum", &e.Minimum}, {"Maximum", &e.Maximum}, {"Average", &e.Average}, {"Last", &e.Last}} {
		v, ok := raw[f.name]
		if !ok {
			return Entity{}, &EntityFormatError{f.name, "missing"}
		}
		// The service (Azure and Azurite) leaves Edm.Double, the default
		// type of a JSON number in its responses, unannotated; any other
		// annotation means the column was stored with another type.
		if t := typ(f.name); t != "Edm.Double" && t != "" {
			return Entity{}, &EntityFormatError{f.name, fmt.Sprintf("type %q, want Edm.Double", t)}
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			// Edm.Double specials come as strings ("NaN", "Infinity").
			return Entity{}, &EntityFormatError{f.name, "not a number: " + string(clip(v))}
		}
	}
	if t := typ("Count"); t != "Edm.Int64" {
		return Entity{}, &EntityFormatError{"Count", fmt.Sprintf("type %q, want Edm.Int64", t)}
	}
	var cs string
	if err := str("Count", &cs); err != nil {
		return Entity{}, err
	}
	n, err := strconv.ParseInt(cs, 10, 64)
	if err != nil {
		return Entity{}, &EntityFormatError{"Count", "not an Int64: " + strconv.Quote(cs)}
	}
	e.Count = n
	if t := typ("TIMESTAMP"); t != "Edm.DateTime" {
		return Entity{}, &EntityFormatError{"TIMESTAMP", fmt.Sprintf("type %q, want Edm.DateTime", t)}
	}
	var ts string
	if err := str("TIMESTAMP", &ts); err != nil {
		return Entity{}, err
	}
	e.Timestamp, err = time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return Entity{}, &EntityFormatError{"TIMESTAMP", "not an ISO 8601 date-time: " + strconv.Quote(ts)}
	}
	return e, nil
}

// clip bounds service text quoted in an error.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return append(b[:64:64], "..."...)
	}
	return b
}
