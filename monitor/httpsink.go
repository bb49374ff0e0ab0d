package monitor

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/acpidiag/acpidiag/monitor/deliver"
)

// HTTPSink delivers bundles to a collector (sink kind "http"): Deliver
// packs the bundle into the spool (package monitor/deliver) and returns;
// the spool's goroutines POST it, with retries, also after a restart.
type HTTPSink struct {
	spool *deliver.Spool
	url   string
}

// NewHTTPSink opens the spool of an http sink configuration.
func NewHTTPSink(c SinkConfig) (*HTTPSink, error) {
	cfg, err := httpSinkConfig(c)
	if err != nil {
		return nil, err
	}
	sp, err := deliver.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("monitor: http sink: %w", err)
	}
	return &HTTPSink{spool: sp, url: c.URL}, nil
}

// httpSinkConfig translates the JSON configuration.
func httpSinkConfig(c SinkConfig) (deliver.Config, error) {
	cfg := deliver.Config{URL: c.URL, Dir: c.Spool, TokenFile: c.TokenFile, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		MaxBytes: c.SpoolMaxBytes}
	var err error
	if c.SpoolMaxAge != "" {
		if cfg.MaxAge, err = time.ParseDuration(c.SpoolMaxAge); err != nil {
			return cfg, fmt.Errorf("monitor: http sink: spool_max_age: %w", err)
		}
	}
	if c.MaxBackoff != "" {
		if cfg.MaxBackoff, err = time.ParseDuration(c.MaxBackoff); err != nil {
			return cfg, fmt.Errorf("monitor: http sink: max_backoff: %w", err)
		}
		if cfg.MaxBackoff < deliver.DefaultMinBackoff {
			cfg.MinBackoff = cfg.MaxBackoff
		}
	}
	return cfg, nil
}

// checkHTTPSink validates an http sink's keys (Check).
func checkHTTPSink(path string, s SinkConfig, bad func(path, format string, a ...any)) {
	switch {
	case s.URL == "":
		bad(path+".url", "empty (the collector's POST endpoint, e.g. http://HOST:PORT/api/bundles)")
	case !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://"):
		bad(path+".url", "%q: want an http:// or https:// URL", s.URL)
	}
	if s.Spool == "" {
		bad(path+".spool", "empty (the directory bundles wait in until delivered)")
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		bad(path+".cert_file", "cert_file and key_file go together")
	}
	if s.SpoolMaxBytes < 0 {
		bad(path+".spool_max_bytes", "%d: must not be negative", s.SpoolMaxBytes)
	}
	for _, d := range []struct{ key, v string }{{"spool_max_age", s.SpoolMaxAge}, {"max_backoff", s.MaxBackoff}} {
		if d.v == "" {
			continue
		}
		if v, err := time.ParseDuration(d.v); err != nil || v <= 0 {
			bad(path+"."+d.key, "%q: want a positive duration", d.v)
		}
	}
	if s.Path != "" || s.Pack {
		bad(path, "path and pack belong to the dir sink")
	}
}

// Name implements Sink.
func (s *HTTPSink) Name() string { return "http:" + s.url }

// Deliver implements Sink: the bundle is packed into the spool (fsynced,
// renamed into place) before Deliver returns.
func (s *HTTPSink) Deliver(ctx context.Context, b *Bundle) (string, error) {
	m := deliver.Meta{ID: b.ID}
	if b.Manifest != nil {
		m.VM = b.Manifest.VM.Name
		if b.Manifest.Scenario != nil {
			m.Scenario = b.Manifest.Scenario.Name
		}
	}
	if err := s.spool.Add(m, func(w io.Writer) error { return PackBundle(b.Dir, w) }); err != nil {
		return "", fmt.Errorf("monitor: http sink: %w", err)
	}
	return s.url + "#" + b.ID, nil
}

// Status is the spool's state (queued, retrying, delivered, dropped).
func (s *HTTPSink) Status() deliver.Status { return s.spool.Status() }

// Spool is the sink's delivery spool.
func (s *HTTPSink) Spool() *deliver.Spool { return s.spool }

// Close implements Sink: delivery stops, undelivered bundles stay spooled.
func (s *HTTPSink) Close() error { return s.spool.Close() }

// SinkStatus is one configured sink's delivery state (`diagmon status`).
type SinkStatus struct {
	Sink   string          `json:"sink"`
	Kind   string          `json:"kind"`
	Status *deliver.Status `json:"status,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// SpoolStatus reads the state of every http sink's spool of a
// configuration from disk, as the running monitor last wrote it (queue
// lengths are counted now). It does not need the monitor to run.
func SpoolStatus(c *Config) []SinkStatus {
	var out []SinkStatus
	for _, s := range c.Sinks {
		if s.Kind != "http" {
			continue
		}
		ss := SinkStatus{Sink: "http:" + s.URL, Kind: s.Kind}
		st, err := deliver.ReadStatus(s.Spool)
		if err != nil {
			ss.Error = err.Error()
		} else {
			st.URL = s.URL
			ss.Status = &st
		}
		out = append(out, ss)
	}
	return out
}

// pendingBundles lists the bundle directories a previous process left in
// the workdir. A directory with a readable manifest is finished (the
// manifest is written last) but may have missed some sinks when the
// process was killed; one without is an incident whose diagnostics were
// cut by the kill, and is removed.
func pendingBundles(workdir string) (done []*Bundle, partial []string) {
	ents, err := os.ReadDir(workdir)
	if err != nil {
		return nil, nil
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(workdir, e.Name())
		m, err := ReadManifest(dir)
		if err != nil || m.ID != e.Name() {
			partial = append(partial, dir)
			continue
		}
		done = append(done, &Bundle{ID: m.ID, Dir: dir, Manifest: m})
	}
	return done, partial
}

// redeliver hands bundles left by a killed process to every sink again
// (sinks take a bundle they already have without duplicating it) and then
// removes them, as diagnose does for new ones.
func (m *Monitor) redeliver(done []*Bundle, partial []string) {
	defer m.incWG.Done()
	for _, dir := range partial {
		os.RemoveAll(dir)
		m.emit(Event{Type: EventWarning, Detail: "removed the unfinished bundle " + filepath.Base(dir) + " of a previous run (its diagnostics were interrupted)"})
	}
	m.sinkMu.RLock()
	defer m.sinkMu.RUnlock()
	sinks := m.sinks
	for _, b := range done {
		var locs []string
		failed := false
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for _, s := range sinks {
			loc, err := s.Deliver(ctx, b)
			if err != nil {
				failed = true
				m.emit(Event{Type: EventError, VM: b.Manifest.VM.Name, Incident: b.ID, Detail: fmt.Sprintf("redelivery: sink %s: %v", s.Name(), err)})
				continue
			}
			locs = append(locs, loc)
		}
		cancel()
		if !failed {
			os.RemoveAll(b.Dir)
		}
		m.emit(Event{Type: EventBundle, VM: b.Manifest.VM.Name, Incident: b.ID, Path: strings.Join(locs, ","), Detail: "redelivered: left by a previous run"})
	}
}

// sameSinks reports whether two sink configurations are equal (a reload
// keeps the running sinks then).
func sameSinks(a, b []SinkConfig) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
