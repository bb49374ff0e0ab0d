package collector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acpidiag/acpidiag/monitor"
	"github.com/acpidiag/acpidiag/monitor/deliver"
)

// StoreOptions configure a Store.
type StoreOptions struct {
	Limits Limits
	// Analyzers run on each new bundle (nil: Builtin()). NoAnalyzers
	// turns analysis off.
	Analyzers   []Analyzer
	NoAnalyzers bool
}

// Incident is one stored bundle as the index lists it.
type Incident struct {
	ID         string    `json:"id"`
	VM         string    `json:"vm"`
	Scenario   string    `json:"scenario,omitempty"`
	Trigger    string    `json:"trigger"`
	Time       time.Time `json:"time"`
	Class      string    `json:"class"`
	Confidence float64   `json:"confidence"`
	Summary    string    `json:"summary"`
	// Verdict is the last region verdict of the VM's timeline ("" if none).
	Verdict string    `json:"verdict,omitempty"`
	Stored  time.Time `json:"stored"`
}

// IncidentDetail is an incident with its manifest and analysis.
type IncidentDetail struct {
	Incident
	Manifest *monitor.Manifest `json:"manifest"`
	Analysis Analysis          `json:"analysis"`
}

// VMSummary is one VM of the fleet.
type VMSummary struct {
	Name      string    `json:"name"`
	Incidents int       `json:"incidents"`
	Last      *Incident `json:"last"`
	// Times are the VM's incident times, oldest first.
	Times []time.Time `json:"times"`
}

// Store keeps bundles on disk: DIR/bundles/ID/ (the unpacked bundle),
// DIR/analysis/ID.json (the analysis) and an index in memory rebuilt at
// Open. Each bundle id is stored once.
type Store struct {
	dir  string
	opts StoreOptions

	stored, duplicates, refused atomic.Int64

	mu    sync.RWMutex
	index map[string]*Incident
	byVM  map[string][]*Incident // sorted by time
}

// ErrNotFound is returned for an unknown incident id.
var ErrNotFound = errors.New("collector: no such incident")

// OpenStore opens (or creates) a store directory and indexes it. Bundles
// without an analysis (a kill between storing and analysing) are
// analysed now.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	if opts.Analyzers == nil && !opts.NoAnalyzers {
		opts.Analyzers = Builtin()
	}
	if opts.NoAnalyzers {
		opts.Analyzers = nil
	}
	opts.Limits = opts.Limits.withDefaults()
	for _, d := range []string{"bundles", "analysis", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("collector: store: %w", err)
		}
	}
	s := &Store{dir: dir, opts: opts, index: map[string]*Incident{}, byVM: map[string][]*Incident{}}
	tmp := filepath.Join(dir, "tmp")
	if ents, err := os.ReadDir(tmp); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(tmp, e.Name()))
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "bundles"))
	if err != nil {
		return nil, fmt.Errorf("collector: store: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() || !ValidID(e.Name()) {
			continue
		}
		b, err := s.bundle(e.Name())
		if err != nil {
			continue
		}
		a, err := s.readAnalysis(e.Name())
		if err != nil {
			a = s.analyze(context.Background(), b)
		}
		s.add(b.Manifest, a)
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// BundleDir is where the bundle id is stored.
func (s *Store) BundleDir(id string) string { return filepath.Join(s.dir, "bundles", id) }

func (s *Store) bundle(id string) (*Bundle, error) {
	d := s.BundleDir(id)
	data, err := os.ReadFile(filepath.Join(d, "manifest.json"))
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, err
	}
	return &Bundle{Dir: d, Manifest: m}, nil
}

func (s *Store) readAnalysis(id string) (Analysis, error) {
	var a Analysis
	data, err := os.ReadFile(filepath.Join(s.dir, "analysis", id+".json"))
	if err != nil {
		return a, err
	}
	err = json.Unmarshal(data, &a)
	return a, err
}

func (s *Store) analyze(ctx context.Context, b *Bundle) Analysis {
	a := Analyze(ctx, b, s.opts.Analyzers)
	s.writeAnalysis(a) //nolint:errcheck // re-run at the next Open when it failed
	return a
}

func (s *Store) writeAnalysis(a Analysis) error {
	data, err := json.MarshalIndent(&a, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(s.dir, "analysis", a.ID+".json")
	tmp := filepath.Join(s.dir, "tmp", a.ID+"."+randHex()+".json")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func randHex() string {
	var b [6]byte
	rand.Read(b[:]) //nolint:errcheck // never fails on Linux
	return hex.EncodeToString(b[:])
}

func lastVerdict(m *monitor.Manifest) string {
	for i := len(m.Timeline) - 1; i >= 0; i-- {
		if m.Timeline[i].Source == "region" {
			return m.Timeline[i].State
		}
	}
	return ""
}

func (s *Store) add(m *monitor.Manifest, a Analysis) *Incident {
	inc := &Incident{ID: m.ID, VM: m.VM.Name, Trigger: m.Trigger, Time: m.Created, Class: a.Diagnosis.Class,
		Confidence: a.Diagnosis.Confidence, Summary: a.Diagnosis.Summary, Verdict: lastVerdict(m), Stored: time.Now().UTC()}
	if m.Scenario != nil {
		inc.Scenario = m.Scenario.Name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.index[m.ID]; ok {
		*old = *inc // re-analysed
		return old
	}
	s.index[m.ID] = inc
	l := append(s.byVM[inc.VM], inc)
	sort.SliceStable(l, func(i, j int) bool { return l[i].Time.Before(l[j].Time) })
	s.byVM[inc.VM] = l
	return inc
}

// Has reports whether the bundle id is stored.
func (s *Store) Has(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.index[id]
	return ok
}

// Put verifies and stores the bundle archive read from r. key is the
// sender's idempotency key ("" when none; else it must equal the
// manifest's id). It returns the incident and whether it was new: a
// bundle already stored is not stored again (created false). The bundle
// is unpacked into DIR/tmp, fsynced and renamed into DIR/bundles/ID, so
// it is either stored whole or not at all.
func (s *Store) Put(ctx context.Context, r io.Reader, key string) (*Incident, bool, error) {
	inc, created, err := s.put(ctx, r, key)
	switch {
	case err != nil:
		s.refused.Add(1)
	case created:
		s.stored.Add(1)
	default:
		s.duplicates.Add(1)
	}
	return inc, created, err
}

// Stats counts the Put calls since the store was opened.
type Stats struct {
	Bundles    int   `json:"bundles"`    // stored now
	Stored     int64 `json:"stored"`     // new bundles stored (201)
	Duplicates int64 `json:"duplicates"` // bundles already stored (200)
	Refused    int64 `json:"refused"`    // refused or failed
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Bundles: s.Len(), Stored: s.stored.Load(), Duplicates: s.duplicates.Load(), Refused: s.refused.Load()}
}

func (s *Store) put(ctx context.Context, r io.Reader, key string) (*Incident, bool, error) {
	if key != "" && !ValidID(key) {
		return nil, false, bundleErr("Idempotency-Key", "%q: want 1-200 characters of [A-Za-z0-9._-]", trunc(key))
	}
	if key != "" {
		if inc := s.lookup(key); inc != nil {
			return inc, false, nil
		}
	}
	tmp := filepath.Join(s.dir, "tmp", "put-"+randHex())
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, false, fmt.Errorf("collector: store: %w", err)
	}
	defer os.RemoveAll(tmp)
	m, err := Unpack(r, tmp, s.opts.Limits)
	if err != nil {
		return nil, false, err
	}
	if key != "" && m.ID != key {
		return nil, false, bundleErr("Idempotency-Key", "%q differs from the manifest's id %q", key, m.ID)
	}
	if err := deliver.SyncDir(tmp); err != nil {
		return nil, false, err
	}
	final := s.BundleDir(m.ID)
	if inc := s.lookup(m.ID); inc != nil {
		return inc, false, nil
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another request stored it meanwhile (the target exists).
		if _, serr := os.Stat(final); serr == nil {
			return s.waitIndexed(ctx, m.ID)
		}
		return nil, false, fmt.Errorf("collector: store: %w", err)
	}
	if err := deliver.SyncDir(filepath.Join(s.dir, "bundles")); err != nil {
		return nil, false, fmt.Errorf("collector: store: %w", err)
	}
	a := s.analyze(ctx, &Bundle{Dir: final, Manifest: m})
	return s.add(m, a), true, nil
}

func (s *Store) lookup(id string) *Incident {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if inc, ok := s.index[id]; ok {
		c := *inc
		return &c
	}
	return nil
}

// waitIndexed waits for a concurrent Put of the same id to finish.
func (s *Store) waitIndexed(ctx context.Context, id string) (*Incident, bool, error) {
	for {
		if inc := s.lookup(id); inc != nil {
			return inc, false, nil
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Len is the number of stored bundles.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.index)
}

// Incidents lists the incidents of one VM (all VMs when vm is ""),
// newest first.
func (s *Store) Incidents(vm string) []Incident {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []Incident{}
	if vm != "" {
		for _, inc := range s.byVM[vm] {
			out = append(out, *inc)
		}
	} else {
		for _, inc := range s.index {
			out = append(out, *inc)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.After(out[j].Time)
		}
		return out[i].ID > out[j].ID
	})
	return out
}

// VMs lists every VM with its incident count and last incident.
func (s *Store) VMs() []VMSummary {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []VMSummary{}
	for name, l := range s.byVM {
		v := VMSummary{Name: name, Incidents: len(l)}
		if len(l) > 0 {
			last := *l[len(l)-1]
			v.Last = &last
		}
		for _, inc := range l {
			v.Times = append(v.Times, inc.Time)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Incident returns one incident with its manifest and analysis.
func (s *Store) Incident(id string) (*IncidentDetail, error) {
	inc := s.lookup(id)
	if inc == nil || !ValidID(id) {
		return nil, ErrNotFound
	}
	b, err := s.bundle(id)
	if err != nil {
		return nil, fmt.Errorf("collector: %s: %w", id, err)
	}
	a, err := s.readAnalysis(id)
	if err != nil {
		a = s.analyze(context.Background(), b)
	}
	return &IncidentDetail{Incident: *inc, Manifest: b.Manifest, Analysis: a}, nil
}

// Reanalyze runs the analyzers again on every stored bundle (what
// `diagcollect analyze STORE` does) and returns the analyses.
func (s *Store) Reanalyze(ctx context.Context) ([]Analysis, error) {
	var out []Analysis
	for _, inc := range s.Incidents("") {
		b, err := s.bundle(inc.ID)
		if err != nil {
			return out, fmt.Errorf("collector: %s: %w", inc.ID, err)
		}
		a := s.analyze(ctx, b)
		s.add(b.Manifest, a)
		out = append(out, a)
	}
	return out, nil
}

// AnalyzeDir analyses one unpacked bundle directory (manifest.json and
// its artifacts) without a store.
func AnalyzeDir(ctx context.Context, dir string, analyzers []Analyzer) (Analysis, error) {
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return Analysis{}, fmt.Errorf("collector: %w", err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return Analysis{}, fmt.Errorf("collector: %s: %w", dir, err)
	}
	return Analyze(ctx, &Bundle{Dir: dir, Manifest: m}, analyzers), nil
}
